"""Shared helpers for the EHCI tests: a controller + guest driver rig and tiny test devices."""

from __future__ import annotations

import asyncio
import struct

from usbredir.device import SetupPacket, Speed, Status, TransferResult
from usbredir.devices.base import (
    VirtualDevice,
    config_descriptor,
    device_descriptor,
    endpoint_descriptor,
    interface_descriptor,
)
from usbredir.devices.hid import HidKeyboard, HidMouse
from usbredir.ehci.controller import EhciController
from usbredir.ehci.memory import GuestMemory
from usbredir.ehci.runtime import EhciRuntime
from usbredir.guest.dma import DmaPool
from usbredir.guest.hcd import EhciHcd


class Rig:
    """Controller + runtime + guest EHCI driver, without the USB core (tests drive ports)."""

    def __init__(self, n_ports: int = 6, mem: int = 8 << 20) -> None:
        self.mem = GuestMemory(mem)
        self.irqs: list[bool] = []
        self.ctl = EhciController(self.mem, n_ports=n_ports, irq=self._irq)
        self.hcd = EhciHcd(self.mem, self.ctl.mmio_read, self.ctl.mmio_write, DmaPool(self.mem, 0x10000, 4 << 20))
        self.rt: EhciRuntime | None = None

    def _irq(self, level: bool) -> None:
        self.irqs.append(level)
        self.hcd.irq(level)

    async def start(self) -> Rig:
        self.rt = EhciRuntime(self.ctl)
        await self.hcd.start()
        return self

    async def close(self) -> None:
        await self.hcd.stop()
        await self.rt.close()


def with_speed(cls, speed: Speed, maxp0: int | None = None):
    """A subclass of a virtual device class that reports another speed (and bMaxPacketSize0)."""

    class Slow(cls):
        @property
        def speed(self) -> Speed:
            return speed

        @property
        def device_descriptor(self) -> bytes:
            d = bytearray(super().device_descriptor)
            if maxp0:
                d[7] = maxp0
            return bytes(d)

    Slow.__name__ = f"{cls.__name__}{speed.name.title()}"
    return Slow


LowSpeedKeyboard = with_speed(HidKeyboard, Speed.LOW, 8)
FullSpeedMouse = with_speed(HidMouse, Speed.FULL, 8)


class LoopbackDevice(VirtualDevice):
    """Vendor device: bulk OUT 0x02 stores data, bulk IN 0x81 returns it (or ``fill`` bytes);
    iso IN 0x83 returns a counter pattern; bulk IN on 0x85 blocks until cancelled."""

    PRODUCT = "loopback"

    def __init__(self) -> None:
        super().__init__()
        self.stored = bytearray()
        self.iso_out: list[bytes] = []
        self.blocked = asyncio.Event()
        self.cancelled = 0
        self.calls = 0

    @property
    def device_descriptor(self) -> bytes:
        return device_descriptor(0x1209, 0x0BAD, device_class=0xFF)

    @property
    def config_descriptors(self) -> list[bytes]:
        eps = (endpoint_descriptor(0x81, 2, 512, 0) + endpoint_descriptor(0x02, 2, 512, 0)
               + endpoint_descriptor(0x83, 1, 1024, 1) + endpoint_descriptor(0x04, 1, 1024, 1)
               + endpoint_descriptor(0x85, 2, 512, 0))
        return [config_descriptor(1, 1, interface_descriptor(0, 5, 0xFF, 0, 0) + eps)]

    async def bulk(self, endpoint, data=None, length=0) -> TransferResult:
        self.calls += 1
        if endpoint == 0x02:
            self.stored += bytes(data)
            return TransferResult(Status.SUCCESS, actual=len(data))
        if endpoint == 0x81:
            out, self.stored = bytes(self.stored[:length]), self.stored[length:]
            return TransferResult(Status.SUCCESS, out)
        if endpoint == 0x85:
            self.blocked.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return TransferResult(Status.STALL)

    async def iso(self, endpoint, data=None, length=0) -> TransferResult:
        if endpoint == 0x83:
            return TransferResult(Status.SUCCESS, bytes(i & 0xFF for i in range(length)))
        if endpoint == 0x04:
            self.iso_out.append(bytes(data))
            return TransferResult(Status.SUCCESS, actual=len(data))
        return TransferResult(Status.STALL)


def get_descriptor(dtype: int, index: int = 0, length: int = 18, lang: int = 0) -> bytes:
    return SetupPacket(0x80, 6, dtype << 8 | index, lang, length).pack()


def qh_words(link: int, addr: int, ep: int, maxp: int = 512, *, head: bool = False, dtc: bool = False,
             eps: int = 2, smask: int = 0, next_qtd: int = 1) -> list[int]:
    epchar = maxp << 16 | eps << 12 | ep << 8 | addr | (1 << 15 if head else 0) | (1 << 14 if dtc else 0)
    return [link, epchar, 1 << 30 | smask, 0, next_qtd, 1, 0, 0, 0, 0, 0, 0]


def qtd_words(next_: int, tok: int, buf: int) -> list[int]:
    return [next_, 1, tok, buf] + [((buf & ~0xFFF) + 4096 * i) for i in range(1, 5)]


u32 = struct.Struct("<I")
