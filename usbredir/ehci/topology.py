"""What the controller knows about an attached device: its slot (address, port path, parent hub)
and the endpoint-0 control pipe that turns SETUP/DATA/STATUS qTDs into one device control call."""

from __future__ import annotations

from dataclasses import dataclass, field

from usbredir.device import SetupPacket, Speed, UsbDevice

MAX_CONTROL_DATA = 4096  # QEMU's control data buffer; larger wLength is stalled (CVE-2020-14364)


@dataclass(eq=False)
class ControlPipe:
    """State of the control transfer in progress on endpoint 0 (QEMU do_token_setup/in/out)."""

    setup: SetupPacket | None = None
    data: bytearray = field(default_factory=bytearray)
    pos: int = 0
    local_address: int | None = None  # SET_ADDRESS is completed by the controller itself

    def clear(self) -> None:
        self.setup = None
        self.data = bytearray()
        self.pos = 0
        self.local_address = None


def bus_speed(speed: Speed) -> Speed:
    """The speed a device runs at on a USB 2.0 bus: SuperSpeed devices fall back to high speed,
    an unknown speed is taken as full speed (QEMU usbredir_device_connect)."""
    if speed == Speed.SUPER:
        return Speed.HIGH
    return speed if speed in (Speed.LOW, Speed.FULL, Speed.HIGH) else Speed.FULL


@dataclass(eq=False)
class Slot:
    """One attached device: where it hangs and which address it answers to."""

    device: UsbDevice
    speed: Speed
    path: tuple[int, ...]  # (root port,) or (root port, hub port), 1-based
    parent: Slot | None = None
    address: int = 0
    enabled: bool = False  # hub-port enable (root ports use PORTSC.PED)
    pipe: ControlPipe = field(default_factory=ControlPipe)
    bytes_in: int = 0
    bytes_out: int = 0
    gone: bool = False

    @property
    def port_name(self) -> str:
        return ".".join(str(p) for p in self.path)

    def reset_state(self) -> None:
        self.address = 0
        self.pipe.clear()
