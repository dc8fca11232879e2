"""The guest OS's DMA memory allocator: aligned blocks carved from a region of guest RAM."""

from __future__ import annotations

from usbredir.ehci.memory import GuestMemory


class OutOfDmaMemory(MemoryError):
    """The DMA region is exhausted (the driver turns this into a failed transfer)."""


class DmaPool:
    """Size-class allocator: 64-byte blocks for QHs/qTDs (32-byte aligned), whole 4 KiB pages for
    buffers and the frame list.  Freed blocks go back to a per-size free list."""

    def __init__(self, memory: GuestMemory, base: int, size: int) -> None:
        self.memory = memory
        self.base = (base + 4095) & ~4095
        self.end = base + size
        self._small_top = self.base  # small blocks grow up from base in 4 KiB chunks
        self._free: dict[int, list[int]] = {}
        self._sizes: dict[int, int] = {}
        self._page_top = self.end & ~4095  # pages grow down from the end

    def _grab_pages(self, pages: int) -> int:
        top = self._page_top - pages * 4096
        if top < self._small_top:
            raise OutOfDmaMemory(f"no {pages} free pages")
        self._page_top = top
        return top

    def alloc(self, size: int, *, zero: bool = True) -> int:
        """An address aligned to 32 bytes (size <= 64) or to 4 KiB (larger)."""
        cls = 64 if size <= 64 else (size + 4095) & ~4095
        free = self._free.get(cls)
        if free:
            addr = free.pop()
        elif cls == 64:
            if self._small_top + 64 > self._page_top:
                raise OutOfDmaMemory("no small blocks left")
            addr = self._small_top
            self._small_top += 64
        else:
            addr = self._grab_pages(cls // 4096)
        self._sizes[addr] = cls
        if zero:
            self.memory.write(addr, bytes(min(cls, max(size, 64))))
        return addr

    def free(self, addr: int) -> None:
        cls = self._sizes.pop(addr, None)
        if cls is not None:
            self._free.setdefault(cls, []).append(addr)

    @property
    def in_use(self) -> int:
        return sum(self._sizes.values())
