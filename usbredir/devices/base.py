"""Common ground for software USB devices: descriptor builders and the standard requests.

A :class:`VirtualDevice` answers every chapter-9 request a host sends (GET_DESCRIPTOR,
SET/GET_CONFIGURATION, SET/GET_INTERFACE, GET_STATUS, SET/CLEAR_FEATURE incl. ENDPOINT_HALT,
SET_ADDRESS) and hands class/vendor requests to :meth:`VirtualDevice.class_control`.
Subclasses describe themselves with :func:`device_descriptor`, :func:`config_descriptor`,
:func:`interface_descriptor` and :func:`endpoint_descriptor`.  No usbredir knowledge here:
the EHCI model plugs these devices in directly, the usb-host side exports them.
"""

from __future__ import annotations

import struct

from usbredir.device import SetupPacket, Speed, Status, TransferResult, UsbDevice

# standard requests (USB 2.0 table 9-4)
GET_STATUS, CLEAR_FEATURE, SET_FEATURE, SET_ADDRESS = 0, 1, 3, 5
GET_DESCRIPTOR, SET_DESCRIPTOR, GET_CONFIGURATION, SET_CONFIGURATION = 6, 7, 8, 9
GET_INTERFACE, SET_INTERFACE = 10, 11
# descriptor types
DT_DEVICE, DT_CONFIG, DT_STRING, DT_INTERFACE, DT_ENDPOINT, DT_QUALIFIER = 1, 2, 3, 4, 5, 6
DT_OTHER_SPEED = 7
ENDPOINT_HALT, DEVICE_REMOTE_WAKEUP = 0, 1


def device_descriptor(vid: int, pid: int, bcd_device: int = 0x0100, *, device_class: int = 0,
                      subclass: int = 0, protocol: int = 0, max_packet0: int = 64,
                      strings: tuple[int, int, int] = (1, 2, 3), num_configs: int = 1) -> bytes:
    """18-byte device descriptor (USB 2.0)."""
    return struct.pack("<BBHBBBBHHHBBBB", 18, DT_DEVICE, 0x0200, device_class, subclass, protocol,
                       max_packet0, vid, pid, bcd_device, *strings, num_configs)


def interface_descriptor(number: int, num_endpoints: int, cls: int, subclass: int, protocol: int,
                         alt: int = 0, string: int = 0) -> bytes:
    return struct.pack("<BBBBBBBBB", 9, DT_INTERFACE, number, alt, num_endpoints, cls, subclass,
                       protocol, string)


def endpoint_descriptor(address: int, attributes: int, max_packet: int, interval: int) -> bytes:
    return struct.pack("<BBBBHB", 7, DT_ENDPOINT, address, attributes, max_packet, interval)


def config_descriptor(value: int, num_interfaces: int, body: bytes, *, attributes: int = 0x80,
                      max_power_ma: int = 100, string: int = 0) -> bytes:
    """Configuration descriptor followed by ``body`` (interfaces, class and endpoint descriptors)."""
    total = 9 + len(body)
    return struct.pack("<BBHBBBBB", 9, DT_CONFIG, total, num_interfaces, value, string, attributes,
                       max_power_ma // 2) + body


def string_descriptor(text: str) -> bytes:
    raw = text.encode("utf-16-le")[:252]
    return bytes((2 + len(raw), DT_STRING)) + raw


def iter_descriptors(blob: bytes):
    """Yield each descriptor inside a configuration blob (stops at a malformed length)."""
    pos = 0
    while pos + 2 <= len(blob):
        length = blob[pos]
        if length < 2 or pos + length > len(blob):
            return
        yield blob[pos:pos + length]
        pos += length


class VirtualDevice(UsbDevice):
    """A software device with one configuration and chapter-9 handling built in."""

    MANUFACTURER = "aiospice"
    PRODUCT = "virtual device"
    SERIAL = "0001"

    def __init__(self) -> None:
        self.configuration = 0
        self.address = 0
        self.alt_settings: dict[int, int] = {}
        self.halted: set[int] = set()
        self.remote_wakeup = False

    # --- description -----------------------------------------------------------------
    @property
    def speed(self) -> Speed:
        return Speed.HIGH

    @property
    def product(self) -> str:
        return self.PRODUCT

    def strings(self) -> list[str]:
        """String descriptors 1..n."""
        return [self.MANUFACTURER, self.PRODUCT, self.SERIAL]

    def class_descriptor(self, setup: SetupPacket) -> bytes | None:
        """GET_DESCRIPTOR for a class descriptor type (e.g. HID report); None = stall."""
        return None

    async def class_control(self, setup: SetupPacket, data: bytes) -> TransferResult:
        """Class / vendor requests; default: stall."""
        return TransferResult(Status.STALL)

    def on_configured(self, value: int) -> None:
        """Hook: the host selected configuration ``value`` (0 = deconfigured)."""

    # --- chapter 9 -------------------------------------------------------------------
    async def control(self, setup: SetupPacket, data: bytes = b"") -> TransferResult:
        rtype = (setup.request_type >> 5) & 3
        if rtype != 0:
            return await self.class_control(setup, data)
        recipient = setup.request_type & 0x1F
        req = setup.request
        if req == GET_DESCRIPTOR and setup.is_in:
            blob = self._descriptor(setup)
            if blob is None:
                return TransferResult(Status.STALL)
            return TransferResult(Status.SUCCESS, blob[:setup.length])
        if req == SET_ADDRESS and recipient == 0:
            self.address = setup.value & 0x7F
            return TransferResult(Status.SUCCESS)
        if req == SET_CONFIGURATION and recipient == 0:
            value = setup.value & 0xFF
            if value not in (0, *self._config_values()):
                return TransferResult(Status.STALL)
            self.configuration = value
            self.alt_settings = {}
            self.halted.clear()
            self.on_configured(value)
            return TransferResult(Status.SUCCESS)
        if req == GET_CONFIGURATION and setup.is_in:
            return TransferResult(Status.SUCCESS, bytes((self.configuration,))[:setup.length])
        if req == SET_INTERFACE and recipient == 1:
            if setup.value != 0 or not self._has_interface(setup.index & 0xFF):
                return TransferResult(Status.STALL)
            self.alt_settings[setup.index & 0xFF] = 0
            return TransferResult(Status.SUCCESS)
        if req == GET_INTERFACE and setup.is_in and recipient == 1:
            if not self._has_interface(setup.index & 0xFF):
                return TransferResult(Status.STALL)
            return TransferResult(Status.SUCCESS, bytes((self.alt_settings.get(setup.index & 0xFF, 0),)))
        if req == GET_STATUS and setup.is_in:
            if recipient == 0:
                word = (1 if self._self_powered() else 0) | (2 if self.remote_wakeup else 0)
            elif recipient == 2:
                word = 1 if (setup.index & 0x8F) in self.halted else 0
            else:
                word = 0
            return TransferResult(Status.SUCCESS, struct.pack("<H", word)[:setup.length])
        if req in (CLEAR_FEATURE, SET_FEATURE):
            on = req == SET_FEATURE
            if recipient == 2 and setup.value == ENDPOINT_HALT:
                ep = setup.index & 0x8F
                if on:
                    self.halted.add(ep)
                else:
                    self.halted.discard(ep)
                    self.on_clear_halt(ep)
                return TransferResult(Status.SUCCESS)
            if recipient == 0 and setup.value == DEVICE_REMOTE_WAKEUP:
                self.remote_wakeup = on
                return TransferResult(Status.SUCCESS)
            if recipient == 0 and setup.value == 2 and on:  # TEST_MODE: accept, do nothing
                return TransferResult(Status.SUCCESS)
            return TransferResult(Status.STALL)
        return TransferResult(Status.STALL)

    def on_clear_halt(self, endpoint: int) -> None:
        """Hook: the host cleared ENDPOINT_HALT on ``endpoint``."""

    async def reset(self) -> None:
        self.configuration = 0
        self.address = 0
        self.alt_settings = {}
        self.halted.clear()
        self.remote_wakeup = False
        self.on_configured(0)

    # --- helpers ---------------------------------------------------------------------
    def _descriptor(self, setup: SetupPacket) -> bytes | None:
        dtype, index = setup.value >> 8, setup.value & 0xFF
        if (setup.request_type & 0x1F) != 0:
            return self.class_descriptor(setup)
        if dtype == DT_DEVICE:
            return self.device_descriptor
        if dtype == DT_CONFIG:
            configs = self.config_descriptors
            return configs[index] if index < len(configs) else None
        if dtype == DT_STRING:
            if index == 0:
                return bytes((4, DT_STRING)) + struct.pack("<H", 0x0409)
            strings = self.strings()
            return string_descriptor(strings[index - 1]) if index <= len(strings) else None
        if dtype == DT_QUALIFIER:
            d = self.device_descriptor
            return bytes((10, DT_QUALIFIER)) + d[2:8] + bytes((d[17], 0))
        if dtype == DT_OTHER_SPEED:
            return None
        return self.class_descriptor(setup)

    def _config_values(self) -> list[int]:
        return [c[5] for c in self.config_descriptors]

    def _self_powered(self) -> bool:
        configs = self.config_descriptors
        return bool(configs and configs[0][7] & 0x40)

    def _has_interface(self, number: int) -> bool:
        if not self.configuration:
            return False
        for d in iter_descriptors(self.config_descriptors[0]):
            if d[1] == DT_INTERFACE and d[2] == number:
                return True
        return False

