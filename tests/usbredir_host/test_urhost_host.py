"""UsbredirHost driven by our own usb-guest parser over an in-memory pipe (no QEMU)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct

import usb.core

from usbredir import proto as P
from usbredir.device import SetupPacket, Status, TransferResult
from usbredir.devices.base import (
    VirtualDevice,
    config_descriptor,
    device_descriptor,
    endpoint_descriptor,
    interface_descriptor,
)
from usbredir.devices.hid import HidKeyboard
from usbredir.devices.pyusb_device import PyusbDevice
from usbredir.devices.pyusb_virtual import VirtualBackend
from usbredir.devices.storage import MassStorage
from usbredir.host import UsbredirHost
from usbredir.parser import Role, UsbredirParser


class Pipe:
    def __init__(self):
        self.out = []
        self.closed = False

    def write(self, chunks):
        self.out.extend(bytes(c) for c in chunks)

    async def drain(self):
        pass

    def close(self):
        self.closed = True


class Session:
    """A usb-guest (our parser) talking to a UsbredirHost."""

    def __init__(self, device):
        self.pipe = Pipe()
        self.host = UsbredirHost(device, self.pipe)
        self.guest = UsbredirParser(Role.GUEST)
        self.events: list = []
        self.host.feed(self.guest.bytes_to_send())

    def send(self, *pkts):
        for p in pkts:
            self.guest.send(p)
        self.host.feed(self.guest.bytes_to_send())

    async def pump(self, until=None, timeout=5.0):
        async with asyncio.timeout(timeout):
            while True:
                await asyncio.sleep(0.005)
                data, self.pipe.out = b"".join(self.pipe.out), []
                if data:
                    self.guest.receive_data(data)
                    self.events += self.guest.events_received()
                    back = self.guest.bytes_to_send()
                    if back:
                        self.host.feed(back)
                if until is None or until(self.events):
                    return self.events

    def of(self, cls):
        return [e for e in self.events if isinstance(e, cls)]


class IsoDevice(VirtualDevice):
    """Test device: iso IN 0x83 (alt 1 only) returning a counter, plus an interface without alts."""

    def __init__(self):
        super().__init__()
        self.n = 0
        body = (interface_descriptor(0, 0, 0xFF, 0, 0)
                + interface_descriptor(0, 1, 0xFF, 0, 0, alt=1) + endpoint_descriptor(0x83, 0x01, 0x1000 | 192, 1))
        self._cfg = config_descriptor(1, 1, body)

    @property
    def device_descriptor(self):
        return device_descriptor(0x1209, 0x000F)

    @property
    def config_descriptors(self):
        return [self._cfg]

    async def set_alt_setting(self, interface, alt):
        if interface != 0 or alt > 1:
            return Status.STALL
        self.alt_settings[0] = alt
        return Status.SUCCESS

    async def bulk(self, endpoint, data=None, length=0):
        return TransferResult(Status.STALL)

    async def iso(self, endpoint, data=None, length=0):
        if endpoint != 0x83 or self.alt_settings.get(0) != 1:
            return TransferResult(Status.STALL)
        self.n += 1
        return TransferResult(Status.SUCCESS, struct.pack("<I", self.n) * 8)


async def test_announce_control_cancel_and_detach(tmp_path):
    img = tmp_path / "s.img"
    img.write_bytes(os.urandom(1 << 20))
    s = Session(MassStorage(str(img)))
    await s.pump(lambda ev: any(isinstance(e, P.DeviceConnect) for e in ev))
    info, ep = s.of(P.InterfaceInfo)[0], s.of(P.EpInfo)[0]
    assert info.interface_class == (8,) and ep.type[P.ep2i(0x81)] == 2 and ep.type[P.ep2i(0x02)] == 2
    assert ep.max_packet_size[P.ep2i(0x81)] == 512 and ep.type[0] == ep.type[16] == 0
    assert ep.type[P.ep2i(0x83)] == 255
    order = [type(e) for e in s.events if not isinstance(e, P.Hello)]
    assert order == [P.InterfaceInfo, P.EpInfo, P.DeviceConnect]
    s.send(P.ControlPacket(11, 0x80, 6, 0x80, 0, 0x0100, 0, 18), P.SetConfiguration(12, 1))
    await s.pump(lambda ev: any(isinstance(e, P.ConfigurationStatus) for e in ev))
    ctl = s.of(P.ControlPacket)[0]
    assert ctl.id == 11 and ctl.status == 0 and bytes(ctl.data) == s.host.device.device_descriptor
    # bulk IN while no command is pending waits like a NAKing device; cancel answers at once
    s.send(P.BulkPacket(21, 0x81, 0, 13))
    await s.pump()
    assert not s.of(P.BulkPacket)
    s.send(P.CancelDataPacket(21))
    await s.pump(lambda ev: any(isinstance(e, P.BulkPacket) for e in ev))
    (b,) = s.of(P.BulkPacket)
    assert (b.id, b.status, b.length) == (21, Status.CANCELLED, 0)
    # wrong endpoint type / unknown interface -> inval
    s.send(P.BulkPacket(22, 0x83, 0, 64), P.SetAltSetting(23, 5, 1))
    await s.pump(lambda ev: any(isinstance(e, P.AltSettingStatus) for e in ev))
    assert [(b.id, b.status) for b in s.of(P.BulkPacket)][-1] == (22, Status.INVAL)
    assert s.of(P.AltSettingStatus)[0][1:] == (Status.INVAL, 5, 0xFF)
    # reset reaches the device (unconfigured again)
    s.send(P.Reset())
    await s.pump()
    assert s.host.stats.resets == 1 and s.host.device.configuration == 0
    # clean detach: device_disconnect, the guest's ack, image closed
    await asyncio.gather(s.host.detach(), s.pump(lambda ev: s.host.closed.done()))
    assert s.of(P.DeviceDisconnect) and s.host.device.closed and s.pipe.closed


async def test_interrupt_stream_keyboard():
    kbd = HidKeyboard()
    kbd.REPORT_GAP = 0
    s = Session(kbd)
    await s.pump(lambda ev: any(isinstance(e, P.DeviceConnect) for e in ev))
    s.send(P.SetConfiguration(1, 1), P.StartInterruptReceiving(0, 0x81))
    await s.pump(lambda ev: any(isinstance(e, P.InterruptReceivingStatus) for e in ev))
    kbd.type_text("z")
    await s.pump(lambda ev: len([e for e in ev if isinstance(e, P.InterruptPacket)]) == 2)
    pk = s.of(P.InterruptPacket)
    assert [p.id for p in pk] == [0, 1] and bytes(pk[0].data)[2] == 0x1D and bytes(pk[1].data) == bytes(8)
    s.send(P.StopInterruptReceiving(0, 0x81))
    await s.pump(lambda ev: len([e for e in ev if isinstance(e, P.InterruptReceivingStatus)]) == 2)
    assert 0x81 not in s.host._streams
    # a restart right after the stop re-sends the newest report — the keyboard's current state, which
    # QEMU may have dropped with its buffer — but never the older press (that would type "z" twice)
    s.send(P.StartInterruptReceiving(0, 0x81))
    await s.pump(lambda ev: len([e for e in ev if isinstance(e, P.InterruptPacket)]) == 3)
    with contextlib.suppress(TimeoutError):  # and nothing more arrives
        await s.pump(lambda ev: len([e for e in ev if isinstance(e, P.InterruptPacket)]) > 3, timeout=0.3)
    again = s.of(P.InterruptPacket)[2:]
    assert [p.id for p in again] == [0] and bytes(again[0].data) == bytes(pk[1].data) == bytes(8)


async def test_iso_stream_after_set_alt_through_pyusb():
    """Iso IN via pyusb's iso_read (virtual backend) and the host's iso stream."""
    iso = IsoDevice()
    backend = VirtualBackend(iso, asyncio.get_running_loop())
    dev = PyusbDevice(await asyncio.to_thread(usb.core.find, backend=backend))
    s = Session(dev)
    await s.pump(lambda ev: any(isinstance(e, P.DeviceConnect) for e in ev))
    assert s.of(P.EpInfo)[0].type[P.ep2i(0x83)] == 255  # alt 0: no endpoint
    s.send(P.SetConfiguration(1, 1), P.SetAltSetting(2, 0, 1))
    await s.pump(lambda ev: any(isinstance(e, P.AltSettingStatus) for e in ev))
    assert s.of(P.AltSettingStatus)[0][1:] == (Status.SUCCESS, 0, 1)
    ep = s.of(P.EpInfo)[-1]
    assert ep.type[P.ep2i(0x83)] == 1 and ep.max_packet_size[P.ep2i(0x83)] == 3 * 192  # HS mult 3
    s.send(P.StartIsoStream(0, 0x83, 4, 2))
    await s.pump(lambda ev: len([e for e in ev if isinstance(e, P.IsoPacket)]) >= 5)
    pk = s.of(P.IsoPacket)[:5]
    assert [p.id for p in pk] == [0, 1, 2, 3, 4]
    assert [struct.unpack_from("<I", p.data)[0] for p in pk] == [1, 2, 3, 4, 5]
    s.send(P.StopIsoStream(0, 0x83))
    await s.pump(lambda ev: len([e for e in ev if isinstance(e, P.IsoStreamStatus)]) == 2)
    await dev.close()


async def test_control_on_pyusb_setup_forwarding():
    kbd = HidKeyboard()
    backend = VirtualBackend(kbd, asyncio.get_running_loop())
    dev = PyusbDevice(await asyncio.to_thread(usb.core.find, backend=backend))
    r = await dev.control(SetupPacket(0x80, 6, 0x0100, 0, 18))
    assert bytes(r.data) == kbd.device_descriptor
    assert (await dev.control(SetupPacket(0x00, 9, 1, 0, 0))).status == Status.SUCCESS
    assert (await dev.control(SetupPacket(0x21, 9, 0x0200, 0, 1), b"\x04")).status == Status.SUCCESS
    assert kbd.leds == 4
    await dev.close()
