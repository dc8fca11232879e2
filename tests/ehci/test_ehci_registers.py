"""EHCI register semantics: reset values, read-only / W1C / reserved bits, ports, FRINDEX."""

from __future__ import annotations

from ehci_helpers import LowSpeedKeyboard

from usbredir.devices.hid import HidKeyboard
from usbredir.ehci import regs as R
from usbredir.ehci.controller import EhciController
from usbredir.ehci.memory import GuestMemory


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(n_ports: int = 6):
    clock = FakeClock()
    irqs: list[bool] = []
    c = EhciController(GuestMemory(1 << 20), n_ports=n_ports, irq=irqs.append, clock=clock)
    return c, clock, irqs


def test_capability_registers_and_reset_values():
    c, _, _ = make()
    assert c.mmio_read(0x00) == 0x0100_0020
    assert c.mmio_read(0x00, 1) == 0x20
    assert c.mmio_read(0x02, 2) == 0x0100
    assert c.mmio_read(0x04) == 6
    assert c.mmio_read(0x08) == 0x0000_6880
    assert c.mmio_read(0x0C) == 0
    c.mmio_write(0x00, 0xFFFFFFFF)  # capability writes are ignored
    c.mmio_write(0x04, 0)
    assert c.mmio_read(0x00) == 0x0100_0020 and c.mmio_read(0x04) == 6
    assert c.mmio_read(R.USBCMD) == 0x0008_0000
    assert c.mmio_read(R.USBSTS) == 0x0000_1000
    assert c.mmio_read(R.USBINTR) == 0
    assert c.mmio_read(R.FRINDEX) == 0
    assert c.mmio_read(R.CONFIGFLAG) == 0
    assert [c.mmio_read(R.PORTSC0 + 4 * i) for i in range(6)] == [0x1000] * 6
    assert make(15)[0].mmio_read(0x04) == 15


def test_usbcmd_fls_masked_and_hcreset_self_clears():
    c, _, _ = make()
    c.mmio_write(R.USBCMD, 0x0001_000C)  # ITC 1, FLS 11: only 1024 entries are supported
    assert c.mmio_read(R.USBCMD) == 0x0001_0000
    c.mmio_write(R.ASYNCLISTADDR, 0x1234_5678)
    c.mmio_write(R.PERIODICLISTBASE, 0x0012_3FFF)
    assert c.mmio_read(R.ASYNCLISTADDR) == 0x1234_5660  # bits 4:0 ignored
    assert c.mmio_read(R.PERIODICLISTBASE) == 0x0012_3000  # bits 11:0 ignored
    c.mmio_write(R.USBINTR, 0xFFFF_FFFF)
    assert c.mmio_read(R.USBINTR) == 0x3F
    c.mmio_write(0x40, 0xDEADBEEF)  # reserved op-reg space: stored and returned
    assert c.mmio_read(0x40) == 0xDEADBEEF
    c.mmio_write(R.USBCMD, R.CMD_HCRESET)
    assert c.mmio_read(R.USBCMD) == 0x0008_0000  # HCRESET reads 0 at once, defaults back
    assert c.mmio_read(R.ASYNCLISTADDR) == 0 and c.mmio_read(R.USBINTR) == 0 and c.mmio_read(0x40) == 0
    assert c.mmio_read(R.USBSTS) == 0x1000


def test_usbsts_write_one_to_clear_and_read_only_bits():
    c, _, irqs = make()
    c.attach(HidKeyboard(), 2)
    assert c.mmio_read(R.USBSTS) & R.STS_PCD
    c.mmio_write(R.USBSTS, 0)  # writing 0 changes nothing
    assert c.mmio_read(R.USBSTS) & R.STS_PCD
    c.mmio_write(R.USBSTS, R.STS_HALT | R.STS_ASS | R.STS_PSS | R.STS_RECL)  # RO bits ignored
    assert c.mmio_read(R.USBSTS) == R.STS_HALT | R.STS_PCD
    c.mmio_write(R.USBSTS, R.STS_PCD)
    assert c.mmio_read(R.USBSTS) == R.STS_HALT
    # IRQ line = USBSTS & USBINTR & 0x3F, re-evaluated on USBINTR writes too
    c.detach(2)
    assert not any(irqs)
    c.mmio_write(R.USBINTR, R.STS_PCD)
    assert irqs[-1] is True
    c.mmio_write(R.USBSTS, R.STS_PCD)
    assert irqs[-1] is False


def test_run_stop_halted_and_schedule_status():
    c, _, _ = make()
    c.mmio_write(R.USBCMD, R.CMD_RS | R.CMD_ASE | R.CMD_PSE | 1 << 16)
    sts = c.mmio_read(R.USBSTS)
    assert not sts & R.STS_HALT and sts & R.STS_ASS and sts & R.STS_PSS
    c.mmio_write(R.USBCMD, 1 << 16)
    assert c.mmio_read(R.USBSTS) & (R.STS_HALT | R.STS_ASS | R.STS_PSS) == R.STS_HALT


def test_frindex_counts_only_while_running_and_is_writable_when_halted():
    c, clock, _ = make()
    c.mmio_write(R.FRINDEX, 0x1FF0 | 0xC000)
    assert c.mmio_read(R.FRINDEX) == 0x1FF0  # 14 bits
    clock.t += 1.0
    assert c.mmio_read(R.FRINDEX) == 0x1FF0  # halted: no counting
    c.mmio_write(R.USBCMD, R.CMD_RS)
    clock.t += 0.003  # 3 ms = 24 µframes
    assert c.mmio_read(R.FRINDEX) == 0x1FF0 + 24
    c.mmio_write(R.FRINDEX, 0)  # ignored while running
    assert c.mmio_read(R.FRINDEX) == 0x1FF0 + 24
    clock.t += 0.001
    c.run()  # crossing 0x2000 is a frame list rollover
    assert c.mmio_read(R.USBSTS) & R.STS_FLR


def test_portsc_connect_reset_enable_sequence_high_speed():
    c, _, _ = make()
    c.attach(HidKeyboard(), 1)
    port = R.PORTSC0
    assert c.mmio_read(port) == R.PORT_PP | R.PORT_CCS | R.PORT_CSC
    c.mmio_write(port, R.PORT_PED)  # PED cannot be set by software
    assert not c.mmio_read(port) & R.PORT_PED
    c.mmio_write(port, R.PORT_CSC)  # W1C
    assert c.mmio_read(port) == R.PORT_PP | R.PORT_CCS
    c.mmio_write(port, R.PORT_PR)
    assert c.mmio_read(port) & R.PORT_PR and not c.mmio_read(port) & R.PORT_PED
    c.mmio_write(port, 0)  # end of reset: a high-speed device comes up enabled
    assert c.mmio_read(port) == R.PORT_PP | R.PORT_CCS | R.PORT_PED
    c.mmio_write(port, R.PORT_CCS)  # writing PED=0 disables; CCS is read-only
    assert c.mmio_read(port) == R.PORT_PP | R.PORT_CCS
    # not writable: PP (no PPC), PO (no companions), line status, PIC/PTC, reserved
    c.mmio_write(port, 0xFF80_FC00 | R.PORT_PO)
    assert c.mmio_read(port) & ~R.PORT_RW == R.PORT_PP | R.PORT_CCS
    c.mmio_write(port, R.PORT_SUSPEND | R.PORT_FPR | 0x0070_0000)
    assert c.mmio_read(port) & R.PORT_RW == R.PORT_SUSPEND | R.PORT_FPR | 0x0070_0000
    c.mmio_write(port, 0)  # FPR 1->0 also ends suspend
    assert not c.mmio_read(port) & (R.PORT_SUSPEND | R.PORT_FPR)
    c.detach(1)
    assert c.mmio_read(port) == R.PORT_PP | R.PORT_CSC


def test_full_and_low_speed_devices_are_not_enabled_on_root_ports():
    c, _, _ = make()
    c.attach(LowSpeedKeyboard(), 3)
    port = R.PORTSC0 + 8
    c.mmio_write(port, R.PORT_PR)
    c.mmio_write(port, 0)
    sc = c.mmio_read(port)
    assert sc & R.PORT_CCS and not sc & R.PORT_PED  # a plain EHCI port refuses it (no companion)
    assert c.find_slot(0) is None


def test_hcreset_keeps_devices_connected_but_disabled():
    c, _, _ = make()
    c.attach(HidKeyboard(), 4)
    port = R.PORTSC0 + 12
    c.mmio_write(port, R.PORT_PR)
    c.mmio_write(port, 0)
    assert c.mmio_read(port) & R.PORT_PED
    c.mmio_write(R.CONFIGFLAG, 1)
    assert c.mmio_read(R.CONFIGFLAG) == 1
    c.mmio_write(R.USBCMD, R.CMD_HCRESET)
    assert c.mmio_read(port) == R.PORT_PP | R.PORT_CCS | R.PORT_CSC
    assert c.mmio_read(R.CONFIGFLAG) == 0


def test_narrow_accesses_to_operational_registers():
    c, _, _ = make()
    c.mmio_write(R.USBINTR, 0x3F, size=1)  # only 32-bit accesses reach operational registers
    assert c.mmio_read(R.USBINTR) == 0
    assert c.mmio_read(R.USBCMD, 2) == 0xFFFFFFFF
