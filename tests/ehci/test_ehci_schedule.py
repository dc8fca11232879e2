"""Async/periodic schedule semantics on hand-built structures: combined bulk qTDs, short packets
and alternate-next, data toggles, interrupt NAK retry, async-advance doorbell cancellation."""

from __future__ import annotations

from ehci_helpers import qh_words, qtd_words
from test_ehci_hostile import BUF, FRAMES, HEAD, QH_A, QTD_A, rig, start_async, sts

from usbredir.ehci import regs as R

QTDS = [0x2000 + 0x40 * i for i in range(4)]


def _chain(mem, pid: int, sizes: list[int], alt: int = 1) -> None:
    for i, n in enumerate(sizes):
        nxt = QTDS[i + 1] if i + 1 < len(sizes) else 1
        words = qtd_words(nxt, R.token(pid, n, ioc=i == len(sizes) - 1), BUF + 0x1000 * i)
        words[1] = alt
        mem.write_dwords(QTDS[i], words)


def test_bulk_in_qtds_are_combined_into_one_device_call_and_split_back():
    c, mem, dev, _ = rig()
    dev.stored += bytes(range(256)) * 3  # 768 bytes waiting
    mem.write_dwords(0x2F00, [1, 1, R.TOK_HALTED, 0, 0, 0, 0, 0])  # inactive "stop" qTD for alt-next
    _chain(mem, R.PID_IN, [512, 512, 512], alt=0x2F00)
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    mem.write_dwords(QH_A, qh_words(HEAD | 2, 0, 1, next_qtd=QTDS[0]))
    start_async(c)
    c.run()
    assert dev.calls == 1  # one bulk IN of 1536 bytes
    t = [mem.read32(q + 8) for q in QTDS[:3]]
    assert not t[0] & R.TOK_ACTIVE and (t[0] >> 16) & 0x7FFF == 0
    assert not t[1] & R.TOK_ACTIVE and (t[1] >> 16) & 0x7FFF == 256  # short: 256 of 512
    assert t[2] & R.TOK_ACTIVE  # never executed: the short packet ended the transfer (alt-next)
    assert bytes(mem.read(BUF, 512)) + bytes(mem.read(BUF + 0x1000, 256)) == bytes(range(256)) * 3
    assert mem.read32(QH_A + 12) == QTDS[1]  # overlay stayed on the short qTD
    assert sts(c) & R.STS_INT


def test_bulk_out_combined_and_data_toggle_kept_in_qh():
    c, mem, dev, _ = rig()
    for i in range(3):
        mem.write(BUF + 0x1000 * i, bytes([65 + i]) * 512)
    _chain(mem, R.PID_OUT, [512, 512, 100])
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    mem.write_dwords(QH_A, qh_words(HEAD | 2, 0, 2, next_qtd=QTDS[0]))  # DTC=0
    start_async(c)
    c.run()
    assert dev.calls == 1 and bytes(dev.stored) == b"A" * 512 + b"B" * 512 + b"C" * 100
    assert all(not mem.read32(q + 8) & R.TOK_ACTIVE for q in QTDS[:3])
    assert mem.read32(QH_A + 24) & R.TOK_DT  # 3 packets: DATA0, DATA1, DATA0 -> next is DATA1


def test_interrupt_in_naks_are_retried_every_period():
    c, mem, dev, clock = rig()
    from usbredir.device import Status, TransferResult

    answers = [TransferResult(Status.NAK)] * 3 + [TransferResult(Status.SUCCESS, b"\x01\x02\x03")]
    polls = []

    async def interrupt(endpoint, data=None, length=0):
        polls.append(endpoint)
        return answers[len(polls) - 1]

    dev.interrupt = interrupt
    mem.write_dwords(QTD_A, qtd_words(1, R.token(R.PID_IN, 8, ioc=True), BUF))
    mem.write_dwords(QH_A, qh_words(1, 0, 1, maxp=8, smask=1, next_qtd=QTD_A))
    mem.write_dwords(FRAMES, [QH_A | 2] * 1024)
    c.mmio_write(R.PERIODICLISTBASE, FRAMES)
    c.mmio_write(R.USBCMD, R.CMD_RS | R.CMD_PSE)
    for _ in range(6):
        clock.t += 0.001
        c.run()
    assert polls == [0x81] * 4  # one poll per frame until data, none after
    tok = mem.read32(QTD_A + 8)
    assert not tok & R.TOK_ACTIVE and (tok >> 16) & 0x7FFF == 5 and bytes(mem.read(BUF, 3)) == b"\x01\x02\x03"


async def test_doorbell_cancels_in_flight_transfer_of_unlinked_qh():
    c, mem, dev, _ = rig()
    mem.write_dwords(QTD_A, qtd_words(1, R.token(R.PID_IN, 512, ioc=True), BUF))
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    mem.write_dwords(QH_A, qh_words(HEAD | 2, 0, 5, next_qtd=QTD_A))  # ep 5 blocks in the device
    start_async(c)
    c.run()
    assert dev.blocked.is_set() and c.packets
    mem.write32(HEAD, HEAD | 2)  # unlink QH_A
    c.mmio_write(R.USBCMD, c.mmio_read(R.USBCMD) | R.CMD_IAAD)
    c.run()
    assert sts(c) & R.STS_IAA and not c.mmio_read(R.USBCMD) & R.CMD_IAAD
    assert not c.packets and c.backend.cancelled  # the device transfer was cancelled
    c.complete(1, None)  # a late completion for the cancelled key is ignored
    assert mem.read32(QTD_A + 8) & R.TOK_ACTIVE


def test_interrupt_threshold_delays_the_next_usbint():
    c, mem, dev, clock = rig()
    mem.write_dwords(HEAD, qh_words(QH_A | 2, 0, 0, head=True))
    mem.write_dwords(QH_A, qh_words(HEAD | 2, 0, 2, next_qtd=QTDS[0]))
    mem.write_dwords(QTDS[0], qtd_words(1, R.token(R.PID_OUT, 8, ioc=True), BUF))
    c.mmio_write(R.ASYNCLISTADDR, HEAD)
    c.mmio_write(R.USBCMD, R.CMD_RS | R.CMD_ASE | 8 << 16)  # ITC = 8 µframes
    c.run()
    assert sts(c) & R.STS_INT
    c.mmio_write(R.USBSTS, R.STS_INT)
    mem.write_dwords(QTDS[1], qtd_words(1, R.token(R.PID_OUT, 8, ioc=True), BUF))
    mem.write32(QH_A + 16, QTDS[1])  # the idle QH's overlay gets the next transfer
    clock.t += 0.0004  # 3 µframes later
    c.run()
    assert not mem.read32(QTDS[1] + 8) & R.TOK_ACTIVE  # done, but its interrupt waits for the ITC slot
    assert not sts(c) & R.STS_INT
    clock.t += 0.0006
    c.run()
    assert sts(c) & R.STS_INT
