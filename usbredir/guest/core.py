"""The guest's USB core: root-port and hub-port monitoring, enumeration, driver binding, hot-plug.

Enumeration follows ehci.md §11.2: debounce, port reset, GET_DESCRIPTOR(DEVICE, 8) at address 0,
SET_ADDRESS, GET_DESCRIPTOR(DEVICE), configuration (9 bytes, then wTotalLength), strings,
SET_CONFIGURATION, then a class driver.  One device is at address 0 at a time.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from usbredir.device import Speed
from usbredir.guest.hcd import DeviceHandle, EhciHcd, UsbError

log = logging.getLogger(__name__)


def setup(rt: int, req: int, value: int = 0, index: int = 0, length: int = 0) -> bytes:
    return struct.pack("<BBHHH", rt, req, value, index, length)


async def cancel_and_wait(*tasks: asyncio.Task | None, retry: float = 0.25) -> None:
    """Cancel ``tasks`` and wait until every one has ended.

    The cancel is repeated while a task lives on: on Python 3.11, ``asyncio.wait_for`` can swallow a
    cancellation that lands as its awaited future completes, and a poll loop that then waits for an
    interrupt transfer with no timeout would keep the guest's shutdown waiting for ever."""
    pending = {t for t in tasks if t is not None and not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry)


@dataclass
class Endpoint:
    address: int
    type: int  # 0 control 1 iso 2 bulk 3 interrupt
    maxp: int
    interval: int


@dataclass
class Interface:
    number: int
    alt: int
    cls: int
    subclass: int
    protocol: int
    endpoints: list[Endpoint] = field(default_factory=list)
    extra: list[bytes] = field(default_factory=list)


def parse_config(blob: bytes) -> list[Interface]:
    """Interfaces and endpoints of a configuration descriptor blob (malformed tails ignored)."""
    out: list[Interface] = []
    pos = 0
    while pos + 2 <= len(blob):
        length, dtype = blob[pos], blob[pos + 1]
        if length < 2 or pos + length > len(blob):
            break
        d = blob[pos:pos + length]
        if dtype == 4 and length >= 9:
            out.append(Interface(d[2], d[3], d[5], d[6], d[7]))
        elif dtype == 5 and length >= 7 and out:
            maxp = int.from_bytes(d[4:6], "little")
            out[-1].endpoints.append(Endpoint(d[2], d[3] & 3, maxp & 0x7FF, d[6]))
        elif out:
            out[-1].extra.append(bytes(d))
        pos += length
    return out


@dataclass(eq=False)
class UsbDeviceInfo:
    """An enumerated device as the guest sees it."""

    port: str
    speed: Speed
    handle: DeviceHandle | None = None
    vid: int = 0
    pid: int = 0
    device_class: int = 0
    manufacturer: str = ""
    product: str = ""
    serial: str = ""
    device_descriptor: bytes = b""
    config_descriptor: bytes = b""
    interfaces: list[Interface] = field(default_factory=list)
    driver: object | None = None
    state: str = "enumerating"
    parent: UsbDeviceInfo | None = None

    @property
    def address(self) -> int:
        return self.handle.address if self.handle else 0

    @property
    def bytes_moved(self) -> int:
        return self.handle.bytes_moved if self.handle else 0

    @property
    def driver_name(self) -> str:
        return getattr(self.driver, "name", "") if self.driver else ""


def interval_frames(speed: Speed, binterval: int) -> int:
    """Polling period in frames: HS is 2^(b-1) µframes, FS/LS is b frames."""
    if speed == Speed.HIGH:
        return max(1, (1 << max(0, min(binterval, 16) - 1)) // 8)
    return max(1, binterval)


class UsbCore:
    """Owns the device tree on one controller and the class-driver factories."""

    def __init__(self, hcd: EhciHcd, *, debounce: float = 0.02, reset_time: float = 0.01) -> None:
        self.hcd = hcd
        self.debounce = debounce
        self.reset_time = reset_time
        self.devices: dict[str, UsbDeviceInfo] = {}
        self._addresses = set(range(1, 128))
        self._enum_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._monitor: asyncio.Task | None = None
        self.drivers: list[Callable[[UsbCore, UsbDeviceInfo], object | None]] = []
        self.changed = asyncio.Event()  # set on any device-tree change
        self.listeners: list[Callable[[str, UsbDeviceInfo], None]] = []

    def start(self) -> None:
        self._monitor = asyncio.get_running_loop().create_task(self._root_monitor())

    async def stop(self) -> None:
        await cancel_and_wait(self._monitor, *self._tasks)
        for info in list(self.devices.values()):
            await self._stop_driver(info)

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _notify(self, what: str, info: UsbDeviceInfo) -> None:
        self.changed.set()
        for cb in self.listeners:
            try:
                cb(what, info)
            except Exception:  # a listener bug must not break the bus
                log.exception("usb listener failed")

    # --- root ports ------------------------------------------------------------------
    async def _root_monitor(self) -> None:
        hcd = self.hcd
        while True:
            await hcd.port_event.wait()
            hcd.port_event.clear()
            for port in range(1, hcd.n_ports + 1):
                sc = hcd.ack_port_change(port)
                name = str(port)
                known = self.devices.get(name)
                connected = bool(sc & 1)
                if known and (not connected or sc & 2):
                    await self.disconnect(name)
                    known = None
                if connected and known is None:
                    self.devices[name] = UsbDeviceInfo(name, Speed.UNKNOWN, state="resetting")
                    self.spawn(self._root_connect(port))

    async def _root_connect(self, port: int) -> None:
        name = str(port)
        await asyncio.sleep(self.debounce)
        info = self.devices.get(name)
        if info is None or not self.hcd.portsc(port) & 1:
            self.devices.pop(name, None)
            return

        async def reset() -> Speed | None:
            if await self.hcd.reset_port(port, self.reset_time):
                return Speed.HIGH
            info.state = "unsupported: full/low-speed device on a root port (no companion); plug it into a hub"
            return None

        async def disable() -> None:
            self.hcd.disable_port(port)

        await self.enumerate(info, reset, disable=disable)

    # --- enumeration -----------------------------------------------------------------
    async def enumerate(self, info: UsbDeviceInfo, reset: Callable[[], Awaitable[Speed | None]],
                        tt_hub: int = 0, tt_port: int = 0,
                        disable: Callable[[], Awaitable[None]] | None = None) -> None:
        """Reset the port, then address, describe and configure the device, then bind a driver.
        The port reset and the address-0 stage hold one lock: one device at address 0 at a time."""
        hcd = self.hcd
        for attempt in range(2):
            try:
                async with self._enum_lock:
                    if self.devices.get(info.port) is not info:
                        return
                    speed = await reset()
                    if speed is None:
                        if not info.state.startswith("unsupported"):
                            info.state = "error: port not enabled after reset"
                        self._notify("error", info)
                        return
                    info.speed = speed
                    info.state = "enumerating"
                    hs = speed == Speed.HIGH
                    info.handle = dev = hcd.open_device(speed, 0 if hs else tt_hub, 0 if hs else tt_port)
                    d8 = await hcd.control(dev, setup(0x80, 6, 0x0100, 0, 8), timeout=1.0)
                    if len(d8) < 8 or d8[1] != 1 or d8[7] not in (8, 16, 32, 64, 512):
                        raise UsbError("xact", f"bad device descriptor start {d8.hex()}")
                    address = min(self._addresses)
                    await hcd.control(dev, setup(0x00, 5, address), timeout=1.0)
                    self._addresses.discard(address)
                    hcd.set_address(dev, address, d8[7])
                    await asyncio.sleep(0.002)
                await self._describe(info)
                break
            except (UsbError, ValueError, IndexError, struct.error) as exc:  # device data is untrusted
                log.warning("enumeration of port %s failed (%s)", info.port, exc)
                if info.handle:
                    await self._release(info)
                if attempt or info.state == "gone":
                    info.state = f"error: {exc}"
                    if disable is not None and info.state != "gone":
                        try:  # a device left at address 0 would answer for the next one
                            async with self._enum_lock:
                                await disable()
                        except UsbError:
                            pass
                    self._notify("error", info)
                    return
        self._notify("add", info)
        await self._bind(info)
        if info.state == "enumerating":
            info.state = "configured"
            self._notify("configured", info)

    async def _describe(self, info: UsbDeviceInfo) -> None:
        hcd, dev = self.hcd, info.handle
        dd = await hcd.control(dev, setup(0x80, 6, 0x0100, 0, 18))
        if len(dd) < 18:
            raise UsbError("xact", "short device descriptor")
        info.device_descriptor = dd
        info.device_class = dd[4]
        info.vid, info.pid = struct.unpack_from("<HH", dd, 8)
        c9 = await hcd.control(dev, setup(0x80, 6, 0x0200, 0, 9))
        total = int.from_bytes(c9[2:4], "little") if len(c9) >= 4 else 9
        cfg = await hcd.control(dev, setup(0x80, 6, 0x0200, 0, min(total, 4096)))
        info.config_descriptor = cfg
        info.interfaces = parse_config(cfg)
        langs = b""
        if any(dd[14:17]):
            try:
                langs = await hcd.control(dev, setup(0x80, 6, 0x0300, 0, 255))
            except UsbError:
                langs = b""
        lang = int.from_bytes(langs[2:4], "little") if len(langs) >= 4 else 0x0409
        for attr, idx in (("manufacturer", dd[14]), ("product", dd[15]), ("serial", dd[16])):
            if idx and langs:
                try:
                    s = await hcd.control(dev, setup(0x80, 6, 0x0300 | idx, lang, 255))
                    setattr(info, attr, bytes(s[2:s[0] if s else 0]).decode("utf-16-le", "replace"))
                except UsbError:
                    pass
        if len(cfg) >= 9:
            await hcd.control(dev, setup(0x00, 9, cfg[5]))

    async def _bind(self, info: UsbDeviceInfo) -> None:
        """First driver whose probe accepts the device; it is published once it has started."""
        for factory in self.drivers:
            drv = factory(self, info)
            if drv is not None:
                try:
                    await drv.start()
                except Exception as exc:  # noqa: BLE001 - a hostile device must not take the core down
                    log.warning("driver %s failed on port %s: %s", getattr(drv, "name", drv), info.port, exc)
                    info.state = f"driver error: {exc}"
                info.driver = drv
                self._notify("bound", info)
                return

    # --- removal ---------------------------------------------------------------------
    async def _stop_driver(self, info: UsbDeviceInfo) -> None:
        drv = info.driver
        if drv is not None:
            try:
                await drv.stop()
            except Exception:  # teardown of a vanished device: log and go on
                log.exception("driver stop failed on port %s", info.port)

    async def _release(self, info: UsbDeviceInfo) -> None:
        dev = info.handle
        info.handle = None
        if dev is None:
            return
        self.hcd.fail_device(dev)
        await self.hcd.close_device(dev)
        if dev.address:
            self._addresses.add(dev.address)

    async def disconnect(self, port: str) -> None:
        """The device on ``port`` (and anything behind it) is gone."""
        for name in sorted([n for n in self.devices if n == port or n.startswith(port + ".")], reverse=True):
            info = self.devices.pop(name)
            prev = info.state
            info.state = "gone"
            if info.handle:
                self.hcd.fail_device(info.handle)
            await self._stop_driver(info)
            await self._release(info)
            if prev != "resetting":
                self._notify("remove", info)
