"""A real USB device through pyusb (libusb from ``libusb-package``), as a :class:`UsbDevice`.

Every libusb call runs in a small per-device thread pool, so the event loop never blocks:
control (5 s timeout, as usbredirhost), bulk (no overall timeout, waited for in 1 s slices), interrupt (an IN poll that times out
after the endpoint interval is a NAK) and isochronous transfers (pyusb's ``iso_read``/``iso_write``,
which the libusb1 backend implements; other backends answer STALL).  Descriptors come from
pyusb's parsed descriptors (libusb caches them; no device I/O) and are re-serialised.
SET_CONFIGURATION / SET_INTERFACE / CLEAR_FEATURE(HALT) go through the libusb calls made for
them, so the host OS stays in sync.  Kernel drivers are detached and interfaces claimed when
the guest configures the device, and re-attached on :meth:`PyusbDevice.close`.

Errors map to usbredir statuses as usbredirhost does: EPIPE -> stall, timeout -> timeout,
EOVERFLOW -> babble, ENODEV -> ioerror + ``on_disconnect``, anything else -> ioerror.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import struct
from collections.abc import Callable
from typing import Any

import usb.core
import usb.util

from usbredir.device import SetupPacket, Speed, Status, TransferResult, UsbDevice

log = logging.getLogger(__name__)

CTRL_TIMEOUT_MS = 5000
BULK_SLICE_MS = 1000
_SPEEDS = {usb.util.SPEED_LOW: Speed.LOW, usb.util.SPEED_FULL: Speed.FULL, usb.util.SPEED_HIGH: Speed.HIGH,
           usb.util.SPEED_SUPER: Speed.SUPER}


def default_backend():
    """libusb-1.0 from the ``libusb-package`` wheel (falls back to pyusb's own lookup)."""
    try:
        import libusb_package

        return libusb_package.get_libusb1_backend()
    except Exception:  # noqa: BLE001 - any failure: let pyusb find a system libusb
        return None


def list_devices(backend=None) -> list[dict[str, Any]]:
    """Local USB devices: bus, address, vid, pid, class, product."""
    rows = []
    for dev in usb.core.find(find_all=True, backend=backend or default_backend()) or []:
        cls = dev.bDeviceClass
        if cls == 0:
            with contextlib.suppress(Exception):
                cls = next(iter(dev))[(0, 0)].bInterfaceClass  # first configuration's first interface
        product = ""
        with contextlib.suppress(Exception):
            product = usb.util.get_string(dev, dev.iProduct) or ""
        rows.append({"bus": dev.bus or 0, "address": dev.address or 0, "vid": dev.idVendor, "pid": dev.idProduct,
                     "class": cls, "product": product})
    return rows


def open_device(spec: str, backend=None) -> PyusbDevice:
    """``VID:PID`` (hex) or ``BUS-ADDR`` (decimal) -> :class:`PyusbDevice`."""
    backend = backend or default_backend()
    if ":" in spec:
        vid, pid = (int(x, 16) for x in spec.split(":", 1))
        dev = usb.core.find(idVendor=vid, idProduct=pid, backend=backend)
    elif "-" in spec:
        bus, addr = (int(x, 10) for x in spec.split("-", 1))
        dev = usb.core.find(bus=bus, address=addr, backend=backend)
    else:
        raise ValueError(f"--device {spec}: use VID:PID or BUS-ADDR")
    if dev is None:
        raise ValueError(f"--device {spec}: no such USB device")
    device = PyusbDevice(dev)
    with contextlib.suppress(Exception):  # needs access rights; only for display
        device._product = usb.util.get_string(dev, dev.iProduct) or ""
    return device


def serialize_config(cfg) -> bytes:
    """Raw configuration descriptor rebuilt from pyusb's parsed one (with class descriptors)."""
    body = bytearray(bytes(getattr(cfg, "extra_descriptors", b"") or b""))
    for intf in cfg:
        body += struct.pack("<BBBBBBBBB", 9, 4, intf.bInterfaceNumber, intf.bAlternateSetting, intf.bNumEndpoints,
                            intf.bInterfaceClass, intf.bInterfaceSubClass, intf.bInterfaceProtocol, intf.iInterface)
        body += bytes(getattr(intf, "extra_descriptors", b"") or b"")
        for ep in intf:
            if ep.bLength >= 9:
                body += struct.pack("<BBBBHBBB", 9, 5, ep.bEndpointAddress, ep.bmAttributes, ep.wMaxPacketSize,
                                    ep.bInterval, ep.bRefresh, ep.bSynchAddress)
            else:
                body += struct.pack("<BBBBHB", 7, 5, ep.bEndpointAddress, ep.bmAttributes, ep.wMaxPacketSize,
                                    ep.bInterval)
            body += bytes(getattr(ep, "extra_descriptors", b"") or b"")
    return struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), cfg.bNumInterfaces, cfg.bConfigurationValue,
                       cfg.iConfiguration, cfg.bmAttributes, cfg.bMaxPower) + bytes(body)


class PyusbDevice(UsbDevice):
    """Wraps one ``usb.core.Device``."""

    def __init__(self, dev: usb.core.Device, *, workers: int = 6) -> None:
        self.dev = dev
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pyusb")
        d = dev
        self._device = struct.pack("<BBHBBBBHHHBBBB", 18, 1, d.bcdUSB, d.bDeviceClass, d.bDeviceSubClass,
                                   d.bDeviceProtocol, d.bMaxPacketSize0, d.idVendor, d.idProduct, d.bcdDevice,
                                   d.iManufacturer, d.iProduct, d.iSerialNumber, d.bNumConfigurations)
        self._configs = [serialize_config(c) for c in dev]
        self._claimed: list[int] = []
        self._detached: list[int] = []
        self._ep_types: dict[int, int] = {}
        self._ep_interval: dict[int, int] = {}
        for cfg in self._configs:
            pos = 0
            while pos + 2 <= len(cfg) and cfg[pos] >= 2:
                if cfg[pos + 1] == 5 and cfg[pos] >= 7:
                    self._ep_types[cfg[pos + 2]] = cfg[pos + 3] & 3
                    self._ep_interval[cfg[pos + 2]] = cfg[pos + 6]
                pos += cfg[pos]
        self.closed = False
        self._product = ""

    # --- description -----------------------------------------------------------------
    @property
    def speed(self) -> Speed:
        return _SPEEDS.get(getattr(self.dev, "speed", None), Speed.UNKNOWN)

    @property
    def device_descriptor(self) -> bytes:
        return self._device

    @property
    def config_descriptors(self) -> list[bytes]:
        return self._configs

    @property
    def product(self) -> str:
        return self._product or f"{self.dev.idVendor:04x}:{self.dev.idProduct:04x}"

    # --- plumbing ----------------------------------------------------------------------
    async def _io(self, fn: Callable[[], Any]) -> Any:
        if self.closed:
            raise usb.core.USBError("device closed", errno=errno.ENODEV)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def _status(self, exc: usb.core.USBError) -> Status:
        if isinstance(exc, usb.core.USBTimeoutError) or exc.errno == errno.ETIMEDOUT:
            return Status.TIMEOUT
        if exc.errno == errno.EPIPE:
            return Status.STALL
        if exc.errno == errno.EOVERFLOW:
            return Status.BABBLE
        if exc.errno in (errno.ENODEV, errno.ESHUTDOWN) and not self.closed:
            if self.on_disconnect is not None:
                asyncio.get_running_loop().call_soon(self.on_disconnect)
        return Status.IOERROR

    async def _transfer(self, fn: Callable[[], Any], is_in: bool) -> TransferResult:
        try:
            r = await self._io(fn)
        except usb.core.USBError as exc:
            return TransferResult(self._status(exc))
        except (NotImplementedError, KeyError, ValueError) as exc:
            log.debug("pyusb transfer refused: %s", exc)
            return TransferResult(Status.STALL)
        if is_in:
            return TransferResult(Status.SUCCESS, bytes(r))
        return TransferResult(Status.SUCCESS, actual=int(r))

    # --- UsbDevice -------------------------------------------------------------------------
    async def control(self, setup: SetupPacket, data: bytes = b"") -> TransferResult:
        rt, req = setup.request_type, setup.request
        if rt == 0x00 and req == 0x09:
            return TransferResult(await self.set_configuration(setup.value & 0xFF))
        if rt == 0x01 and req == 0x0B:
            return TransferResult(await self.set_alt_setting(setup.index & 0xFF, setup.value & 0xFF))
        if rt == 0x02 and req == 0x01 and setup.value == 0:
            return TransferResult(await self.clear_halt(setup.index & 0xFF))
        arg = setup.length if setup.is_in else bytes(data)
        return await self._transfer(
            lambda: self.dev.ctrl_transfer(rt, req, setup.value, setup.index, arg, timeout=CTRL_TIMEOUT_MS),
            setup.is_in)

    async def bulk(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        # usbredirhost uses no bulk timeout; we wait in 1 s slices so a closed device frees its thread
        payload = bytes(data or b"")
        while True:
            if endpoint & 0x80:
                r = await self._transfer(lambda: self.dev.read(endpoint, length, timeout=BULK_SLICE_MS), True)
            else:
                r = await self._transfer(lambda: self.dev.write(endpoint, payload, timeout=BULK_SLICE_MS * 5), False)
            if r.status != Status.TIMEOUT or self.closed:
                return r

    async def interrupt(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        if endpoint & 0x80:
            # one poll that waits at most ~one interval: a timeout is "nothing to report"
            wait_ms = max(10, min(1000, 1 << max(0, self._ep_interval.get(endpoint, 4) - 1)))
            r = await self._transfer(lambda: self.dev.read(endpoint, length, timeout=wait_ms), True)
            return TransferResult(Status.NAK) if r.status == Status.TIMEOUT else r
        payload = bytes(data or b"")
        return await self._transfer(lambda: self.dev.write(endpoint, payload, timeout=0), False)

    async def iso(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        if endpoint & 0x80:
            return await self._transfer(lambda: self.dev.read(endpoint, length, timeout=1000), True)
        payload = bytes(data or b"")
        return await self._transfer(lambda: self.dev.write(endpoint, payload, timeout=1000), False)

    async def wait_for_data(self, endpoint: int) -> None:
        """Interrupt IN polls already wait inside libusb; nothing more to wait for."""

    async def reset(self) -> None:
        with contextlib.suppress(usb.core.USBError, NotImplementedError):
            await self._io(self.dev.reset)

    def _claim_all(self, value: int) -> None:
        cfg = self.dev.get_active_configuration()
        for intf in cfg:
            n = intf.bInterfaceNumber
            if n in self._claimed:
                continue
            with contextlib.suppress(NotImplementedError, usb.core.USBError):
                if self.dev.is_kernel_driver_active(n):
                    self.dev.detach_kernel_driver(n)
                    self._detached.append(n)
            usb.util.claim_interface(self.dev, n)
            self._claimed.append(n)

    def _release_all(self) -> None:
        for n in self._claimed:
            with contextlib.suppress(usb.core.USBError, NotImplementedError):
                usb.util.release_interface(self.dev, n)
        self._claimed = []

    async def set_configuration(self, value: int) -> Status:
        def work() -> None:
            current = None
            with contextlib.suppress(usb.core.USBError, NotImplementedError):
                current = self.dev.get_active_configuration().bConfigurationValue
            if current != value:
                self._release_all()
                self.dev.set_configuration(value)
            if value:
                self._claim_all(value)
        try:
            await self._io(work)
        except usb.core.USBError as exc:
            return self._status(exc)
        return Status.SUCCESS

    async def set_alt_setting(self, interface: int, alt: int) -> Status:
        try:
            await self._io(lambda: self.dev.set_interface_altsetting(interface, alt))
        except usb.core.USBError as exc:
            return self._status(exc)
        except ValueError:
            return Status.STALL
        return Status.SUCCESS

    async def clear_halt(self, endpoint: int) -> Status:
        try:
            await self._io(lambda: self.dev.clear_halt(endpoint))
        except usb.core.USBError as exc:
            return self._status(exc)
        return Status.SUCCESS

    async def close(self) -> None:
        if self.closed:
            return

        def work() -> None:
            self._release_all()
            for n in self._detached:
                with contextlib.suppress(usb.core.USBError, NotImplementedError):
                    self.dev.attach_kernel_driver(n)
            usb.util.dispose_resources(self.dev)

        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._pool, work)
        self.closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
