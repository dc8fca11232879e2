"""Plain usbredir over TCP, usb-guest side: ``--usbredir-listen PORT``.

A usb-host (``usbredirect --to``, ``aiospice usb share --to``) connects; every device it attaches
comes out as a :class:`~usbredir.redirected.RedirectedDevice`::

    async with GuestListener(port=0, rules="-1,-1,-1,-1,1") as listener:
        print(listener.port)
        async for device in listener:      # attached devices, in order
            ...                            # device.on_disconnect is called when it goes away

At most ``max_connections`` hosts are served at once (more are closed at once); each connection
is a :class:`~usbredir.redirected.GuestConnection` (see there for limits and error handling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from . import filter as usbfilter
from .redirected import GuestConnection, RedirectedDevice

__all__ = ["GuestListener"]

log = logging.getLogger(__name__)


class GuestListener:
    """TCP server accepting usbredir usb-hosts (see the module docstring)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 rules: Sequence[usbfilter.FilterRule] | str | None = None,
                 on_attach: Callable[[RedirectedDevice], None] | None = None,
                 max_connections: int = 8, max_queued: int = 64) -> None:
        if isinstance(rules, str):
            rules = usbfilter.parse_rules(rules)  # fail early on a bad --usb-filter
        self.host, self._port = host, port
        self.rules = rules
        self.on_attach = on_attach
        self.max_connections = max_connections
        self.connections: set[GuestConnection] = set()
        self._devices: asyncio.Queue[RedirectedDevice] = asyncio.Queue(max_queued)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> GuestListener:
        self._server = await asyncio.start_server(self._accept, self.host, self._port)
        log.info("usbredir guest listening on %s:%d", self.host, self.port)
        return self

    async def __aenter__(self) -> GuestListener:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __aiter__(self) -> GuestListener:
        return self

    async def __anext__(self) -> RedirectedDevice:
        return await self._devices.get()

    async def next_device(self, timeout: float | None = None) -> RedirectedDevice:
        return await asyncio.wait_for(self._devices.get(), timeout)

    def _attached(self, device: RedirectedDevice) -> None:
        if self._devices.full():
            log.warning("too many unclaimed redirected devices: dropping %04x:%04x", device.vendor_id,
                        device.product_id)
        else:
            self._devices.put_nowait(device)
        if self.on_attach is not None:
            self.on_attach(device)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if len(self.connections) >= self.max_connections:
            log.warning("usbredir: refusing %s, %d connections already", peer, len(self.connections))
            writer.close()
            return
        conn = GuestConnection(reader, writer, rules=self.rules, on_attach=self._attached)
        self.connections.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            reason = await conn.run()
            log.info("usbredir connection from %s ended: %s", peer, reason)
        finally:
            self.connections.discard(conn)
            if task is not None:
                self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            await conn.close()
        if self._tasks:  # their connections are closed: they end by themselves
            _, late = await asyncio.wait(list(self._tasks), timeout=2)
            for task in late:
                task.cancel()
        with contextlib.suppress(Exception):
            if self._server is not None:
                await asyncio.wait_for(self._server.wait_closed(), 2)
