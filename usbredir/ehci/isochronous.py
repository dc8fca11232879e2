"""High-speed isochronous transfers for the EHCI model: iTD processing (spec ehci.md §6.4, §7.5).

All eight transactions of an iTD are handled in the frame visit that reaches it (as QEMU does);
a malformed transaction (page select > 6, crossing past page 6) gets XactErr, a missing device
XactErr for IN; isochronous packets must complete synchronously.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from usbredir.device import Status, TransferResult
from usbredir.ehci import regs as R
from usbredir.ehci.memory import DmaError
from usbredir.ehci.topology import Slot

if TYPE_CHECKING:
    from usbredir.ehci.controller import EhciController


class IsoEngine:
    """Mixin of :class:`~usbredir.ehci.schedule.ScheduleEngine`."""

    def _process_itd(self: EhciController, addr: int) -> int:
        itd = self._read(addr, 16)
        dev_addr, ep = itd[9] & 0x7F, (itd[9] >> 8) & 0xF
        is_in = bool(itd[10] & (1 << 11))
        maxp = itd[10] & 0x7FF
        mult = itd[11] & 3 or 1
        slot = self.find_slot(dev_addr)
        changed = False
        for k in range(8):
            t = itd[1 + k]
            if not t & R.ITD_ACTIVE:
                continue
            changed = True
            length = min((t >> 16) & 0xFFF, maxp * mult)
            pg, off = (t >> 12) & 7, t & 0xFFF
            bits = 0
            if pg > 6 or (off + length > 4096 and pg == 6):
                bits = R.ITD_XACT
                self._pending |= R.STS_ERR
            elif slot is None or slot.gone:
                bits = R.ITD_XACT if is_in else 0
                if is_in:
                    self._pending |= R.STS_ERR
                length = 0 if is_in else length
            else:
                first = (itd[9 + pg] & ~0xFFF) + off
                n1 = min(length, 4096 - off)
                segs = [(first, n1)] + ([((itd[10 + pg] & ~0xFFF), length - n1)] if length > n1 else [])
                for a, n in segs:
                    try:
                        self.memory.check(a, n)
                    except DmaError as exc:
                        self._hse(str(exc))
                if is_in:
                    res = self._iso_now(slot, ep | 0x80, None, length)
                    if res.status == Status.SUCCESS:
                        length = self._scatter(segs, memoryview(bytes(res.data))[:length])
                    else:
                        bits = R.ITD_BABBLE if res.status == Status.BABBLE else R.ITD_XACT
                        self._pending |= R.STS_ERR
                        length = 0
                else:
                    data = b"".join(bytes(self.memory.read(a, n)) for a, n in segs)
                    self._iso_now(slot, ep, data, 0)
            if t & R.ITD_IOC:
                self._pending |= R.STS_INT
            itd[1 + k] = (t & ~(R.ITD_ACTIVE | 0xFFF << 16)) | (length & 0xFFF) << 16 | bits
        if changed:
            self._write(addr + 4, itd[1:9])
            self.periodic_work = True
        return itd[0]

    def _iso_now(self: EhciController, slot: Slot, endpoint: int, data, length: int) -> TransferResult:
        """Isochronous packets are synchronous (QEMU asserts it): a device that would block fails."""
        if self.backend is None:
            return TransferResult(Status.IOERROR)
        key = self._next_key
        self._next_key += 1
        result = self.backend.submit(key, slot.device.iso(endpoint, data, length))
        if result is None:
            self.backend.cancel(key)
            return TransferResult(Status.IOERROR)
        return result
