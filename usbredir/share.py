"""``aiospice usb list`` / ``aiospice usb share``: export local or virtual USB devices.

Targets: ``spice://HOST:PORT`` / ``spice+tls://HOST:PORT`` (a minimal SPICE client, one usbredir
channel per device, see :mod:`usbredir.spice_client`), ``--to HOST:PORT`` (connect, plain
usbredir over TCP as ``usbredirect --to`` does) or ``--listen [HOST:]PORT`` (wait for a peer such
as QEMU's ``-chardev socket,...,reconnect=1``).  Devices: ``--device VID:PID|BUS-ADDR`` (pyusb),
``--keyboard`` (``--type-text TEXT`` types once the guest polls it), ``--mouse``, ``--tablet``,
``--storage IMAGE[,ro]``.  Ctrl-C (SIGINT/SIGTERM) detaches cleanly:
``device_disconnect`` first, then images are flushed and closed.

``python3 -m usbredir.share --bench`` runs the QEMU read/write benchmark (see
``tests/usbredir_host/test_urhost_bench.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable

from usbredir.device import UsbDevice
from usbredir.host import UsbredirHost, serve_stream


def parse_hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    return host, int(port)


def make_devices(args: argparse.Namespace) -> list[UsbDevice]:
    """The devices named on the command line (raises ValueError / OSError with a clear message)."""
    devices: list[UsbDevice] = []
    for spec in getattr(args, "storage", None) or []:
        from usbredir.devices.storage import MassStorage

        path, _, opts = spec.partition(",")
        ro = opts in ("ro", "readonly", "read-only")
        if opts and not ro and opts not in ("rw",):
            raise ValueError(f"--storage {spec}: option must be ro or rw")
        if not os.path.isfile(path):
            raise ValueError(f"--storage: no such image file: {path}")
        devices.append(MassStorage(path, read_only=ro))
    if getattr(args, "keyboard", False):
        from usbredir.devices.hid import HidKeyboard

        devices.append(HidKeyboard())
    if getattr(args, "mouse", False):
        from usbredir.devices.hid import HidMouse

        devices.append(HidMouse())
    if getattr(args, "tablet", False):
        from usbredir.devices.hid import HidTablet

        devices.append(HidTablet())
    for spec in getattr(args, "device", None) or []:
        from usbredir.devices.pyusb_device import open_device

        devices.append(open_device(spec))
    return devices


def read_password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password", None):
        return args.password
    if getattr(args, "password_file", None):
        with open(args.password_file) as f:
            return f.read().strip()
    return os.environ.get("AIOSPICE_PASSWORD")


class StatusLine:
    """One self-updating status line on stderr (progress and transfer rate)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.hosts: list[UsbredirHost] = []
        self._last = (time.monotonic(), 0)
        self.tty = sys.stderr.isatty()

    def event(self, msg: str) -> None:
        if not self.quiet:
            print(("\r\x1b[K" if self.tty else "") + msg, file=sys.stderr, flush=True)

    def error(self, msg: str) -> None:
        """A failure: printed even with --quiet."""
        print(("\r\x1b[K" if self.tty and not self.quiet else "") + msg, file=sys.stderr, flush=True)

    def render(self) -> str:
        now = time.monotonic()
        total = sum(h.stats.bytes_to_guest + h.stats.bytes_from_guest for h in self.hosts)
        t0, b0 = self._last
        rate = (total - b0) / max(now - t0, 1e-6)
        self._last = (now, total)
        parts = []
        for h in self.hosts:
            s = h.stats
            state = "attached" if h.attached else "detached"
            parts.append(f"{h.device.product or 'device'} [{state}] in {s.bytes_from_guest / 1e6:.1f} MB "
                         f"out {s.bytes_to_guest / 1e6:.1f} MB, {s.transfers} transfers")
        return "; ".join(parts) + f" | {rate / 1e6:.2f} MB/s"

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self.quiet and self.hosts:
                line = self.render()
                print(("\r\x1b[K" + line) if self.tty else line, end="" if self.tty else "\n",
                      file=sys.stderr, flush=True)


def install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def share_tcp_to(device: UsbDevice, host: str, port: int, stop: asyncio.Event,
                       status: StatusLine, retries: int = 10) -> str:
    """Connect to a usbredir peer and serve ``device`` until stop or disconnect."""
    for attempt in range(retries):
        try:
            reader, writer = await asyncio.open_connection(host, port)
            break
        except OSError as exc:
            if attempt == retries - 1 or stop.is_set():
                raise
            status.event(f"connect {host}:{port}: {exc}; retrying")
            await asyncio.sleep(0.5)
    status.event(f"connected to {host}:{port}")
    return await serve_stream(device, reader, writer, stop=stop, on_event=status.event,
                              on_host=status.hosts.append)


async def share_tcp_listen(device: UsbDevice, host: str, port: int, stop: asyncio.Event,
                           status: StatusLine, on_listening: Callable[[int], None] | None = None) -> str:
    """Wait for one usbredir peer at a time and serve ``device`` to it until stop."""
    done = asyncio.Event()
    result = ["stopped"]
    busy = asyncio.Lock()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if busy.locked():
            writer.close()
            return
        async with busy:
            status.event(f"peer {writer.get_extra_info('peername')} connected")
            status.hosts.clear()
            result[0] = await serve_stream(device, reader, writer, stop=stop, on_event=status.event,
                                           on_host=status.hosts.append, close_device=False)
            if stop.is_set() or getattr(device, "closed", False):
                done.set()

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()[1]
    status.event(f"listening on {host}:{bound}")
    if on_listening is not None:
        on_listening(bound)
    async with server:
        stop_task = asyncio.create_task(stop.wait())
        await asyncio.wait({stop_task, asyncio.create_task(done.wait())}, return_when=asyncio.FIRST_COMPLETED)
        while busy.locked():  # let a running session detach cleanly
            await asyncio.sleep(0.05)
    with contextlib.suppress(Exception):
        await device.close()
    return result[0]


async def type_when_ready(devices: list[UsbDevice], text: str, status: StatusLine, delay: float = 1.0) -> None:
    """``--type-text``: once the guest polls the keyboard, type ``text`` on it."""
    from usbredir.devices.hid import HidKeyboard

    kbd = next((d for d in devices if isinstance(d, HidKeyboard)), None)
    if kbd is None:
        status.event("--type-text needs --keyboard")
        return
    while not (kbd.configuration and any(0x81 in h._streams for h in status.hosts)):
        await asyncio.sleep(0.1)
    await asyncio.sleep(delay)
    kbd.type_text(text.encode().decode("unicode_escape"))
    status.event(f"typed {len(text)} characters")


async def share(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    stop = stop or asyncio.Event()
    install_stop(stop)
    status = StatusLine(getattr(args, "quiet", False))
    devices = make_devices(args)
    if not devices:
        print("aiospice usb share: no device given (--device, --keyboard, --mouse, --storage)", file=sys.stderr)
        return 2
    ticker = asyncio.create_task(status.run())
    typist = None
    if getattr(args, "type_text", None):
        typist = asyncio.create_task(type_when_ready(devices, args.type_text, status,
                                                     getattr(args, "type_delay", 1.0)))
    try:
        if args.target:
            from usbredir.spice_client import share_spice

            return await share_spice(args.target, devices, read_password(args), stop, status,
                                     ca_file=getattr(args, "ca_file", None),
                                     insecure=getattr(args, "insecure", False))
        if len(devices) != 1:
            print("aiospice usb share: --to/--listen carry exactly one device", file=sys.stderr)
            return 2
        if args.to:
            h, p = parse_hostport(args.to)
            why = await share_tcp_to(devices[0], h, p, stop, status)
        elif args.listen:
            h, p = parse_hostport(args.listen)
            why = await share_tcp_listen(devices[0], h, p, stop, status)
        else:
            print("aiospice usb share: give spice://HOST:PORT, --to HOST:PORT or --listen PORT", file=sys.stderr)
            return 2
        status.event(f"session ended: {why}")
        return 0
    finally:
        ticker.cancel()
        if typist is not None:
            typist.cancel()
        for d in devices:
            with contextlib.suppress(Exception):
                await d.close()
        if status.tty and not status.quiet:
            print(file=sys.stderr)


def share_main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(share(args))
    except (ValueError, OSError) as exc:
        print(f"aiospice usb share: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def list_main(args: argparse.Namespace) -> int:
    from usbredir.devices.pyusb_device import list_devices

    try:
        rows = list_devices()
    except Exception as exc:  # no libusb, no permission, no USB subsystem
        print(f"aiospice usb list: cannot enumerate USB devices: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print("no USB devices found", file=sys.stderr)
    for r in rows:
        print(f"{r['bus']:03d}-{r['address']:03d}  {r['vid']:04x}:{r['pid']:04x}  class {r['class']:02x}  {r['product']}")
    return 0


if __name__ == "__main__":
    if "--bench" in sys.argv:
        import subprocess

        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", "-m", "bench",
                                  os.path.join(here, "tests", "usbredir_host", "test_urhost_bench.py")], cwd=here))
    from spice.cli import main

    sys.exit(main(["usb", *sys.argv[1:]]))
