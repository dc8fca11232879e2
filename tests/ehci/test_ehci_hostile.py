"""Hostile schedules written straight into guest memory: every pass returns, and the transfer or
the controller halts with the right status bit (QEMU's EHCI CVE list as the checklist)."""

from __future__ import annotations

from ehci_helpers import LoopbackDevice, qh_words, qtd_words
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usbredir.ehci import regs as R
from usbredir.ehci.controller import EhciController
from usbredir.ehci.memory import GuestMemory
from usbredir.ehci.schedule import MAX_PERIODIC_NODES

MEM = 1 << 20
HEAD, QH_A, QH_B = 0x1000, 0x1100, 0x1200
QTD_A, QTD_B = 0x2000, 0x2100
BUF = 0x10000
FRAMES = 0x8000


class SyncBackend:
    """Runs device coroutines to their first suspension; keeps the ones that block."""

    def __init__(self) -> None:
        self.pending: dict[int, object] = {}
        self.cancelled: list[int] = []

    def submit(self, key, coro):
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
        self.pending[key] = coro
        return None

    def cancel(self, key):
        coro = self.pending.pop(key, None)
        if coro is not None:
            coro.close()
            self.cancelled.append(key)

    def spawn(self, coro):
        try:
            coro.send(None)
        except StopIteration:
            pass

    def kick(self):
        pass


class Clock:
    t = 10.0

    def __call__(self) -> float:
        return self.t


def rig():
    clock = Clock()
    mem = GuestMemory(MEM)
    c = EhciController(mem, backend=SyncBackend(), clock=clock, mmio_base=0xF000)  # MMIO inside RAM range
    dev = LoopbackDevice()
    c.attach(dev, 1)
    c.mmio_write(R.PORTSC0, R.PORT_PR)
    c.mmio_write(R.PORTSC0, 0)
    dev.configuration = 1
    c.mmio_write(R.USBSTS, 0x3F)
    return c, mem, dev, clock


def start_async(c: EhciController) -> None:
    c.mmio_write(R.ASYNCLISTADDR, HEAD)
    c.mmio_write(R.USBCMD, R.CMD_RS | R.CMD_ASE | 1 << 16)


def sts(c: EhciController) -> int:
    return c.mmio_read(R.USBSTS)


def halted_by_hse(c: EhciController) -> bool:
    s = sts(c)
    return bool(s & R.STS_HSE and s & R.STS_HALT and not c.mmio_read(R.USBCMD) & R.CMD_RS)


def test_async_ring_looping_away_from_its_start_is_a_host_system_error():
    c, mem, _, _ = rig()
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    mem.write_dwords(QH_A, qh_words(QH_B | 2, 0, 2))
    mem.write_dwords(QH_B, qh_words(QH_A | 2, 0, 2))  # B -> A, never back to HEAD
    start_async(c)
    c.run()
    assert halted_by_hse(c) and "loops" in c.last_error


def test_endless_async_chain_is_bounded():
    c, mem, _, _ = rig()
    n = 1100
    for i in range(n):
        mem.write_dwords(0x20000 + 64 * i, qh_words((0x20000 + 64 * (i + 1)) | 2, 0, 2))
    mem.write_dwords(0x20000 + 64 * n, qh_words(0x20000 + 64 * n | 2, 0, 2))
    c.mmio_write(R.ASYNCLISTADDR, 0x20000)
    c.mmio_write(R.USBCMD, R.CMD_RS | R.CMD_ASE)
    c.run()
    assert halted_by_hse(c)


def test_non_qh_in_async_ring_and_link_outside_ram():
    c, mem, _, _ = rig()
    mem.write_dwords(HEAD, qh_words(QH_A | 0, 0, 0, head=True))  # Typ iTD in the async ring
    start_async(c)
    c.run()
    assert halted_by_hse(c)
    c, mem, _, _ = rig()
    mem.write_dwords(HEAD, qh_words(0xFFFF_F000 | 2, 0, 0, head=True))
    start_async(c)
    c.run()
    assert halted_by_hse(c) and "outside guest RAM" in c.last_error


def test_qtd_loop_executes_each_qtd_once_and_stops():
    c, mem, dev, _ = rig()
    mem.write(BUF, b"A" * 512 + b"B" * 512)
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    mem.write_dwords(QH_A, qh_words(HEAD | 2, 0, 2, next_qtd=QTD_A))
    mem.write_dwords(QTD_A, qtd_words(QTD_B, R.token(R.PID_OUT, 512), BUF))
    mem.write_dwords(QTD_B, qtd_words(QTD_A, R.token(R.PID_OUT, 512, ioc=True), BUF + 512))  # B -> A
    start_async(c)
    for _ in range(3):
        c.run()
    assert bytes(dev.stored) == b"A" * 512 + b"B" * 512
    assert not mem.read32(QTD_A + 8) & R.TOK_ACTIVE and not mem.read32(QTD_B + 8) & R.TOK_ACTIVE
    assert sts(c) & R.STS_INT and not sts(c) & R.STS_HSE


def test_self_linked_short_in_qtd_stops():
    c, mem, dev, _ = rig()
    dev.stored += b"xyz"
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    mem.write_dwords(QH_A, qh_words(HEAD | 2, 0, 1, next_qtd=QTD_A))
    words = qtd_words(QTD_A, R.token(R.PID_IN, 512), BUF)
    words[1] = QTD_A  # alt-next -> itself as well
    mem.write_dwords(QTD_A, words)
    start_async(c)
    c.run()
    c.run()
    tok = mem.read32(QTD_A + 8)
    assert not tok & R.TOK_ACTIVE and (tok >> 16) & 0x7FFF == 509 and bytes(mem.read(BUF, 3)) == b"xyz"
    assert sts(c) & R.STS_INT  # short packet


def _one_qtd(tok: int, buf: int = BUF, *, ep: int = 2):
    c, mem, dev, _ = rig()
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    mem.write_dwords(QH_A, qh_words(HEAD | 2, 0, ep, next_qtd=QTD_A, dtc=ep == 0))
    mem.write_dwords(QTD_A, qtd_words(1, tok, buf))
    start_async(c)
    c.run()
    return c, mem, dev


def test_huge_total_bytes_halts_the_qtd_with_xacterr():
    c, mem, dev = _one_qtd(R.token(R.PID_OUT, 0x7FFF))
    tok = mem.read32(QTD_A + 8)
    assert tok & R.TOK_HALTED and tok & R.TOK_XACT and not tok & R.TOK_ACTIVE
    assert sts(c) & R.STS_ERR and not sts(c) & R.STS_HSE and c.mmio_read(R.USBCMD) & R.CMD_RS
    assert not dev.stored


def test_buffer_running_past_page_4_halts_the_qtd():
    c, mem, _ = _one_qtd(R.token(R.PID_OUT, 20480), BUF + 0x800)  # would need a sixth page
    assert mem.read32(QTD_A + 8) & (R.TOK_HALTED | R.TOK_XACT) == R.TOK_HALTED | R.TOK_XACT
    c, mem, _ = _one_qtd(R.token(3, 8))  # reserved PID
    assert mem.read32(QTD_A + 8) & R.TOK_HALTED


def test_dma_outside_ram_or_into_mmio_is_a_host_system_error():
    c, mem, dev = _one_qtd(R.token(R.PID_OUT, 64), 0xFFFF_0000)
    assert halted_by_hse(c) and not dev.stored
    c, mem, dev = _one_qtd(R.token(R.PID_IN, 64), 0xF000)  # the controller's own registers
    assert halted_by_hse(c) and "MMIO" in c.last_error


def test_setup_with_oversized_wlength_stalls_before_storing_anything():
    c, mem, _, _ = rig()
    mem.write(BUF, bytes.fromhex("80060001000000ff"))  # wLength 0xFF00 > 4096
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    mem.write_dwords(QH_A, qh_words(HEAD | 2, 0, 0, maxp=64, dtc=True, next_qtd=QTD_A))
    mem.write_dwords(QTD_A, qtd_words(1, R.token(R.PID_SETUP, 8), BUF))
    start_async(c)
    c.run()
    tok = mem.read32(QTD_A + 8)
    assert tok & R.TOK_HALTED and not tok & (R.TOK_XACT | R.TOK_BABBLE)  # STALL
    assert c.find_slot(0).pipe.setup is None


def _periodic(c: EhciController, mem: GuestMemory, first: int) -> None:
    mem.write_dwords(FRAMES, [first] * 1024)
    c.mmio_write(R.PERIODICLISTBASE, FRAMES)
    c.mmio_write(R.USBCMD, R.CMD_RS | R.CMD_PSE)


def test_self_referencing_itd_is_a_host_system_error():
    c, mem, _, clock = rig()
    itd = [0x3000 | 0] + [0] * 15  # next -> itself, Typ iTD
    mem.write_dwords(0x3000, itd)
    _periodic(c, mem, 0x3000)
    clock.t += 0.002
    c.run()
    assert halted_by_hse(c) and "loops" in c.last_error


def test_periodic_qh_loop_and_endless_chain_are_host_system_errors():
    c, mem, _, clock = rig()
    mem.write_dwords(QH_A, qh_words(QH_B | 2, 0, 1, smask=1))
    mem.write_dwords(QH_B, qh_words(QH_A | 2, 0, 1, smask=1))
    _periodic(c, mem, QH_A | 2)
    clock.t += 0.001
    c.run()
    assert halted_by_hse(c)
    c, mem, _, clock = rig()
    for i in range(MAX_PERIODIC_NODES + 10):
        mem.write_dwords(0x20000 + 64 * i, qh_words((0x20000 + 64 * (i + 1)) | 2, 0, 1))
    _periodic(c, mem, 0x20000 | 2)
    clock.t += 0.001
    c.run()
    assert halted_by_hse(c)


def test_periodic_list_base_outside_ram():
    c, mem, _, clock = rig()
    c.mmio_write(R.PERIODICLISTBASE, 0xFFFF_0000)
    c.mmio_write(R.USBCMD, R.CMD_RS | R.CMD_PSE)
    clock.t += 0.001
    c.run()
    assert halted_by_hse(c)


def test_itd_in_and_out_transactions():
    c, mem, dev, clock = rig()
    in_itd, out_itd = 0x3000, 0x3100
    # iTD IN on ep 3: µframe 0 reads 188 bytes at page 0 offset 0xF80 (crosses into page 1), IOC
    words = [out_itd | 0, R.ITD_ACTIVE | 188 << 16 | R.ITD_IOC | 0 << 12 | 0xF80] + [0] * 7
    words += [BUF | 3 << 8 | 0, (BUF + 0x1000) | 1 << 11 | 1024, (BUF + 0x2000) | 1] + [0] * 4
    mem.write_dwords(in_itd, words)
    mem.write(BUF + 0x4000, b"iso-out!")
    words = [1, R.ITD_ACTIVE | 8 << 16 | 0, R.ITD_ACTIVE | 4 << 16 | 7 << 12] + [0] * 6  # 2nd: PG 7 invalid
    words += [(BUF + 0x4000) | 4 << 8, 1024, 1] + [0] * 4
    mem.write_dwords(out_itd, words)
    _periodic(c, mem, in_itd)
    clock.t += 0.001
    c.run()
    t0 = mem.read32(in_itd + 4)
    assert not t0 & R.ITD_ACTIVE and (t0 >> 16) & 0xFFF == 188
    assert bytes(mem.read(BUF + 0xF80, 188)) == bytes(range(188))
    assert dev.iso_out == [b"iso-out!"]
    bad = mem.read32(out_itd + 8)
    assert not bad & R.ITD_ACTIVE and bad & R.ITD_XACT
    assert sts(c) & R.STS_INT and sts(c) & R.STS_ERR and not sts(c) & R.STS_HSE


_dword = st.one_of(
    st.integers(0, 2**32 - 1),
    st.tuples(st.integers(0, 127), st.integers(0, 7)).map(lambda t: 0x1000 + 32 * t[0] | t[1]),  # links
    st.tuples(st.integers(0, 0x7FFF), st.integers(0, 3)).map(lambda t: t[0] << 16 | t[1] << 8 | 0x80),  # tokens
    st.sampled_from([0, 1, 0x80, R.ITD_ACTIVE | 1024 << 16, 0x4000_0001, 0x0200_2000 | 8 << 16]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_dword, max_size=1024), st.integers(0, 127), st.integers(0, 127), st.integers(0, 3),
       st.integers(0, 5))
def test_random_schedule_memory_never_escapes(dwords, async_slot, frame_slot, typ, runs):
    """Garbage in the structure area: every pass returns; no exception leaves the controller."""
    c, mem, _, clock = rig()
    if dwords:
        mem.write_dwords(0x1000, dwords)
    mem.write_dwords(FRAMES, [(0x1000 + 32 * frame_slot) | typ << 1] * 1024)
    c.mmio_write(R.PERIODICLISTBASE, FRAMES)
    c.mmio_write(R.ASYNCLISTADDR, 0x1000 + 32 * async_slot)
    c.mmio_write(R.USBCMD, R.CMD_RS | R.CMD_ASE | R.CMD_PSE)
    for _ in range(runs + 1):
        clock.t += 0.001
        c.run()
    assert c.mmio_read(R.USBSTS) & R.STS_HALT or c.mmio_read(R.USBCMD) & R.CMD_RS


def test_sitd_loop_is_a_host_system_error():
    c, mem, _, clock = rig()
    mem.write_dwords(0x3000, [0x3040 | R.TYP_SITD << 1] + [0] * 6)
    mem.write_dwords(0x3040, [0x3000 | R.TYP_SITD << 1] + [0] * 6)  # CVE-2016-4037 shape
    _periodic(c, mem, 0x3000 | R.TYP_SITD << 1)
    clock.t += 0.001
    c.run()
    assert halted_by_hse(c)


def test_active_overlay_with_null_current_qtd_is_not_executed_from_address_0():
    c, mem, dev, _ = rig()
    mem.write(0, b"\xAA" * 64)
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    words = qh_words(HEAD | 2, 0, 2)
    words[6] = R.token(R.PID_OUT, 16)  # overlay says active, current qTD pointer is 0
    mem.write_dwords(QH_A, words)
    start_async(c)
    c.run()
    assert not dev.stored and bytes(mem.read(0, 64)) == b"\xAA" * 64
    assert not sts(c) & R.STS_HSE
