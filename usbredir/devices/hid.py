"""Virtual HID devices: a boot keyboard, a boot mouse and an absolute tablet.

Each has one interface (class 3) with one interrupt IN endpoint (0x81).  Events are queued as
input reports; an interrupt IN with nothing queued answers ``Status.NAK`` at once, and
:meth:`HidDevice.wait_for_data` lets a poller sleep until a report is queued.
GET_REPORT, SET_REPORT (keyboard LEDs), GET/SET_IDLE and GET/SET_PROTOCOL are answered.
"""

from __future__ import annotations

import asyncio
import collections
import struct
import time

from usbredir.device import SetupPacket, Status, TransferResult
from usbredir.devices.base import (
    VirtualDevice,
    config_descriptor,
    device_descriptor,
    endpoint_descriptor,
    interface_descriptor,
)

GET_REPORT, GET_IDLE, GET_PROTOCOL, SET_REPORT, SET_IDLE, SET_PROTOCOL = 1, 2, 3, 9, 10, 11
DT_HID, DT_REPORT = 0x21, 0x22
INT_IN = 0x81
MAX_QUEUED = 1024

KEYBOARD_REPORT = bytes.fromhex(
    "05010906a101050719e029e71500250175019508810295017508810195057501050819012905910295017503"
    "9101950675081500256505071900296581 00c0".replace(" ", ""))
MOUSE_REPORT = bytes.fromhex(
    "05010902a1010901a100050919012903150025019503750181029501750581010501093009310938"
    "1581257f75089503 8106c0c0".replace(" ", ""))
TABLET_REPORT = bytes.fromhex(
    "05010902a1010901a100050919012903150025019503750181029501750581010501093009311500"
    "26ff7f350046ff7f751095028102050109381581257f350045007508950181 06c0c0".replace(" ", ""))

# ASCII -> (usage, shift)
_PLAIN = {c: 0x04 + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
_PLAIN.update({c: 0x1E + i for i, c in enumerate("1234567890")})
_PLAIN.update({"\n": 0x28, "\x1b": 0x29, "\b": 0x2A, "\t": 0x2B, " ": 0x2C, "-": 0x2D, "=": 0x2E,
               "[": 0x2F, "]": 0x30, "\\": 0x31, ";": 0x33, "'": 0x34, "`": 0x35, ",": 0x36,
               ".": 0x37, "/": 0x38})
_SHIFTED = {c.upper(): u for c, u in _PLAIN.items() if c.isalpha()}
_SHIFTED.update(dict(zip("!@#$%^&*()", range(0x1E, 0x28), strict=True)))
_SHIFTED.update({"_": 0x2D, "+": 0x2E, "{": 0x2F, "}": 0x30, "|": 0x31, ":": 0x33, '"': 0x34,
                 "~": 0x35, "<": 0x36, ">": 0x37, "?": 0x38})
MOD_LSHIFT = 0x02


def key_for_char(ch: str) -> tuple[int, int]:
    """(HID usage, modifier byte) for an ASCII character (US layout)."""
    if ch in _PLAIN:
        return _PLAIN[ch], 0
    if ch in _SHIFTED:
        return _SHIFTED[ch], MOD_LSHIFT
    raise ValueError(f"no US key for {ch!r}")


class HidDevice(VirtualDevice):
    """One-interface HID device with an interrupt IN report queue."""

    REPORT_DESCRIPTOR = b""
    SUBCLASS, PROTOCOL = 0, 0
    REPORT_SIZE = 8
    PID = 0x0002

    #: queued reports are handed out at least this many seconds apart (human-speed typing).  A
    #: guest's host controller may stop and restart polling between two reports (QEMU's EHCI does,
    #: and usb-redir then drops what it had buffered), so bursts are spread out.
    REPORT_GAP = 0.02

    def __init__(self) -> None:
        super().__init__()
        self._reports: collections.deque[tuple[float, bytes]] = collections.deque(maxlen=MAX_QUEUED)
        self._ready: asyncio.Event | None = None
        self._last_due = 0.0
        self.idle = 0
        self.protocol = 1  # report protocol after reset (HID 1.11 §7.2.6)
        hid = struct.pack("<BBHBBBH", 9, DT_HID, 0x0111, 0, 1, DT_REPORT, len(self.REPORT_DESCRIPTOR))
        body = (interface_descriptor(0, 1, 3, self.SUBCLASS, self.PROTOCOL) + hid
                + endpoint_descriptor(INT_IN, 0x03, self.REPORT_SIZE, 4))
        self._config = config_descriptor(1, 1, body, attributes=0xA0)
        self._device = device_descriptor(0x1209, self.PID, 0x0100)

    @property
    def device_descriptor(self) -> bytes:
        return self._device

    @property
    def config_descriptors(self) -> list[bytes]:
        return [self._config]

    # --- reports ----------------------------------------------------------------------
    def current_report(self) -> bytes:
        return bytes(self.REPORT_SIZE)

    def queue_report(self, report: bytes) -> None:
        due = max(time.monotonic(), self._last_due + self.REPORT_GAP)
        self._last_due = due
        self._reports.append((due, bytes(report)))
        if self._ready is not None:
            self._ready.set()

    @property
    def pending_reports(self) -> int:
        return len(self._reports)

    async def wait_for_data(self, endpoint: int = INT_IN) -> None:
        """Return once an input report is queued and due."""
        while not self._reports:
            if self._ready is None:
                self._ready = asyncio.Event()
            self._ready.clear()
            await self._ready.wait()
        delay = self._reports[0][0] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def interrupt(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        if endpoint != INT_IN or not self.configuration:
            return TransferResult(Status.STALL)
        if INT_IN in self.halted:
            return TransferResult(Status.STALL)
        if not self._reports or self._reports[0][0] > time.monotonic():
            return TransferResult(Status.NAK)
        report = self._reports.popleft()[1]
        if self.protocol == 0:
            report = self.boot_report(report)
        return TransferResult(Status.SUCCESS, report[:length or None])

    def boot_report(self, report: bytes) -> bytes:
        return report

    async def bulk(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        return TransferResult(Status.STALL)

    async def reset(self) -> None:
        await super().reset()
        self.idle = 0
        self.protocol = 1

    # --- HID class requests --------------------------------------------------------------
    def class_descriptor(self, setup: SetupPacket) -> bytes | None:
        dtype = setup.value >> 8
        if setup.index != 0:
            return None
        if dtype == DT_REPORT:
            return self.REPORT_DESCRIPTOR
        if dtype == DT_HID:
            return self._config[18:27]
        return None

    async def class_control(self, setup: SetupPacket, data: bytes) -> TransferResult:
        if (setup.request_type & 0x7F) != 0x21 or setup.index != 0:
            return TransferResult(Status.STALL)
        req = setup.request
        if req == GET_REPORT and setup.is_in:
            report = self.current_report()
            if self.protocol == 0:
                report = self.boot_report(report)
            return TransferResult(Status.SUCCESS, report[:setup.length])
        if req == GET_IDLE and setup.is_in:
            return TransferResult(Status.SUCCESS, bytes((self.idle,))[:setup.length])
        if req == GET_PROTOCOL and setup.is_in:
            return TransferResult(Status.SUCCESS, bytes((self.protocol,))[:setup.length])
        if req == SET_IDLE:
            self.idle = setup.value >> 8
            return TransferResult(Status.SUCCESS)
        if req == SET_PROTOCOL:
            if setup.value > 1:
                return TransferResult(Status.STALL)
            self.protocol = setup.value
            return TransferResult(Status.SUCCESS)
        if req == SET_REPORT:
            return self.set_report(setup, data)
        return TransferResult(Status.STALL)

    def set_report(self, setup: SetupPacket, data: bytes) -> TransferResult:
        return TransferResult(Status.STALL)


class HidKeyboard(HidDevice):
    """Boot-protocol keyboard (8-byte reports: modifiers, reserved, 6 key usages)."""

    PRODUCT = "aiospice keyboard"
    REPORT_DESCRIPTOR = KEYBOARD_REPORT
    SUBCLASS, PROTOCOL = 1, 1
    PID = 0x0002

    def __init__(self) -> None:
        super().__init__()
        self.modifiers = 0
        self.keys: list[int] = []
        self.leds = 0

    def current_report(self) -> bytes:
        keys = self.keys[:6]
        return bytes((self.modifiers, 0, *keys, *([0] * (6 - len(keys)))))

    def press(self, usage: int, modifiers: int | None = None) -> None:
        if modifiers is not None:
            self.modifiers = modifiers
        if usage and usage not in self.keys:
            self.keys.append(usage)
        self.queue_report(self.current_report())

    def release(self, usage: int, modifiers: int | None = None) -> None:
        if modifiers is not None:
            self.modifiers = modifiers
        if usage in self.keys:
            self.keys.remove(usage)
        self.queue_report(self.current_report())

    def type_text(self, text: str) -> None:
        """Queue press+release reports for every character (US layout)."""
        for ch in text:
            usage, mods = key_for_char(ch)
            self.press(usage, mods)
            self.release(usage, 0)

    def set_report(self, setup: SetupPacket, data: bytes) -> TransferResult:
        if (setup.value >> 8) == 2 and data:  # output report: LEDs
            self.leds = data[0]
            return TransferResult(Status.SUCCESS, actual=len(data))
        return TransferResult(Status.STALL)


class HidMouse(HidDevice):
    """Boot-protocol relative mouse with a wheel (report: buttons, dx, dy, wheel)."""

    PRODUCT = "aiospice mouse"
    REPORT_DESCRIPTOR = MOUSE_REPORT
    SUBCLASS, PROTOCOL = 1, 2
    PID = 0x0003

    def __init__(self) -> None:
        super().__init__()
        self.buttons = 0

    def current_report(self) -> bytes:
        return bytes((self.buttons, 0, 0, 0))

    def move(self, dx: int, dy: int, wheel: int = 0, buttons: int | None = None) -> None:
        if buttons is not None:
            self.buttons = buttons & 7
        while True:  # split big motions into -127..127 steps
            sx, sy, sw = (max(-127, min(127, v)) for v in (dx, dy, wheel))
            self.queue_report(struct.pack("<Bbbb", self.buttons, sx, sy, sw))
            dx, dy, wheel = dx - sx, dy - sy, wheel - sw
            if not (dx or dy or wheel):
                break

    def click(self, buttons: int) -> None:
        self.move(0, 0, buttons=buttons)
        self.move(0, 0, buttons=0)

    def boot_report(self, report: bytes) -> bytes:
        return report[:3]


class HidTablet(HidDevice):
    """Absolute pointer (report: buttons, x u16, y u16 in 0..0x7fff, wheel)."""

    PRODUCT = "aiospice tablet"
    REPORT_DESCRIPTOR = TABLET_REPORT
    SUBCLASS, PROTOCOL = 0, 0
    PID = 0x0004

    def __init__(self) -> None:
        super().__init__()
        self.buttons = 0
        self.x = self.y = 0

    def current_report(self) -> bytes:
        return struct.pack("<BHHb", self.buttons, self.x, self.y, 0)

    def move_to(self, x: int, y: int, buttons: int | None = None, wheel: int = 0) -> None:
        if buttons is not None:
            self.buttons = buttons & 7
        self.x, self.y = max(0, min(0x7FFF, x)), max(0, min(0x7FFF, y))
        self.queue_report(struct.pack("<BHHb", self.buttons, self.x, self.y, max(-127, min(127, wheel))))
