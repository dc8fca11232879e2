"""The one USB device interface every part of aiospice speaks.

Modelled on QEMU's ``USBDevice``/``USBPacket`` split: a host controller (our EHCI model), the
usbredir usb-host side (which exports a device) and the usbredir usb-guest side (which makes a
remote device look local) all see devices only through :class:`UsbDevice`.  Implementations:
virtual devices (``usbredir.devices``: HID keyboard/mouse, mass storage), a real device via
pyusb (``usbredir.devices.pyusb_device``), and a redirected device (usbredir guest side).

Transfers are coroutines: a device completes them whenever it likes (a redirected device many
milliseconds later); a controller that must not wait keeps the task and finishes the transfer
when it completes.  Cancelling the task cancels the transfer.
"""

from __future__ import annotations

import abc
import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass


class Speed(enum.IntEnum):
    """usbredir speed codes."""

    LOW = 0
    FULL = 1
    HIGH = 2
    SUPER = 3
    UNKNOWN = 255


class EndpointType(enum.IntEnum):
    """usbredir / USB endpoint transfer types (bmAttributes & 3), plus INVALID."""

    CONTROL = 0
    ISO = 1
    BULK = 2
    INTERRUPT = 3
    INVALID = 255


class Status(enum.IntEnum):
    """usbredir status codes, plus NAK (local only: "no data yet, ask again")."""

    SUCCESS = 0
    CANCELLED = 1
    INVAL = 2
    IOERROR = 3
    STALL = 4
    TIMEOUT = 5
    BABBLE = 6
    NAK = 0x100


@dataclass(frozen=True, slots=True)
class SetupPacket:
    """The 8-byte SETUP stage of a control transfer."""

    request_type: int
    request: int
    value: int
    index: int
    length: int

    _FMT = struct.Struct("<BBHHH")

    @classmethod
    def parse(cls, raw: bytes) -> SetupPacket:
        return cls(*cls._FMT.unpack(bytes(raw[:8])))

    def pack(self) -> bytes:
        return self._FMT.pack(self.request_type, self.request, self.value, self.index, self.length)

    @property
    def is_in(self) -> bool:
        return bool(self.request_type & 0x80)


@dataclass(slots=True)
class TransferResult:
    """Outcome of one transfer: for IN, ``data`` holds what the device returned; for OUT,
    ``actual`` is how many bytes it accepted."""

    status: Status
    data: bytes | bytearray | memoryview = b""
    actual: int = 0


class UsbDevice(abc.ABC):
    """A USB device as a host controller sees it."""

    #: called with no arguments when the device goes away (unplug, remote disconnect)
    on_disconnect: Callable[[], None] | None = None

    @property
    @abc.abstractmethod
    def speed(self) -> Speed: ...

    @property
    @abc.abstractmethod
    def device_descriptor(self) -> bytes:
        """The 18-byte device descriptor."""

    @property
    @abc.abstractmethod
    def config_descriptors(self) -> list[bytes]:
        """Each configuration's full descriptor (config + interfaces + endpoints + class)."""

    @property
    def product(self) -> str:
        """Human-readable product name (for panels and logs)."""
        return ""

    @abc.abstractmethod
    async def control(self, setup: SetupPacket, data: bytes = b"") -> TransferResult:
        """A control transfer on endpoint 0 (``data`` is the OUT data stage)."""

    @abc.abstractmethod
    async def bulk(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        """Bulk OUT (``endpoint`` < 0x80, ``data``) or IN (``endpoint`` | 0x80, up to ``length`` bytes)."""

    async def interrupt(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        """Interrupt transfer; an IN with nothing to report returns ``Status.NAK`` at once."""
        return TransferResult(Status.STALL)

    async def iso(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        """One isochronous packet."""
        return TransferResult(Status.STALL)

    async def reset(self) -> None:
        """Port reset: back to the default state (address 0, unconfigured)."""
        return None

    async def set_configuration(self, value: int) -> Status:
        return (await self.control(SetupPacket(0x00, 0x09, value, 0, 0))).status

    async def set_alt_setting(self, interface: int, alt: int) -> Status:
        return (await self.control(SetupPacket(0x01, 0x0B, alt, interface, 0))).status

    async def clear_halt(self, endpoint: int) -> Status:
        return (await self.control(SetupPacket(0x02, 0x01, 0, endpoint, 0))).status

    async def close(self) -> None:
        """Release the device (flush images, release interfaces)."""
        return None
