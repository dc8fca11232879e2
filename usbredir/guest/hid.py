"""Guest HID boot-protocol driver: keyboards and mice over interrupt IN polling."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

from usbredir.guest.core import UsbDeviceInfo, cancel_and_wait, interval_frames, setup
from usbredir.guest.hcd import UsbError

if TYPE_CHECKING:
    from usbredir.guest.core import UsbCore

SET_IDLE, SET_PROTOCOL = 0x0A, 0x0B
MAX_REPORTS = 256

_USAGE_CHARS = {0x04 + i: c for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
_USAGE_CHARS.update({0x1E + i: c for i, c in enumerate("1234567890")})
_USAGE_CHARS.update({0x28: "\n", 0x2A: "\b", 0x2B: "\t", 0x2C: " ", 0x2D: "-", 0x2E: "=", 0x2F: "[",
                     0x30: "]", 0x31: "\\", 0x33: ";", 0x34: "'", 0x35: "`", 0x36: ",", 0x37: ".", 0x38: "/"})
_SHIFT_CHARS = dict(zip("1234567890-=[]\\;'`,./", "!@#$%^&*()_+{}|:\"~<>?", strict=True))


def usage_to_char(usage: int, modifiers: int) -> str | None:
    """US-layout character for a key usage (None for non-printing keys)."""
    ch = _USAGE_CHARS.get(usage)
    if ch is None:
        return None
    if modifiers & 0x22:
        return ch.upper() if ch.isalpha() else _SHIFT_CHARS.get(ch, ch)
    return ch


class HidBootDriver:
    """Boot keyboard (protocol 1) or mouse (protocol 2) on interface class 3, subclass 1."""

    name = "hid"

    @classmethod
    def probe(cls, core: UsbCore, info: UsbDeviceInfo) -> HidBootDriver | None:
        for intf in info.interfaces:
            if intf.cls == 3 and any(e.type == 3 and e.address & 0x80 for e in intf.endpoints):
                return cls(core, info, intf)
        return None

    def __init__(self, core: UsbCore, info: UsbDeviceInfo, intf) -> None:
        self.core = core
        self.info = info
        self.intf = intf
        self.kind = {1: "keyboard", 2: "mouse"}.get(intf.protocol if intf.subclass == 1 else 0, "hid")
        self.name = f"hid-{self.kind}"
        self.reports: collections.deque[bytes] = collections.deque(maxlen=MAX_REPORTS)
        self.text: list[str] = []  # characters typed (keyboard)
        self.on_report: Callable[[HidBootDriver, bytes], None] | None = None
        self.report_event = asyncio.Event()
        self._prev_keys: set[int] = set()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        hcd, dev, n = self.core.hcd, self.info.handle, self.intf.number
        if self.intf.subclass == 1:
            await hcd.control(dev, setup(0x21, SET_PROTOCOL, 0, n))  # boot protocol
        try:
            await hcd.control(dev, setup(0x21, SET_IDLE, 0, n))
        except UsbError as exc:  # SET_IDLE is optional for mice
            if exc.kind != "stall":
                raise
        ep = next(e for e in self.intf.endpoints if e.type == 3 and e.address & 0x80)
        pipe = hcd.open_interrupt(dev, ep.address, ep.maxp, interval_frames(self.info.speed, ep.interval))
        self._task = self.core.spawn(self._poll(pipe, ep.maxp))

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _poll(self, pipe, maxp: int) -> None:
        hcd = self.core.hcd
        while True:
            try:
                report = await hcd.bulk(pipe, length=maxp, timeout=None)
            except UsbError as exc:
                if exc.kind in ("gone", "hse"):
                    return
                if exc.kind == "stall":
                    await hcd.control(self.info.handle, setup(0x02, 1, 0, pipe.endpoint))
                    hcd.reset_toggle(pipe)
                await asyncio.sleep(0.01)
                continue
            self.reports.append(report)
            if self.kind == "keyboard" and len(report) >= 3:
                self._keys(report)
            self.report_event.set()
            if self.on_report:
                self.on_report(self, report)

    def _keys(self, report: bytes) -> None:
        keys = {k for k in report[2:8] if k > 3}
        for usage in report[2:8]:
            if usage in keys and usage not in self._prev_keys:
                ch = usage_to_char(usage, report[0])
                if ch is not None:
                    self.text.append(ch)
        self._prev_keys = keys
