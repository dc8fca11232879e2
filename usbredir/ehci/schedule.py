"""Schedule processing for the EHCI model: the async QH ring, the periodic frame list (interrupt
QHs, iTDs), qTD execution against devices, completion and write-back (spec ehci.md §7).

Runs only when asked (:meth:`ScheduleEngine.run`) and is bounded everywhere guest memory links to
itself: a QH ring is walked at most once per pass, each QH executes at most ``MAX_QTDS_PER_VISIT``
qTDs, a frame visits at most ``MAX_PERIODIC_NODES`` nodes and never the same node twice.  Guest
memory errors (a structure or buffer outside RAM / inside MMIO, a ring that loops elsewhere than
its start, an unterminated frame chain) raise HostSystemError and halt the controller; malformed
qTDs/iTD transactions (length > 20480, buffer past page 4, reserved PID) halt just that transfer
with XactErr + USBERRINT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from usbredir.device import SetupPacket, Speed, Status, TransferResult
from usbredir.ehci import regs as R
from usbredir.ehci.isochronous import IsoEngine
from usbredir.ehci.memory import DmaError
from usbredir.ehci.topology import MAX_CONTROL_DATA, Slot

if TYPE_CHECKING:
    from usbredir.ehci.controller import EhciController

MAX_QH_PER_PASS = 1024
MAX_QTDS_PER_VISIT = 64
MAX_PERIODIC_NODES = 256
MAX_CATCHUP_FRAMES = 64
MAX_COMBINE_QTDS = 64
MAX_COMBINE_BYTES = 1 << 20
SPLIT_ENDPOINT = {Speed.FULL: R.EPS_FULL, Speed.LOW: R.EPS_LOW, Speed.HIGH: R.EPS_HIGH}


class _Fatal(Exception):
    """Abort the pass: HostSystemError."""


@dataclass(eq=False)
class Packet:
    """One qTD handed to a device and not finished yet (QEMU's EHCIPacket)."""

    key: int
    qh_addr: int
    qtd_addr: int
    slot: Slot
    stage: str  # bulk|intr|setup|status
    pid: int
    total: int
    segments: list[tuple[int, int]]
    maxp: int
    group: list[tuple] = field(default_factory=list)  # further qTDs combined into this transfer


@dataclass(eq=False)
class Queue:
    """Per-QH cache (QEMU's EHCIQueue): in-flight packet and the pass it was last seen in."""

    addr: int
    periodic: bool
    packet: Packet | None = None
    seen: int = 0
    slot: Slot | None = field(default=None)


class ScheduleEngine(IsoEngine):
    """Mixin for :class:`~usbredir.ehci.controller.EhciController` holding the schedule walkers."""

    def __init__(self: EhciController) -> None:  # type: ignore[misc]
        self.queues: dict[int, Queue] = {}
        self.packets: dict[int, Packet] = {}
        self._next_key = 1
        self._pass = 0
        self._pending = 0  # USBINT/USBERRINT/IAA raised during a run, committed at its end
        self._irq_next = 0  # FRINDEX from which the next interrupt may be committed
        self._running = False
        self._last_frame = 0
        self.periodic_work = False
        self.last_error = ""
        self.stats = {"async_passes": 0, "frames": 0, "qtds": 0, "async_qtds": 0}

    # --- entry points ----------------------------------------------------------------
    def run(self: EhciController, do_async: bool = True) -> None:
        """Process whatever the schedules hold now (non re-entrant); ``do_async=False`` walks only
        the frames that elapsed (the runtime polls an idle async ring less often)."""
        if self._running:
            return
        self._running = True
        try:
            self._run_periodic()
            if do_async or self.usbcmd & R.CMD_IAAD:
                self._run_async()
        except _Fatal:
            pass
        finally:
            self._running = False
            self._commit()

    def complete(self: EhciController, key: int, result: TransferResult) -> None:
        """A device finished a transfer started by ``backend.submit`` (asyncio glue calls this)."""
        packet = self.packets.pop(key, None)
        if packet is None:
            return  # cancelled meanwhile: drop the reply (QEMU usbredir_is_cancelled)
        queue = self.queues.get(packet.qh_addr)
        if queue is not None and queue.packet is packet:
            queue.packet = None
        if packet.slot.gone or self.usbsts & R.STS_HALT:
            return
        try:
            qh = self.memory.read_dwords(packet.qh_addr, 12)
            if (qh[3] & R.LP_ADDR) != packet.qtd_addr or not qh[6] & R.TOK_ACTIVE:
                return  # the guest took the qTD away
            self._deliver(packet.qh_addr, qh, packet, result)
            if not queue or not queue.periodic:
                self._visit_qh(packet.qh_addr, periodic=False)  # continue with the next qTDs
        except DmaError as exc:
            self.host_system_error(str(exc))
        except _Fatal:
            pass
        finally:
            self._commit()

    def cancel_all(self: EhciController, periodic: bool | None = None) -> None:
        for queue in list(self.queues.values()):
            if periodic is None or queue.periodic == periodic:
                self._drop_queue(queue)

    def cancel_slot(self: EhciController, slot: Slot) -> None:
        for queue in list(self.queues.values()):
            if queue.slot is slot:
                self._drop_queue(queue)

    def _drop_queue(self: EhciController, queue: Queue) -> None:
        if queue.packet is not None:
            self.packets.pop(queue.packet.key, None)
            if self.backend:
                self.backend.cancel(queue.packet.key)
            queue.packet = None
        self.queues.pop(queue.addr, None)

    def _commit(self: EhciController) -> None:
        """Make pending USBINT/USBERRINT/IAA visible, at most once per ITC µframes (EHCI 4.15)."""
        if self._pending:
            itc = (self.usbcmd >> R.CMD_ITC_SHIFT) & 0xFF
            running = bool(self.usbcmd & R.CMD_RS)
            if running and itc > 1:
                self._update_frindex()
                if (self.frindex - self._irq_next) & 0x3FFF >= 0x2000:
                    self._update_irq()  # not yet: the runtime's timer comes back for it
                    return
            self.usbsts |= self._pending
            self._pending = 0
            self._irq_next = (self.frindex + itc) & 0x3FFF
        self._update_irq()

    def _hse(self: EhciController, why: str) -> None:
        self.host_system_error(why)
        raise _Fatal(why)

    def _read(self: EhciController, addr: int, count: int) -> list[int]:
        try:
            return self.memory.read_dwords(addr, count)
        except DmaError as exc:
            self._hse(str(exc))
            raise  # unreachable

    def _write(self: EhciController, addr: int, values: list[int]) -> None:
        try:
            self.memory.write_dwords(addr, values)
        except DmaError as exc:
            self._hse(str(exc))

    # --- async schedule --------------------------------------------------------------
    def _run_async(self: EhciController) -> None:
        cmd = self.usbcmd
        if not cmd & R.CMD_RS or not cmd & R.CMD_ASE or self.usbsts & R.STS_HALT:
            if cmd & R.CMD_IAAD:
                self._doorbell_done()
            return
        self._pass += 1
        self.stats["async_passes"] += 1
        if self.asynclistaddr:
            self.usbsts |= R.STS_RECL
            start = addr = self.asynclistaddr
            visited: set[int] = set()
            while True:
                if addr in visited:
                    if addr != start:
                        self._hse(f"async ring loops at QH {addr:#x} without returning to {start:#x}")
                    break
                if len(visited) >= MAX_QH_PER_PASS:
                    self._hse(f"async ring longer than {MAX_QH_PER_PASS} QHs")
                visited.add(addr)
                link = self._visit_qh(addr, periodic=False)
                if link & R.LP_T:
                    break
                if (link >> 1) & 3 != R.TYP_QH:
                    self._hse(f"non-QH entry {link:#x} in the async ring")
                addr = link & R.LP_ADDR
            self.usbsts &= ~R.STS_RECL
        if self.usbcmd & R.CMD_IAAD:
            self._doorbell_done()

    def _doorbell_done(self: EhciController) -> None:
        """Interrupt on async advance: forget every async QH not seen in the last pass."""
        for queue in list(self.queues.values()):
            if not queue.periodic and queue.seen != self._pass:
                self._drop_queue(queue)
        self.usbcmd &= ~R.CMD_IAAD
        self._pending |= R.STS_IAA

    # --- periodic schedule -----------------------------------------------------------
    def _run_periodic(self: EhciController) -> None:
        frames = self._update_frindex()
        self.periodic_work = False
        cmd = self.usbcmd
        if not cmd & R.CMD_RS or not cmd & R.CMD_PSE or self.usbsts & R.STS_HALT:
            self._last_frame = self.frindex >> 3
            return
        if frames <= 0:
            return
        cur = self.frindex >> 3
        frames = min(frames, MAX_CATCHUP_FRAMES)
        for f in range(cur - frames + 1, cur + 1):
            self._walk_frame(f & 0x3FF)
        self._last_frame = cur
        if len(self.queues) > 64:  # age out idle caches of QHs the guest no longer links (QEMU: 4*maxframes)
            for queue in [q for q in self.queues.values() if q.packet is None and q.seen < self._pass - 4096]:
                del self.queues[queue.addr]

    def _walk_frame(self: EhciController, frame: int) -> None:
        self.stats["frames"] += 1
        self._pass += 1
        link = self._read(self.periodiclistbase + 4 * frame, 1)[0]
        visited: set[int] = set()
        while not link & R.LP_T:
            addr = link & R.LP_ADDR
            if addr in visited:
                self._hse(f"periodic list of frame {frame} loops at {addr:#x}")
            if len(visited) >= MAX_PERIODIC_NODES:
                self._hse(f"periodic list of frame {frame} longer than {MAX_PERIODIC_NODES} nodes")
            visited.add(addr)
            typ = (link >> 1) & 3
            if typ == R.TYP_QH:
                link = self._visit_qh(addr, periodic=True)
            elif typ == R.TYP_ITD:
                link = self._process_itd(addr)
            elif typ == R.TYP_SITD:
                link = self._read(addr, 1)[0]  # FS isochronous through the TT: not supported, skipped
            else:  # FSTN: follow the normal path
                link = self._read(addr, 1)[0]

    # --- queue heads -----------------------------------------------------------------
    def _visit_qh(self: EhciController, qh_addr: int, periodic: bool) -> int:
        """Execute what this QH has; return its horizontal link."""
        if periodic:  # skeleton / async-only QHs in the frame tree: look at the S-mask first
            head = self._read(qh_addr, 3)
            if not head[2] & 0xFF:
                return head[0]
        qh = self._read(qh_addr, 12)
        smask = qh[2] & 0xFF
        queue = self.queues.get(qh_addr)
        if queue is None:
            queue = self.queues[qh_addr] = Queue(qh_addr, periodic)
        queue.seen = self._pass
        if queue.packet is not None:
            pkt = queue.packet
            if (qh[3] & R.LP_ADDR) == pkt.qtd_addr and qh[6] & R.TOK_ACTIVE:
                return qh[0]  # still in flight
            self._drop_queue(queue)  # guest rewrote the overlay under an in-flight qTD: cancel
            queue = self.queues[qh_addr] = Queue(qh_addr, periodic, seen=self._pass)
        budget = (bin(smask).count("1") * max(1, qh[2] >> 30)) if periodic else MAX_QTDS_PER_VISIT
        while budget > 0:
            budget -= 1
            tok = qh[6]
            if tok & R.TOK_HALTED:
                break
            if tok & R.TOK_ACTIVE and not qh[3] & R.LP_ADDR:
                tok = qh[6] = tok & ~R.TOK_ACTIVE  # active overlay without a current qTD: ignore (8bb01b257f)
            if not tok & R.TOK_ACTIVE:
                nxt = self._advance(qh)
                if nxt is None:
                    break
                qtd = self._read(nxt, 8)
                if not qtd[2] & R.TOK_ACTIVE:
                    break
                self._overlay(qh_addr, qh, nxt, qtd)
            outcome = self._execute(qh_addr, qh, queue, periodic)
            if outcome != "done":
                break
        return qh[0]

    @staticmethod
    def _advance(qh: list[int]) -> int | None:
        """Next qTD after the overlay (EHCI 4.10.2): alt-next after a short packet, else next."""
        if (qh[6] >> R.TOK_BYTES_SHIFT) & R.TOK_BYTES_MASK and not qh[5] & R.LP_T:
            return qh[5] & R.LP_ADDR
        if not qh[4] & R.LP_T and qh[4] & R.LP_ADDR:
            return qh[4] & R.LP_ADDR
        return None

    def _overlay(self: EhciController, qh_addr: int, qh: list[int], qtd_addr: int, qtd: list[int]) -> None:
        tok = qtd[2]
        if not qh[1] & R.QH_DTC:
            tok = (tok & ~R.TOK_DT) | (qh[6] & R.TOK_DT)
        qh[3] = qtd_addr
        qh[4] = qtd[0]
        qh[5] = (qtd[1] & ~0x1E) | ((qh[1] >> 28) << 1)
        qh[6] = tok
        qh[7] = qtd[3]
        qh[8] = qtd[4] & ~0xFF
        qh[9] = qtd[5] & ~0x1F
        qh[10] = qtd[6]
        qh[11] = qtd[7]
        self._write(qh_addr + 12, qh[3:12])

    # --- execution -------------------------------------------------------------------
    def _halt_qtd(self: EhciController, qh_addr: int, qh: list[int], bits: int) -> str:
        """Finish the overlay's qTD with an error (Halted + ``bits``), USBERRINT."""
        qh[6] = (qh[6] & ~(R.TOK_ACTIVE | 3 << R.TOK_CERR_SHIFT)) | R.TOK_HALTED | bits
        self._pending |= R.STS_ERR
        self._writeback(qh_addr, qh)
        return "halted"

    def _segments(self: EhciController, qh: list[int], total: int) -> list[tuple[int, int]] | None:
        """Scatter list of the overlay buffer; None if it runs past page 4."""
        return self._buffer_segments(qh[6], qh[7:12], total)

    def _buffer_segments(self: EhciController, tok: int, pages: list[int], total: int) -> list[tuple[int, int]] | None:
        cpage = (tok >> R.TOK_CPAGE_SHIFT) & 7
        offset = pages[0] & 0xFFF
        segs: list[tuple[int, int]] = []
        left = total
        while left > 0:
            if cpage > 4:
                return None
            base = pages[cpage] & ~0xFFF
            n = min(left, 4096 - offset)
            if segs and segs[-1][0] + segs[-1][1] == base + offset:
                segs[-1] = (segs[-1][0], segs[-1][1] + n)
            else:
                segs.append((base + offset, n))
            left -= n
            offset = 0
            cpage += 1
        for addr, n in segs:
            try:
                self.memory.check(addr, n)
            except DmaError as exc:
                self._hse(str(exc))
        return segs

    def _combine(self: EhciController, qh: list[int], pid: int, total: int, maxp: int) -> list[tuple]:
        """Following active qTDs of a bulk QH that can go to the device as one transfer (QEMU merges
        bulk IN up to ~1 MiB): same PID, each one but the last a whole number of packets."""
        group: list[tuple] = []
        if total == 0 or total % maxp:
            return group
        acc, nxt = total, qh[4]
        while len(group) < MAX_COMBINE_QTDS and acc < MAX_COMBINE_BYTES and not nxt & R.LP_T:
            addr = nxt & R.LP_ADDR
            words = self._read(addr, 8)
            tok = words[2]
            n = (tok >> R.TOK_BYTES_SHIFT) & R.TOK_BYTES_MASK
            if not tok & R.TOK_ACTIVE or (tok >> R.TOK_PID_SHIFT) & 3 != pid or not n or n > R.MAX_QTD_BYTES \
                    or addr in (g[0] for g in group) or addr == qh[3] & R.LP_ADDR:
                break
            segs = self._buffer_segments(tok, words[3:8], n)
            if segs is None:
                break
            group.append((addr, n, segs))
            acc += n
            if n % maxp:
                break
            nxt = words[0]
        return group

    def _execute(self: EhciController, qh_addr: int, qh: list[int], queue: Queue, periodic: bool) -> str:
        """Run the overlay's qTD: 'done' (finished now), 'pending', 'nak' or 'halted'."""
        tok = qh[6]
        pid = (tok >> R.TOK_PID_SHIFT) & 3
        total = (tok >> R.TOK_BYTES_SHIFT) & R.TOK_BYTES_MASK
        if pid == 3 or total > R.MAX_QTD_BYTES:
            return self._halt_qtd(qh_addr, qh, R.TOK_XACT)
        segs = self._segments(qh, total)
        if segs is None:
            return self._halt_qtd(qh_addr, qh, R.TOK_XACT)
        epchar, epcap = qh[1], qh[2]
        slot = self.find_slot(epchar & 0x7F)
        if slot is None or slot.gone:
            return self._halt_qtd(qh_addr, qh, R.TOK_XACT)
        eps = (epchar >> 12) & 3
        if eps != R.EPS_HIGH:  # split transaction: must name the TT hub and port the device hangs on
            if slot.speed == Speed.HIGH or slot.parent is None or SPLIT_ENDPOINT.get(slot.speed) != eps \
                    or slot.parent.address != (epcap >> 16) & 0x7F or slot.path[-1] != (epcap >> 23) & 0x7F:
                return self._halt_qtd(qh_addr, qh, R.TOK_XACT)
        elif slot.speed != Speed.HIGH:
            return self._halt_qtd(qh_addr, qh, R.TOK_XACT)
        queue.slot = slot
        ep = (epchar >> 8) & 0xF
        maxp = (epchar >> 16) & 0x7FF or 1
        self.stats["qtds"] += 1
        if not periodic:
            self.stats["async_qtds"] += 1
        if ep == 0:
            return self._execute_control(qh_addr, qh, queue, slot, pid, total, segs, maxp)
        stage = "intr" if periodic else "bulk"
        if pid == R.PID_SETUP:
            return self._halt_qtd(qh_addr, qh, R.TOK_XACT)
        call = slot.device.interrupt if periodic else slot.device.bulk
        group = [] if periodic else self._combine(qh, pid, total, maxp)
        length = total + sum(g[1] for g in group)
        if pid == R.PID_IN:
            coro = call(ep | 0x80, None, length)
        else:
            data = b"".join(bytes(self.memory.read(a, n)) for a, n in segs)
            data += b"".join(bytes(self.memory.read(a, n)) for g in group for a, n in g[2])
            coro = call(ep, data, 0)
        pkt = Packet(0, qh_addr, qh[3] & R.LP_ADDR, slot, stage, pid, total, segs, maxp)
        pkt.group = group
        return self._submit(qh_addr, qh, queue, pkt, coro)

    def _execute_control(self: EhciController, qh_addr: int, qh: list[int], queue: Queue, slot: Slot,
                         pid: int, total: int, segs: list[tuple[int, int]], maxp: int) -> str:
        pipe = slot.pipe
        pkt = Packet(0, qh_addr, qh[3] & R.LP_ADDR, slot, "ctl", pid, total, segs, maxp)
        if pid == R.PID_SETUP:
            pipe.clear()
            if total != 8:
                return self._halt_qtd(qh_addr, qh, 0)
            setup = SetupPacket.parse(self.memory.read(segs[0][0], 8))
            if setup.length > MAX_CONTROL_DATA:
                return self._halt_qtd(qh_addr, qh, 0)  # STALL before storing anything
            pipe.setup = setup
            if setup.request_type == 0x00 and setup.request == 0x05:
                pipe.local_address = setup.value & 0x7F
            elif setup.is_in:
                pkt.stage = "setup"
                return self._submit(qh_addr, qh, queue, pkt, slot.device.control(setup))
            return self._finish(qh_addr, qh, pkt, TransferResult(Status.SUCCESS, actual=8))
        setup = pipe.setup
        if setup is None:
            return self._halt_qtd(qh_addr, qh, 0)
        if setup.is_in and setup.length and pid == R.PID_IN:  # data IN from the buffered reply
            chunk = bytes(pipe.data[pipe.pos:pipe.pos + total])
            pipe.pos += len(chunk)
            return self._finish(qh_addr, qh, pkt, TransferResult(Status.SUCCESS, chunk))
        if not setup.is_in and setup.length and pid == R.PID_OUT:  # data OUT into the buffer
            data = b"".join(bytes(self.memory.read(a, n)) for a, n in segs)
            room = setup.length - len(pipe.data)
            pipe.data += data[:room]
            status = Status.SUCCESS if len(data) <= room else Status.BABBLE
            return self._finish(qh_addr, qh, pkt, TransferResult(status, actual=len(data)))
        # status stage
        if setup.is_in and setup.length:
            return self._finish(qh_addr, qh, pkt, TransferResult(Status.SUCCESS))
        if pipe.local_address is not None:
            slot.address = pipe.local_address
            pipe.clear()
            self.topology_changed()
            return self._finish(qh_addr, qh, pkt, TransferResult(Status.SUCCESS))
        pkt.stage = "status"
        return self._submit(qh_addr, qh, queue, pkt, slot.device.control(setup, bytes(pipe.data)))

    def _submit(self: EhciController, qh_addr: int, qh: list[int], queue: Queue, packet: Packet, coro) -> str:
        if self.backend is None:
            coro.close()
            return self._halt_qtd(qh_addr, qh, R.TOK_XACT)
        packet.key = self._next_key
        self._next_key += 1
        result = self.backend.submit(packet.key, coro)
        if result is None:
            queue.packet = packet
            self.packets[packet.key] = packet
            return "pending"
        return self._deliver(qh_addr, qh, packet, result)

    def _deliver(self: EhciController, qh_addr: int, qh: list[int], pkt: Packet, result: TransferResult) -> str:
        """Finish a packet; a combined bulk transfer is split back over its qTDs in order."""
        if not pkt.group:
            return self._finish(qh_addr, qh, pkt, result)
        data = memoryview(bytes(result.data)) if pkt.pid == R.PID_IN else None
        left = len(data) if data is not None else (result.actual or sum(g[1] for g in pkt.group) + pkt.total)
        pos = 0
        parts = [(pkt.qtd_addr, pkt.total, pkt.segments)] + pkt.group
        outcome = "done"
        for i, (addr, total, segs) in enumerate(parts):
            if i:
                words = self._read(addr, 8)
                if not words[2] & R.TOK_ACTIVE or (qh[4] & R.LP_ADDR) != addr:
                    break  # the guest changed the chain meanwhile
                self._overlay(qh_addr, qh, addr, words)
            sub = Packet(pkt.key, qh_addr, addr, pkt.slot, pkt.stage, pkt.pid, total, segs, pkt.maxp)
            if result.status != Status.SUCCESS:
                return self._finish(qh_addr, qh, sub, result)
            if data is not None:
                chunk = data[pos:pos + total]
                outcome = self._finish(qh_addr, qh, sub, TransferResult(Status.SUCCESS, chunk))
                pos += len(chunk)
                if len(chunk) < total:
                    break
            else:
                n = min(total, left)
                outcome = self._finish(qh_addr, qh, sub, TransferResult(Status.SUCCESS, actual=n or total))
                left -= n
            if outcome != "done":
                break
        return outcome

    # --- completion ------------------------------------------------------------------
    def _finish(self: EhciController, qh_addr: int, qh: list[int], pkt: Packet, result: TransferResult) -> str:
        """Apply a device result to the overlay, write it back to the QH and the qTD (§7.4)."""
        status = result.status
        slot = pkt.slot
        if pkt.stage == "setup":  # IN control request executed at SETUP time: buffer the reply
            if status == Status.SUCCESS:
                slot.pipe.data = bytearray(bytes(result.data)[:slot.pipe.setup.length])
                result = TransferResult(Status.SUCCESS, actual=8)
        elif pkt.stage == "status" and status == Status.SUCCESS:
            slot.pipe.clear()
        if status == Status.NAK:
            qh[5] &= ~0x1E  # NakCnt := 0; qTD stays active, retried on a later visit
            self._write(qh_addr + 20, [qh[5]])
            return "nak"
        moved = 0
        bits = 0
        if status == Status.SUCCESS:
            if pkt.pid == R.PID_IN:
                data = result.data
                if len(data) > pkt.total:
                    bits = R.TOK_HALTED | R.TOK_BABBLE
                    data = memoryview(data)[:pkt.total]
                moved = self._scatter(pkt.segments, data)
                slot.bytes_in += moved
            else:
                moved = pkt.total if not 0 < result.actual < pkt.total else result.actual
                if pkt.pid == R.PID_OUT:
                    slot.bytes_out += moved
        elif status == Status.STALL:
            bits = R.TOK_HALTED
        elif status == Status.BABBLE:
            bits = R.TOK_HALTED | R.TOK_BABBLE
        else:
            bits = R.TOK_HALTED | R.TOK_XACT
        tok = qh[6]
        remaining = pkt.total - moved
        pos = (qh[7] & 0xFFF) + moved
        cpage = ((tok >> R.TOK_CPAGE_SHIFT) & 7) + pos // 4096
        offset = pos % 4096
        if cpage > 4:  # the transfer filled all five pages
            cpage, offset = 4, 0
        packets = max(1, -(-moved // pkt.maxp))
        if packets & 1 and not bits & R.TOK_HALTED:
            tok ^= R.TOK_DT
        tok &= ~(R.TOK_ACTIVE | R.TOK_BYTES_MASK << R.TOK_BYTES_SHIFT | 7 << R.TOK_CPAGE_SHIFT)
        tok |= remaining << R.TOK_BYTES_SHIFT | cpage << R.TOK_CPAGE_SHIFT | bits
        if bits & R.TOK_HALTED:
            tok &= ~(3 << R.TOK_CERR_SHIFT)
            self._pending |= R.STS_ERR
        if tok & R.TOK_IOC or (pkt.pid == R.PID_IN and remaining and not bits):
            self._pending |= R.STS_INT
        qh[6] = tok
        qh[7] = (qh[7] & ~0xFFF) | offset
        self._writeback(qh_addr, qh)
        return "halted" if bits & R.TOK_HALTED else "done"

    def _scatter(self: EhciController, segs: list[tuple[int, int]], data) -> int:
        view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
        done = 0
        for addr, n in segs:
            if done >= len(view):
                break
            chunk = view[done:done + n]
            self.memory.write(addr, chunk)
            done += len(chunk)
        return done

    def _writeback(self: EhciController, qh_addr: int, qh: list[int]) -> None:
        """QH dwords 3..11, then the qTD's dword 3 before dword 2 (QEMU f471e8b060)."""
        self._write(qh_addr + 12, qh[3:12])
        qtd = qh[3] & R.LP_ADDR
        self._write(qtd + 12, [qh[7]])
        self._write(qtd + 8, [qh[6]])
