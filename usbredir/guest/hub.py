"""Guest hub class driver: powers the ports, polls the status-change endpoint, resets and
enumerates what connects (full/low-speed devices through the hub's transaction translator)."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING

from usbredir.device import Speed
from usbredir.guest.core import UsbDeviceInfo, cancel_and_wait, interval_frames, setup
from usbredir.guest.hcd import UsbError

if TYPE_CHECKING:
    from usbredir.guest.core import UsbCore

log = logging.getLogger(__name__)

PORT_CONNECTION, PORT_ENABLE, PORT_RESET, PORT_POWER = 0x1, 0x2, 0x10, 0x100
PORT_LOW_SPEED, PORT_HIGH_SPEED = 0x200, 0x400
F_RESET, F_POWER = 4, 8
C_FEATURES = {0x1: 16, 0x2: 17, 0x4: 18, 0x8: 19, 0x10: 20}


class HubDriver:
    name = "hub"

    @classmethod
    def probe(cls, core: UsbCore, info: UsbDeviceInfo) -> HubDriver | None:
        if info.device_class == 9 or any(i.cls == 9 for i in info.interfaces):
            return cls(core, info)
        return None

    def __init__(self, core: UsbCore, info: UsbDeviceInfo) -> None:
        self.core = core
        self.info = info
        self.n_ports = 0
        self._task: asyncio.Task | None = None
        self._pipe = None

    async def _port_status(self, port: int) -> tuple[int, int]:
        raw = await self.core.hcd.control(self.info.handle, setup(0xA3, 0, 0, port, 4))
        return struct.unpack("<HH", raw[:4])

    async def _feature(self, port: int, feature: int, on: bool) -> None:
        await self.core.hcd.control(self.info.handle, setup(0x23, 3 if on else 1, feature, port))

    async def start(self) -> None:
        hcd = self.core.hcd
        desc = await hcd.control(self.info.handle, setup(0xA0, 6, 0x2900, 0, 71))
        self.n_ports = desc[2]
        for port in range(1, self.n_ports + 1):
            await self._feature(port, F_POWER, True)
        await asyncio.sleep(desc[5] * 0.002)
        ep = next(e for i in self.info.interfaces for e in i.endpoints if e.type == 3 and e.address & 0x80)
        self._pipe = hcd.open_interrupt(self.info.handle, ep.address, ep.maxp,
                                        interval_frames(self.info.speed, ep.interval))
        self._task = self.core.spawn(self._poll(ep.maxp))

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _poll(self, maxp: int) -> None:
        hcd = self.core.hcd
        while True:
            try:
                bitmap = await hcd.bulk(self._pipe, length=maxp, timeout=None)
            except UsbError as exc:
                if exc.kind in ("gone", "hse"):
                    return
                await asyncio.sleep(0.01)
                continue
            bits = int.from_bytes(bitmap, "little")
            for port in range(1, self.n_ports + 1):
                if bits >> port & 1:
                    await self._port_change(port)

    async def _port_change(self, port: int) -> None:
        status, change = await self._port_status(port)
        for bit, feature in C_FEATURES.items():
            if change & bit:
                await self._feature(port, feature, False)
        name = f"{self.info.port}.{port}"
        known = self.core.devices.get(name)
        if known and (not status & PORT_CONNECTION or change & PORT_CONNECTION):
            await self.core.disconnect(name)
            known = None
        if status & PORT_CONNECTION and known is None:
            info = UsbDeviceInfo(name, Speed.UNKNOWN, state="resetting", parent=self.info)
            self.core.devices[name] = info
            self.core.spawn(self._connect(port, info))

    async def _reset(self, port: int) -> int:
        await self._feature(port, F_RESET, True)
        for _ in range(50):
            status, change = await self._port_status(port)
            if change & PORT_RESET or not status & PORT_RESET and status & PORT_ENABLE:
                break
            await asyncio.sleep(0.002)
        await self._feature(port, 20, False)  # C_PORT_RESET
        return status

    async def _connect(self, port: int, info: UsbDeviceInfo) -> None:
        await asyncio.sleep(self.core.debounce)

        async def reset() -> Speed | None:
            status = await self._reset(port)
            if not status & PORT_ENABLE:
                return None
            if status & PORT_LOW_SPEED:
                return Speed.LOW
            return Speed.HIGH if status & PORT_HIGH_SPEED else Speed.FULL

        async def disable() -> None:
            await self._feature(port, 1, False)  # CLEAR_FEATURE(PORT_ENABLE)

        await self.core.enumerate(info, reset, self.info.address, port, disable)
