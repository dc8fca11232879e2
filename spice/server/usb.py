"""The server's USB side: one guest USB subsystem fed by usbredir channels and plain usbredir/TCP.

:class:`ServerUsb` owns G's :class:`~usbredir.guest.subsystem.UsbSubsystem` (EHCI model + guest USB
software) for the server's guest, the device filter (``--usb-filter``, usbredirfilter syntax), and
the optional plain-usbredir listener (``--usbredir-listen PORT``, C's
:class:`~usbredir.guest_listener.GuestListener`).  Every usbredir stream (one per SPICE usbredir
channel, one per TCP connection) is a :class:`~usbredir.redirected.GuestConnection`; each device it
attaches is plugged into the subsystem and unplugged when it goes away.  :meth:`ServerUsb.rows`
is what ``GET /api/v1/usb`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from usbredir import filter as usbfilter
from usbredir.guest.generic import SPEED_NAMES
from usbredir.redirected import GuestConnection, RedirectedDevice

if TYPE_CHECKING:
    from usbredir.guest.subsystem import UsbSubsystem

    from .server import SpiceServer

log = logging.getLogger("spice.server.usb")


@dataclass(eq=False)
class Plugged:
    channel: str  # "spice:N" or "tcp:HOST:PORT"
    device: RedirectedDevice
    port: str | None  # subsystem port, None if no port was free
    attached_at: float


class ServerUsb:
    """See the module docstring.  Create with :func:`start_usb` (needs a running loop)."""

    def __init__(self, server: SpiceServer, subsystem: UsbSubsystem, rules: list | None) -> None:
        self.server = server
        self.subsystem = subsystem
        self.rules = rules
        self.plugged: list[Plugged] = []
        self.connections: set[GuestConnection] = set()
        self.listener = None
        self.rejected = 0
        self._uninstall = None
        self._tasks: set[asyncio.Task] = set()
        self._drain: asyncio.Task | None = None

    # -- usbredir streams
    def connection(self, writer, channel: str, peer: str = "") -> GuestConnection:
        """A push-fed usb-guest connection (SPICE usbredir channel) writing to ``writer``."""
        conn = GuestConnection(None, writer, rules=self.rules,
                               on_attach=lambda dev: self._attach(dev, channel),
                               on_detach=self._detach)
        self.connections.add(conn)
        return conn

    def connection_closed(self, conn: GuestConnection) -> None:
        """The transport ended: detach its device, release waiters."""
        self.connections.discard(conn)
        self.rejected += conn.core.stats.rejected
        conn.feed_eof()
        task = asyncio.get_running_loop().create_task(conn.close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _attach(self, dev: RedirectedDevice, channel: str) -> None:
        if dev.detached:
            return
        try:
            port = self.subsystem.attach(dev)
        except RuntimeError as exc:
            log.warning("%s: %04x:%04x not plugged in: %s", channel, dev.vendor_id, dev.product_id, exc)
            port = None
        loop = asyncio.get_running_loop()
        self.plugged.append(Plugged(channel, dev, port, loop.time()))
        log.info("%s: %04x:%04x %r plugged into port %s", channel, dev.vendor_id, dev.product_id,
                 dev.product, port)

    def _detach(self, dev: RedirectedDevice) -> None:
        for p in list(self.plugged):
            if p.device is dev:
                self.plugged.remove(p)
                if p.port is not None:
                    self.subsystem.detach(p.port)
                log.info("%s: %04x:%04x unplugged from port %s", p.channel, dev.vendor_id, dev.product_id, p.port)

    # -- what operators see
    def rows(self) -> list[dict]:
        """One row per redirected device: channel, port, speed, ids, product, driver, state, bytes."""
        out = []
        for p in self.plugged:
            dev = p.device
            info = self.subsystem.core.devices.get(p.port) if p.port else None
            row = {"channel": p.channel, "port": p.port, "speed": SPEED_NAMES.get(int(dev.speed), "?"),
                   "vid": f"{dev.vendor_id:04x}", "pid": f"{dev.product_id:04x}",
                   "id": f"{dev.vendor_id:04x}:{dev.product_id:04x}", "product": dev.product,
                   "driver": "", "state": "attached" if p.port else "no free port", "bytes": 0,
                   "mounted": bool(p.port and p.port in self.subsystem.volumes)}
            if info is not None:
                row.update(driver=info.driver_name, state=info.state, bytes=info.bytes_moved,
                           product=info.product or dev.product)
            out.append(row)
        return out

    # -- lifecycle
    async def close(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
        if self.listener is not None:
            await self.listener.close()
        for conn in list(self.connections):
            self.connection_closed(conn)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3)
        if self._uninstall is not None:
            self._uninstall()
        with contextlib.suppress(Exception):
            await self.subsystem.close()


async def start_usb(server: SpiceServer) -> ServerUsb:
    """Start the subsystem (and the TCP listener) for ``server`` from its config."""
    from usbredir.guest.subsystem import UsbSubsystem

    cfg = server.config
    rules = usbfilter.parse_rules(cfg.usb_filter) if cfg.usb_filter else None
    subsystem = UsbSubsystem()
    await subsystem.start()
    usb = ServerUsb(server, subsystem, rules)
    guest = server.guest
    if hasattr(guest, "shell") and hasattr(guest, "set_usb_devices"):
        from spice.guests.builtin.usb import attach_usb

        usb._uninstall = attach_usb(guest, subsystem)
    if cfg.usbredir_listen is not None:
        from usbredir.guest_listener import GuestListener

        listener = GuestListener(cfg.host, cfg.usbredir_listen, rules=rules)
        _hook_listener(listener, usb)
        await listener.start()
        usb.listener = listener
        server.ports["usbredir"] = listener.port
        log.info("plain usbredir (usb-guest) listening on %s:%d", cfg.host, listener.port)
    return usb


def _hook_listener(listener, usb: ServerUsb) -> None:
    """Plug the listener's devices into the subsystem; they unplug when their connection drops."""

    def attached(dev: RedirectedDevice) -> None:
        peer = dev.conn.writer.get_extra_info("peername") if hasattr(dev.conn.writer, "get_extra_info") else None
        label = f"tcp:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "tcp"
        dev.conn.on_detach = usb._detach
        usb._attach(dev, label)

    listener.on_attach = attached
    # the listener queues devices for an async iterator nobody reads here: drain it
    async def drain() -> None:
        while True:
            await listener.next_device()

    usb._drain = asyncio.get_running_loop().create_task(drain())
