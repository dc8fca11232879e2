"""The EHCI host controller model: registers, root ports, interrupts and device topology.

Sans-I/O: MMIO accesses are synchronous methods, schedule processing (:mod:`.schedule`) runs when
:meth:`EhciController.run` is called (by :mod:`.runtime` on kicks, completions and a frame timer),
device transfers are handed to a :class:`Backend` and finished by :meth:`complete`.  The IRQ line
is a callback ``irq(level: bool)``.

Full/low-speed devices: the root ports have no companion controllers (PO is read-only 0, so a
full-speed device on a root port is never enabled, exactly as on a standalone EHCI); instead
:class:`~usbredir.ehci.hub.Hub` is a high-speed hub with a transaction translator, as on every
Intel PCH since 2009 ("rate-matching hub").  Its downstream devices are reached with split QHs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from usbredir.device import Speed, TransferResult, UsbDevice
from usbredir.ehci import regs as R
from usbredir.ehci.memory import GuestMemory
from usbredir.ehci.schedule import ScheduleEngine
from usbredir.ehci.topology import Slot, bus_speed


class Backend(Protocol):
    """How the controller starts device coroutines (implemented by :class:`.runtime.EhciRuntime`)."""

    def submit(self, key: int, coro: Coroutine[Any, Any, TransferResult]) -> TransferResult | None:
        """Start a transfer; return its result if it finished at once, else None and call
        ``controller.complete(key, result)`` later."""

    def cancel(self, key: int) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Fire-and-forget (device reset)."""

    def kick(self) -> None:
        """Ask for :meth:`EhciController.run` soon."""


class EhciController(ScheduleEngine):
    """One EHCI controller with ``n_ports`` root ports (1..15)."""

    def __init__(self, memory: GuestMemory, *, n_ports: int = 6, mmio_base: int = 0xFEBF0000,
                 irq: Callable[[bool], None] | None = None, backend: Backend | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= n_ports <= 15:
            raise ValueError("EHCI has 1..15 root ports")
        self.memory = memory
        self.mmio_base = mmio_base
        memory.mmio_windows.append((mmio_base, R.MMIO_SIZE))
        self.n_ports = n_ports
        self.irq = irq
        self.backend = backend
        self.clock = clock
        self.ports: list[Slot | None] = [None] * n_ports
        self.portsc = [R.PORT_PP] * n_ports
        self.reserved = bytearray(0x24)  # 0x3C..0x5F: stored, returned
        self._irq_level = False
        self._addr_map: dict[int, Slot] | None = None
        super().__init__()
        self._reset_registers()

    # --- registers -------------------------------------------------------------------
    def _reset_registers(self) -> None:
        self.usbcmd = R.CMD_RESET_VALUE
        self.usbsts = R.STS_HALT
        self.usbintr = 0
        self.frindex = 0
        self.ctrldsseg = 0
        self.periodiclistbase = 0
        self.asynclistaddr = 0
        self.configflag = 0
        self.reserved[:] = bytes(len(self.reserved))
        self._t_frindex = self.clock()
        self._pending = 0
        self._irq_next = 0

    def hcsparams(self) -> int:
        return self.n_ports  # PPC=0, no companions, no port indicators

    def mmio_read(self, offset: int, size: int = 4) -> int:
        """A guest load from the MMIO window (capability bytes: any width; others: 32 bit)."""
        if offset < R.OPREG:
            caps = (0x20 | 0x0100 << 16).to_bytes(4, "little") + self.hcsparams().to_bytes(4, "little") \
                + (0x0000_6880).to_bytes(4, "little") + bytes(20)
            return int.from_bytes(caps[offset:offset + size], "little")
        if size != 4 or offset & 3:
            return 0xFFFFFFFF
        if offset == R.USBCMD:
            return self.usbcmd
        if offset == R.USBSTS:
            return self.usbsts
        if offset == R.USBINTR:
            return self.usbintr
        if offset == R.FRINDEX:
            self._update_frindex()
            return self.frindex
        if offset == R.CTRLDSSEGMENT:
            return self.ctrldsseg
        if offset == R.PERIODICLISTBASE:
            return self.periodiclistbase
        if offset == R.ASYNCLISTADDR:
            return self.asynclistaddr
        if 0x3C <= offset < R.CONFIGFLAG:
            return int.from_bytes(self.reserved[offset - 0x3C:offset - 0x38], "little")
        if offset == R.CONFIGFLAG:
            return self.configflag
        port = (offset - R.PORTSC0) // 4
        if 0 <= port < self.n_ports:
            return self.portsc[port]
        return 0

    def mmio_write(self, offset: int, value: int, size: int = 4) -> None:
        """A guest store to the MMIO window (capability registers ignore writes)."""
        if offset < R.OPREG or size != 4 or offset & 3:
            return
        value &= 0xFFFFFFFF
        if offset == R.USBCMD:
            self._write_usbcmd(value)
        elif offset == R.USBSTS:
            self.usbsts &= ~(value & R.STS_W1C)
            self._update_irq()
        elif offset == R.USBINTR:
            self.usbintr = value & R.INTR_MASK
            self._update_irq()
        elif offset == R.FRINDEX:
            if self.usbsts & R.STS_HALT:  # writable only while halted (EHCI 2.3.4)
                self.frindex = value & 0x3FFF
                self._t_frindex = self.clock()
        elif offset == R.CTRLDSSEGMENT:
            self.ctrldsseg = value
        elif offset == R.PERIODICLISTBASE:
            self.periodiclistbase = value & 0xFFFFF000
        elif offset == R.ASYNCLISTADDR:
            self.asynclistaddr = value & R.LP_ADDR
        elif 0x3C <= offset < R.CONFIGFLAG:
            self.reserved[offset - 0x3C:offset - 0x38] = value.to_bytes(4, "little")
        elif offset == R.CONFIGFLAG:
            self.configflag = value & 1
        else:
            port = (offset - R.PORTSC0) // 4
            if 0 <= port < self.n_ports:
                self._write_portsc(port, value)

    def _write_usbcmd(self, value: int) -> None:
        if value & R.CMD_HCRESET:
            self.hc_reset()
            return
        old = self.usbcmd
        self.usbcmd = (value & R.CMD_WRITABLE) | (old & R.CMD_IAAD)
        if value & R.CMD_IAAD:
            self.usbcmd |= R.CMD_IAAD
        if self.usbcmd & R.CMD_RS:
            if not old & R.CMD_RS:
                self._update_frindex()
            self.usbsts &= ~R.STS_HALT
        else:
            if old & R.CMD_RS:
                self._update_frindex()
                self.cancel_all()
            self.usbsts |= R.STS_HALT
        running = bool(self.usbcmd & R.CMD_RS)
        self.usbsts = (self.usbsts & ~(R.STS_PSS | R.STS_ASS)) \
            | (R.STS_PSS if running and self.usbcmd & R.CMD_PSE else 0) \
            | (R.STS_ASS if running and self.usbcmd & R.CMD_ASE else 0)
        if old & R.CMD_ASE and not self.usbcmd & R.CMD_ASE:
            self.cancel_all(periodic=False)
        self._kick()

    def hc_reset(self) -> None:
        """USBCMD.HCRESET: every register back to its default, transfers cancelled, ports disabled."""
        self.cancel_all()
        self._reset_registers()
        for i, slot in enumerate(self.ports):
            self.portsc[i] = R.PORT_PP | ((R.PORT_CCS | R.PORT_CSC) if slot else 0)
            if slot:
                self.quiesce(slot)
        self._addr_map = None
        self._update_irq()

    def _write_portsc(self, port: int, value: int) -> None:
        sc = self.portsc[port]
        sc &= ~(value & R.PORT_W1C)
        if not value & R.PORT_PED:
            if sc & R.PORT_PED:
                self._addr_map = None
            sc &= ~R.PORT_PED
        rw = value & R.PORT_RW
        slot = self.ports[port]
        if sc & R.PORT_PR and not rw & R.PORT_PR and slot is not None:  # end of port reset
            self._reset_slot(slot)
            sc &= ~R.PORT_CSC
            if slot.speed == Speed.HIGH:
                sc |= R.PORT_PED
            self._addr_map = None
        if rw & R.PORT_PR:
            sc &= ~R.PORT_PED
        if sc & R.PORT_FPR and not rw & R.PORT_FPR:
            rw &= ~R.PORT_SUSPEND
        self.portsc[port] = (sc & ~R.PORT_RW) | rw

    # --- interrupts ------------------------------------------------------------------
    def raise_status(self, bits: int) -> None:
        self.usbsts |= bits
        self._update_irq()

    def _update_irq(self) -> None:
        level = bool(self.usbsts & self.usbintr & R.INTR_MASK)
        if level != self._irq_level or level:
            self._irq_level = level
            if self.irq:
                self.irq(level)

    def host_system_error(self, why: str) -> None:
        """Fatal DMA/schedule error: HSE, halt (EHCI 4.15.2.4)."""
        self.last_error = why
        self.usbcmd &= ~(R.CMD_RS | R.CMD_IAAD)
        self.usbsts = (self.usbsts | R.STS_HSE | R.STS_HALT) & ~(R.STS_ASS | R.STS_PSS | R.STS_RECL)
        self.cancel_all()
        self._update_irq()

    # --- topology --------------------------------------------------------------------
    def attach(self, device: UsbDevice, port: int) -> Slot:
        """Plug ``device`` into root port ``port`` (1-based)."""
        if not 1 <= port <= self.n_ports or self.ports[port - 1] is not None:
            raise ValueError(f"root port {port} is not free")
        slot = Slot(device, bus_speed(device.speed), (port,))
        self.ports[port - 1] = slot
        self.portsc[port - 1] = (self.portsc[port - 1] | R.PORT_CCS | R.PORT_CSC) & ~R.PORT_PED
        self._on_attach(slot)
        self.raise_status(R.STS_PCD)
        return slot

    def detach(self, port: int) -> Slot | None:
        """Unplug whatever is on root port ``port``; in-flight transfers are cancelled."""
        slot = self.ports[port - 1]
        if slot is None:
            return None
        self.ports[port - 1] = None
        sc = self.portsc[port - 1] & ~(R.PORT_CCS | R.PORT_PED | R.PORT_SUSPEND)
        self.portsc[port - 1] = sc | R.PORT_CSC
        self._gone(slot)
        self.raise_status(R.STS_PCD)
        return slot

    def _on_attach(self, slot: Slot) -> None:
        hub = getattr(slot.device, "bind_controller", None)
        if hub is not None:
            hub(self, slot)

    def _gone(self, slot: Slot) -> None:
        """A slot left the bus: cancel its transfers (and those of devices behind it)."""
        slot.gone = True
        for child in getattr(slot.device, "children", lambda: [])():
            self._gone(child)
        self.cancel_slot(slot)
        self._addr_map = None

    def quiesce(self, slot: Slot) -> None:
        """A (hub-)port reset: cancel the transfers of ``slot`` and everything behind it; devices
        behind a hub stay connected but disabled until the guest resets their hub port."""
        self.cancel_slot(slot)
        for child in getattr(slot.device, "children", lambda: [])():
            self.quiesce(child)
            child.enabled = False
        slot.reset_state()
        self._addr_map = None

    def _reset_slot(self, slot: Slot) -> None:
        self.quiesce(slot)
        self._addr_map = None
        if self.backend:
            self.backend.spawn(slot.device.reset())

    def topology_changed(self) -> None:
        self._addr_map = None

    def slots(self) -> list[Slot]:
        """Every attached device, depth first (hubs before their children)."""
        out: list[Slot] = []

        def walk(slot: Slot) -> None:
            out.append(slot)
            for child in getattr(slot.device, "children", lambda: [])():
                walk(child)

        for slot in self.ports:
            if slot:
                walk(slot)
        return out

    def find_slot(self, address: int) -> Slot | None:
        """The enabled device answering to ``address`` (USB 2.0 9.1: only enabled ports carry traffic)."""
        if self._addr_map is None:
            amap: dict[int, Slot] = {}

            def walk(slot: Slot) -> None:
                amap.setdefault(slot.address, slot)
                for child in getattr(slot.device, "children", lambda: [])():
                    if child.enabled:
                        walk(child)

            for i, slot in enumerate(self.ports):
                if slot and self.portsc[i] & R.PORT_PED:
                    walk(slot)
            self._addr_map = amap
        return self._addr_map.get(address)

    # --- glue ------------------------------------------------------------------------
    def _kick(self) -> None:
        if self.backend:
            self.backend.kick()

    def _update_frindex(self) -> int:
        """Advance FRINDEX by the µframes elapsed while running; return the number of frames crossed."""
        now = self.clock()
        if not self.usbcmd & R.CMD_RS:
            self._t_frindex = now
            return 0
        ufr = int((now - self._t_frindex) * 8000 + 1e-6)
        if ufr <= 0:
            return 0
        self._t_frindex += ufr / 8000
        old = self.frindex
        new = old + ufr
        if (new >> 13) != (old >> 13):
            self.usbsts |= R.STS_FLR
        self.frindex = new & 0x3FFF
        return (new >> 3) - (old >> 3)
