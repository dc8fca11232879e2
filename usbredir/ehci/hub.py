"""A high-speed USB 2.0 hub with a single transaction translator, part of the controller model.

Why a TT hub and not companion controllers: real EHCI refuses full/low-speed devices on its root
ports; QEMU pairs it with UHCI companions, Intel PCHs since 2009 instead put a rate-matching hub
with a TT behind every EHCI port.  A hub needs no second controller model and no second guest
driver, gives the guest split transactions (QH hub address / port / S- and C-mask) and also
provides the many ports the 32-device goal needs.  Split transactions complete atomically
(the start- and complete-split collapse into one transaction).

The hub is a :class:`~usbredir.device.UsbDevice`; the controller binds itself to it when it is
attached (``bind_controller``) so that hub-port resets and unplugs cancel transfers.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from usbredir.device import SetupPacket, Speed, Status, TransferResult, UsbDevice
from usbredir.ehci.topology import Slot, bus_speed

if TYPE_CHECKING:
    from usbredir.ehci.controller import EhciController

# wPortStatus / wPortChange bits and port features (USB 2.0 11.24.2.7)
PS_CONNECTION, PS_ENABLE, PS_SUSPEND, PS_OVERCURRENT, PS_RESET = 0x1, 0x2, 0x4, 0x8, 0x10
PS_POWER, PS_LOW_SPEED, PS_HIGH_SPEED = 0x100, 0x200, 0x400
F_CONNECTION, F_ENABLE, F_SUSPEND, F_OVER_CURRENT, F_RESET, F_POWER = 0, 1, 2, 3, 4, 8
F_C_CONNECTION, F_C_ENABLE, F_C_SUSPEND, F_C_OVER_CURRENT, F_C_RESET = 16, 17, 18, 19, 20
DT_HUB = 0x29


class _Port:
    __slots__ = ("slot", "status", "change")

    def __init__(self) -> None:
        self.slot: Slot | None = None
        self.status = 0
        self.change = 0


class Hub(UsbDevice):
    """An n-port high-speed hub (default 8 ports) with one TT."""

    def __init__(self, n_ports: int = 8, product: str = "aiospice USB 2.0 hub") -> None:
        if not 1 <= n_ports <= 31:
            raise ValueError("1..31 hub ports")
        self.n_ports = n_ports
        self._product = product
        self.ports = [_Port() for _ in range(n_ports)]
        self.controller: EhciController | None = None
        self.slot: Slot | None = None
        self.configuration = 0

    # --- controller side -------------------------------------------------------------
    def bind_controller(self, controller: EhciController, slot: Slot) -> None:
        self.controller = controller
        self.slot = slot

    def children(self) -> list[Slot]:
        return [p.slot for p in self.ports if p.slot is not None]

    def free_ports(self) -> list[int]:
        return [i + 1 for i, p in enumerate(self.ports) if p.slot is None]

    def connect(self, port: int, device: UsbDevice) -> Slot:
        p = self.ports[port - 1]
        if p.slot is not None or self.slot is None:
            raise ValueError(f"hub port {port} is not free")
        p.slot = Slot(device, bus_speed(device.speed), self.slot.path + (port,), parent=self.slot)
        if p.status & PS_POWER:
            p.status |= PS_CONNECTION
            p.change |= PS_CONNECTION
        self._speed_bits(p)
        if self.controller is not None:
            self.controller._on_attach(p.slot)
        return p.slot

    def disconnect(self, port: int) -> Slot | None:
        p = self.ports[port - 1]
        slot = p.slot
        if slot is None:
            return None
        p.slot = None
        if p.status & PS_CONNECTION:
            p.change |= PS_CONNECTION
        if p.status & PS_ENABLE:
            p.change |= PS_ENABLE
        p.status &= ~(PS_CONNECTION | PS_ENABLE | PS_SUSPEND | PS_RESET | PS_LOW_SPEED | PS_HIGH_SPEED)
        slot.enabled = False
        if self.controller is not None:
            self.controller._gone(slot)
        return slot

    @staticmethod
    def _speed_bits(p: _Port) -> None:
        p.status &= ~(PS_LOW_SPEED | PS_HIGH_SPEED)
        if p.slot is not None and p.status & PS_CONNECTION:
            p.status |= {Speed.LOW: PS_LOW_SPEED, Speed.HIGH: PS_HIGH_SPEED}.get(p.slot.speed, 0)

    # --- UsbDevice -------------------------------------------------------------------
    @property
    def speed(self) -> Speed:
        return Speed.HIGH

    @property
    def product(self) -> str:
        return self._product

    @property
    def device_descriptor(self) -> bytes:
        # class 9, protocol 1 = single TT; VID 0x1d6b is Linux Foundation's, PID 0x0002 its 2.0 hub
        return struct.pack("<BBHBBBBHHHBBBB", 18, 1, 0x0200, 9, 0, 1, 64, 0x1D6B, 0x0002, 0x0100, 1, 2, 0, 1)

    @property
    def config_descriptors(self) -> list[bytes]:
        ep = struct.pack("<BBBBHB", 7, 5, 0x81, 0x03, (self.n_ports + 8) // 8, 7)  # 2^6 µframes = 8 ms
        intf = struct.pack("<BBBBBBBBB", 9, 4, 0, 0, 1, 9, 0, 0, 0)
        body = intf + ep
        return [struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), 1, 1, 0, 0xE0, 0) + body]

    def hub_descriptor(self) -> bytes:
        nbytes = (self.n_ports + 8) // 8
        # characteristics: per-port power switching (01), per-port over-current (01 << 3), TT think time 8 FS bits
        return bytes((7 + 2 * nbytes, DT_HUB, self.n_ports)) + struct.pack("<HBB", 0x0009, 1, 0) \
            + bytes(nbytes) + b"\xff" * nbytes

    async def control(self, setup: SetupPacket, data: bytes = b"") -> TransferResult:
        rt, req, value, index = setup.request_type, setup.request, setup.value, setup.index
        ok = TransferResult(Status.SUCCESS)
        if rt == 0x80 and req == 6:
            dtype, di = value >> 8, value & 0xFF
            if dtype == 1:
                return TransferResult(Status.SUCCESS, self.device_descriptor[:setup.length])
            if dtype == 2 and di == 0:
                return TransferResult(Status.SUCCESS, self.config_descriptors[0][:setup.length])
            if dtype == 3:
                text = {0: None, 1: "aiospice", 2: self._product}.get(di, "")
                if di not in (0, 1, 2):
                    return TransferResult(Status.STALL)
                blob = b"\x04\x03\x09\x04" if text is None else bytes((2 + 2 * len(text), 3)) + text.encode("utf-16-le")
                return TransferResult(Status.SUCCESS, blob[:setup.length])
            return TransferResult(Status.STALL)
        if rt == 0x00 and req == 9:
            self.configuration = value & 0xFF
            return ok
        if rt == 0x80 and req == 8:
            return TransferResult(Status.SUCCESS, bytes((self.configuration,)))
        if rt in (0x80, 0x81, 0x82) and req == 0:
            return TransferResult(Status.SUCCESS, b"\x01\x00"[:setup.length])
        if rt in (0x00, 0x01, 0x02) and req in (1, 3):  # standard SET/CLEAR_FEATURE
            return ok
        if rt == 0xA0 and req == 6 and value >> 8 == DT_HUB:
            return TransferResult(Status.SUCCESS, self.hub_descriptor()[:setup.length])
        if rt == 0xA0 and req == 0:  # hub status
            return TransferResult(Status.SUCCESS, bytes(4)[:setup.length])
        if rt == 0x20 and req in (1, 3):  # clear/set hub feature (C_HUB_*): nothing to do
            return ok
        if rt == 0x23 and req == 8 or rt == 0x23 and req in (9, 10, 11):  # TT requests
            return ok
        if not 1 <= index & 0xFF <= self.n_ports:
            return TransferResult(Status.STALL)
        p = self.ports[(index & 0xFF) - 1]
        if rt == 0xA3 and req == 0:  # GET_STATUS(port)
            return TransferResult(Status.SUCCESS, struct.pack("<HH", p.status, p.change)[:setup.length])
        if rt == 0x23 and req == 3:  # SET_FEATURE(port)
            return await self._set_port_feature(p, value)
        if rt == 0x23 and req == 1:  # CLEAR_FEATURE(port)
            return self._clear_port_feature(p, value)
        return TransferResult(Status.STALL)

    async def _set_port_feature(self, p: _Port, feature: int) -> TransferResult:
        if feature == F_POWER:
            if not p.status & PS_POWER:
                p.status |= PS_POWER
                if p.slot is not None:
                    p.status |= PS_CONNECTION
                    p.change |= PS_CONNECTION
                    self._speed_bits(p)
        elif feature == F_RESET:
            if p.slot is not None and p.status & PS_POWER:
                slot = p.slot
                if self.controller is not None:
                    self.controller.quiesce(slot)
                slot.reset_state()
                await slot.device.reset()
                if p.slot is slot:  # still there after the reset
                    p.status |= PS_ENABLE
                    p.change |= PS_RESET
                    slot.enabled = True
                    self._speed_bits(p)
                if self.controller is not None:
                    self.controller.topology_changed()
        elif feature == F_SUSPEND:
            p.status |= PS_SUSPEND
        elif feature not in (F_C_CONNECTION, F_C_ENABLE, F_C_RESET):
            return TransferResult(Status.STALL)
        return TransferResult(Status.SUCCESS)

    def _clear_port_feature(self, p: _Port, feature: int) -> TransferResult:
        bit = {F_C_CONNECTION: PS_CONNECTION, F_C_ENABLE: PS_ENABLE, F_C_SUSPEND: PS_SUSPEND,
               F_C_OVER_CURRENT: PS_OVERCURRENT, F_C_RESET: PS_RESET}.get(feature)
        if bit is not None:
            p.change &= ~bit
        elif feature == F_ENABLE:
            p.status &= ~PS_ENABLE
            if p.slot is not None:
                p.slot.enabled = False
                if self.controller is not None:
                    self.controller.topology_changed()
        elif feature == F_SUSPEND:
            p.status &= ~PS_SUSPEND
        elif feature == F_POWER:
            p.status &= ~(PS_POWER | PS_CONNECTION | PS_ENABLE)
            if p.slot is not None:
                p.slot.enabled = False
        else:
            return TransferResult(Status.STALL)
        return TransferResult(Status.SUCCESS)

    async def interrupt(self, endpoint: int, data=None, length: int = 0) -> TransferResult:
        """Status-change endpoint: bitmap of ports with a change (bit n = port n), NAK if none."""
        if endpoint != 0x81:
            return TransferResult(Status.STALL)
        bits = 0
        for i, p in enumerate(self.ports):
            if p.change:
                bits |= 1 << (i + 1)
        if not bits:
            return TransferResult(Status.NAK)
        return TransferResult(Status.SUCCESS, bits.to_bytes((self.n_ports + 8) // 8, "little")[:length or None])

    async def bulk(self, endpoint: int, data=None, length: int = 0) -> TransferResult:
        return TransferResult(Status.STALL)

    async def reset(self) -> None:
        self.configuration = 0
        for p in self.ports:
            p.status &= ~(PS_POWER | PS_ENABLE | PS_CONNECTION | PS_SUSPEND)
            p.change = 0
            if p.slot is not None:
                p.slot.enabled = False
