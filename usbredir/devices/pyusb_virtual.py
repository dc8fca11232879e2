"""A pyusb backend that presents a software :class:`UsbDevice` as if it were hardware.

``usb.core.find(backend=VirtualBackend(MassStorage(img), loop))`` returns an ordinary
``usb.core.Device``; wrapped in :class:`~usbredir.devices.pyusb_device.PyusbDevice` it exercises
exactly the code path a real stick takes (thread pool, pyusb, descriptor re-serialisation,
error mapping).  Backend calls come from worker threads and run the device's coroutines on
``loop``; timeouts and statuses become the ``usb.core`` exceptions libusb would raise.
:meth:`VirtualBackend.unplug` makes every later call fail with ENODEV, like a pulled cable.
"""

from __future__ import annotations

import array
import asyncio
import concurrent.futures
import errno
import threading
from typing import Any

import usb.backend
import usb.core

from usbredir.device import SetupPacket, Speed, Status, UsbDevice
from usbredir.devices.base import iter_descriptors

_SPEED = {Speed.LOW: 1, Speed.FULL: 2, Speed.HIGH: 3, Speed.SUPER: 4}


class _Desc:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _parse_config(raw: bytes) -> tuple[_Desc, list[list[tuple[_Desc, list[_Desc]]]]]:
    """Config descriptor -> (config, interfaces[index][alt] = (interface, endpoints))."""
    cfg = _Desc(bLength=raw[0], bDescriptorType=raw[1], wTotalLength=raw[2] | raw[3] << 8, bNumInterfaces=raw[4],
                bConfigurationValue=raw[5], iConfiguration=raw[6], bmAttributes=raw[7], bMaxPower=raw[8],
                extra_descriptors=[])
    interfaces: dict[int, list[tuple[_Desc, list[_Desc]]]] = {}
    target: Any = cfg
    for d in list(iter_descriptors(raw))[1:]:
        if d[1] == 4:
            intf = _Desc(bLength=d[0], bDescriptorType=4, bInterfaceNumber=d[2], bAlternateSetting=d[3],
                         bNumEndpoints=d[4], bInterfaceClass=d[5], bInterfaceSubClass=d[6], bInterfaceProtocol=d[7],
                         iInterface=d[8], extra_descriptors=[])
            interfaces.setdefault(d[2], []).append((intf, []))
            target = intf
        elif d[1] == 5 and interfaces:
            ep = _Desc(bLength=d[0], bDescriptorType=5, bEndpointAddress=d[2], bmAttributes=d[3],
                       wMaxPacketSize=d[4] | d[5] << 8, bInterval=d[6], bRefresh=d[7] if d[0] >= 9 else 0,
                       bSynchAddress=d[8] if d[0] >= 9 else 0, extra_descriptors=[])
            last = list(interfaces.values())[-1][-1]
            last[1].append(ep)
            target = ep
        else:
            target.extra_descriptors.extend(d)
    return cfg, [interfaces[k] for k in sorted(interfaces)]


class VirtualBackend(usb.backend.IBackend):
    """pyusb backend with one device: ``device``, whose coroutines run on ``loop``."""

    def __init__(self, device: UsbDevice, loop: asyncio.AbstractEventLoop, *, bus: int = 1, address: int = 7) -> None:
        self.device = device
        self.loop = loop
        self.unplugged = threading.Event()
        d = device.device_descriptor
        self._dev = _Desc(bLength=18, bDescriptorType=1, bcdUSB=d[2] | d[3] << 8, bDeviceClass=d[4],
                          bDeviceSubClass=d[5], bDeviceProtocol=d[6], bMaxPacketSize0=d[7],
                          idVendor=d[8] | d[9] << 8, idProduct=d[10] | d[11] << 8, bcdDevice=d[12] | d[13] << 8,
                          iManufacturer=d[14], iProduct=d[15], iSerialNumber=d[16], bNumConfigurations=d[17],
                          bus=bus, address=address, port_number=1, port_numbers=(1,),
                          speed=_SPEED.get(device.speed, 0))
        self._configs = [_parse_config(c) for c in device.config_descriptors]
        self.calls = 0

    def unplug(self) -> None:
        self.unplugged.set()

    # --- running device coroutines from pyusb's thread --------------------------------------
    def _run(self, coro, timeout_ms: int | None = None):
        if self.unplugged.is_set():
            coro.close()
            raise usb.core.USBError("No such device", errno=errno.ENODEV)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError("VirtualBackend must be called from a worker thread, not the event loop")
        self.calls += 1
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout_ms / 1000 if timeout_ms else None)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise usb.core.USBTimeoutError("Operation timed out", errno=errno.ETIMEDOUT) from None
        finally:
            if self.unplugged.is_set():
                fut.cancel()

    @staticmethod
    def _check(status: Status) -> None:
        if status == Status.SUCCESS:
            return
        if status == Status.STALL:
            raise usb.core.USBError("Pipe error", errno=errno.EPIPE)
        if status == Status.TIMEOUT:
            raise usb.core.USBTimeoutError("Operation timed out", errno=errno.ETIMEDOUT)
        if status == Status.BABBLE:
            raise usb.core.USBError("Overflow", errno=errno.EOVERFLOW)
        raise usb.core.USBError(f"I/O error ({status.name})", errno=errno.EIO)

    async def _until_data(self, op, endpoint: int):
        while True:
            r = await op()
            if r.status != Status.NAK:
                return r
            waiter = getattr(self.device, "wait_for_data", None)
            if waiter is not None:
                await waiter(endpoint)
            else:
                await asyncio.sleep(0.001)

    # --- descriptors ---------------------------------------------------------------------
    def enumerate_devices(self):
        if not self.unplugged.is_set():
            yield self._dev

    def get_parent(self, dev):
        return None

    def get_device_descriptor(self, dev):
        return self._dev

    def get_configuration_descriptor(self, dev, config):
        return self._configs[config][0]

    def get_interface_descriptor(self, dev, intf, alt, config):
        return self._configs[config][1][intf][alt][0]

    def get_endpoint_descriptor(self, dev, ep, intf, alt, config):
        return self._configs[config][1][intf][alt][1][ep]

    # --- handle-level operations -------------------------------------------------------------
    def open_device(self, dev):
        if self.unplugged.is_set():
            raise usb.core.USBError("No such device", errno=errno.ENODEV)
        return object()

    def close_device(self, dev_handle):
        pass

    def set_configuration(self, dev_handle, config_value):
        self._check(self._run(self.device.set_configuration(config_value), 5000))

    def get_configuration(self, dev_handle):
        r = self._run(self.device.control(SetupPacket(0x80, 8, 0, 0, 1)), 5000)
        self._check(r.status)
        return r.data[0] if r.data else 0

    def set_interface_altsetting(self, dev_handle, intf, altsetting):
        self._check(self._run(self.device.set_alt_setting(intf, altsetting), 5000))

    def claim_interface(self, dev_handle, intf):
        pass

    def release_interface(self, dev_handle, intf):
        pass

    def is_kernel_driver_active(self, dev_handle, intf):
        return False

    def detach_kernel_driver(self, dev_handle, intf):
        pass

    def attach_kernel_driver(self, dev_handle, intf):
        pass

    def clear_halt(self, dev_handle, ep):
        self._check(self._run(self.device.clear_halt(ep), 5000))

    def reset_device(self, dev_handle):
        self._run(self.device.reset(), 5000)

    def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data, timeout):
        is_in = bool(bmRequestType & 0x80)
        length = len(data)
        setup = SetupPacket(bmRequestType, bRequest, wValue, wIndex, length)
        r = self._run(self.device.control(setup, b"" if is_in else bytes(data)), timeout)
        self._check(r.status)
        if is_in:
            n = min(len(r.data), len(data))
            data[:n] = array.array("B", bytes(r.data[:n]))
            return n
        return r.actual or len(data)

    def _read(self, fn, ep, buff, timeout) -> int:
        r = self._run(self._until_data(lambda: fn(ep, None, len(buff)), ep), timeout)
        self._check(r.status)
        n = min(len(r.data), len(buff))
        buff[:n] = array.array("B", bytes(r.data[:n]))
        return n

    def _write(self, fn, ep, data, timeout) -> int:
        r = self._run(self._until_data(lambda: fn(ep, bytes(data)), ep), timeout)
        self._check(r.status)
        return r.actual or len(data)

    def bulk_read(self, dev_handle, ep, intf, buff, timeout):
        return self._read(self.device.bulk, ep, buff, timeout)

    def bulk_write(self, dev_handle, ep, intf, data, timeout):
        return self._write(self.device.bulk, ep, data, timeout)

    def intr_read(self, dev_handle, ep, intf, buff, timeout):
        return self._read(self.device.interrupt, ep, buff, timeout)

    def intr_write(self, dev_handle, ep, intf, data, timeout):
        return self._write(self.device.interrupt, ep, data, timeout)

    def iso_read(self, dev_handle, ep, intf, buff, timeout):
        return self._read(self.device.iso, ep, buff, timeout)

    def iso_write(self, dev_handle, ep, intf, data, timeout):
        return self._write(self.device.iso, ep, data, timeout)
