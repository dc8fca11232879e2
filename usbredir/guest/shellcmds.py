"""Shell commands and device-panel wiring for the built-in guest (thin glue over UsbSubsystem).

``install(guest, usb)`` registers ``lsusb [-v]``, ``ls [PORT:]PATH``, ``cat [PORT:]PATH``,
``cp [PORT:]SRC [PORT:]DST``, ``write [PORT:]PATH TEXT…``, ``rm [PORT:]PATH`` and ``eject PORT`` on
``guest.shell`` and keeps ``guest.set_usb_devices`` up to date.  A path without ``PORT:`` refers to
the only (or first) mounted volume.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from usbredir.guest.generic import describe
from usbredir.guest.subsystem import UsbSubsystem

MAX_CAT_LINES = 200
REFRESH = 0.5


def _split(usb: UsbSubsystem, spec: str) -> tuple[str, str]:
    port, sep, path = spec.partition(":")
    if sep and port and port[0].isdigit():
        return port, path or "/"
    if not usb.volumes:
        raise FileNotFoundError("no USB filesystem mounted")
    return sorted(usb.volumes)[0], spec or "/"


def _size(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def install(guest, usb: UsbSubsystem) -> Callable[[], None]:
    """Register the USB commands and the panel refresher; returns an uninstall function."""
    shell = guest.shell

    def lsusb(argv, out):
        verbose = "-v" in argv[1:]
        infos = usb.devices()
        if not infos:
            out("no USB devices")
        for info in infos:
            if verbose:
                for line in describe(info).splitlines():
                    out(line)
            else:
                mounted = " [mounted]" if info.port in usb.volumes else ""
                out(f"Port {info.port:<5} ID {info.vid:04x}:{info.pid:04x} {info.product or '?'} "
                    f"({info.driver_name or '-'}, {info.state}){mounted}")

    async def ls(argv, out):
        port, path = _split(usb, argv[1] if len(argv) > 1 else "")
        for e in await usb.listdir(port, path):
            out(f"{'d' if e.is_dir else '-'} {_size(e.size):>8}  {e.name}{'/' if e.is_dir else ''}")

    async def cat(argv, out):
        if len(argv) < 2:
            out("usage: cat [PORT:]PATH")
            return
        port, path = _split(usb, argv[1])
        text = (await usb.read_file(port, path)).decode("utf-8", "replace").splitlines()
        for line in text[:MAX_CAT_LINES]:
            out(line)
        if len(text) > MAX_CAT_LINES:
            out(f"... ({len(text) - MAX_CAT_LINES} more lines)")

    async def cp(argv, out):
        if len(argv) != 3:
            out("usage: cp [PORT:]SRC [PORT:]DST")
            return
        sp, spath = _split(usb, argv[1])
        dp, dpath = _split(usb, argv[2])
        n = await usb.copy(sp, spath, dp, dpath)
        out(f"copied {n} bytes")

    async def write(argv, out):
        if len(argv) < 3:
            out("usage: write [PORT:]PATH TEXT...")
            return
        port, path = _split(usb, argv[1])
        await usb.write_file(port, path, (" ".join(argv[2:]) + "\n").encode())

    async def rm(argv, out):
        if len(argv) != 2:
            out("usage: rm [PORT:]PATH")
            return
        port, path = _split(usb, argv[1])
        await usb.volume(port).remove(path)

    async def eject(argv, out):
        ports = argv[1:] or sorted(usb.volumes)
        for port in ports:
            await usb.eject(port)
            out(f"ejected {port}: safe to remove")

    commands = {"lsusb": (lsusb, "list USB devices (-v: descriptors)"),
                "ls": (ls, "list a USB stick directory: ls [PORT:]PATH"),
                "cat": (cat, "print a file from a USB stick"),
                "cp": (cp, "copy a file between USB sticks"),
                "write": (write, "write text to a file on a USB stick"),
                "rm": (rm, "delete a file on a USB stick"),
                "eject": (eject, "unmount a USB stick")}
    for name, (handler, help_text) in commands.items():
        shell.register(name, handler, help_text)

    last: list = []

    def refresh(*_args) -> None:
        rows = usb.rows()
        if rows != last:
            last[:] = rows
            guest.set_usb_devices(rows)

    tree_changed = asyncio.Event()

    def on_event(*_args) -> None:
        refresh()
        tree_changed.set()

    async def refresher() -> None:  # byte counters move without tree events
        while True:
            if not last:  # no device: nothing to poll (no wake-ups) until the tree changes
                tree_changed.clear()
                await tree_changed.wait()
            await asyncio.sleep(REFRESH)
            refresh()

    usb.core.listeners.append(on_event)
    task = asyncio.get_running_loop().create_task(refresher())
    refresh()

    def uninstall() -> None:
        task.cancel()
        if on_event in usb.core.listeners:
            usb.core.listeners.remove(on_event)
        for name in commands:
            shell.unregister(name)

    return uninstall
