"""Guest physical memory as the EHCI model and the guest's USB software see it.

A bytearray with bounds-checked, memoryview-based accessors.  Every DMA by the controller goes
through :meth:`GuestMemory.check`, which also refuses the controller's own MMIO window (the
CVE-2021-3750 lesson: DMA must never reach the device's registers).
"""

from __future__ import annotations

import struct


class DmaError(Exception):
    """A guest address range that is not backed by RAM (or hits an MMIO window)."""


_U32 = struct.Struct("<I")


class GuestMemory:
    """Bytearray-backed guest RAM starting at physical address 0."""

    def __init__(self, size: int, mmio_windows: tuple[tuple[int, int], ...] = ()) -> None:
        self.size = size
        self.ram = bytearray(size)
        self.view = memoryview(self.ram)
        #: (base, length) ranges that are device registers, not RAM: DMA into them is refused
        self.mmio_windows = list(mmio_windows)

    def check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise DmaError(f"DMA {addr:#x}+{length:#x} outside guest RAM ({self.size:#x})")
        for base, size in self.mmio_windows:
            if addr < base + size and base < addr + length:
                raise DmaError(f"DMA {addr:#x}+{length:#x} hits MMIO window {base:#x}")

    def read(self, addr: int, length: int) -> memoryview:
        self.check(addr, length)
        return self.view[addr:addr + length]

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        self.check(addr, n)
        self.view[addr:addr + n] = data

    def read32(self, addr: int) -> int:
        self.check(addr, 4)
        return _U32.unpack_from(self.ram, addr)[0]

    def write32(self, addr: int, value: int) -> None:
        self.check(addr, 4)
        _U32.pack_into(self.ram, addr, value & 0xFFFFFFFF)

    def read_dwords(self, addr: int, count: int) -> list[int]:
        self.check(addr, 4 * count)
        return list(struct.unpack_from(f"<{count}I", self.ram, addr))

    def write_dwords(self, addr: int, values: list[int] | tuple[int, ...]) -> None:
        self.check(addr, 4 * len(values))
        struct.pack_into(f"<{len(values)}I", self.ram, addr, *values)
