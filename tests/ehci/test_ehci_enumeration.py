"""Enumeration through the EHCI model: high speed on a root port, full/low speed behind the TT hub,
HID reports by interrupt polling, hot-plug and unplug."""

from __future__ import annotations

import asyncio

import pytest
from ehci_helpers import FullSpeedMouse, LoopbackDevice, LowSpeedKeyboard, Rig, get_descriptor

from usbredir.device import Speed
from usbredir.devices.hid import HidKeyboard
from usbredir.ehci import regs as R
from usbredir.guest.core import UsbCore
from usbredir.guest.generic import GenericDriver, describe
from usbredir.guest.hcd import UsbError
from usbredir.guest.hid import HidBootDriver
from usbredir.guest.hub import HubDriver
from usbredir.guest.subsystem import UsbSubsystem


async def test_high_speed_device_on_root_port_by_hand():
    rig = await Rig().start()
    try:
        dev = LoopbackDevice()
        rig.ctl.attach(dev, 2)
        await asyncio.wait_for(rig.hcd.port_event.wait(), 2)
        assert rig.hcd.ack_port_change(2) & (R.PORT_CCS | R.PORT_CSC) == R.PORT_CCS | R.PORT_CSC
        assert await rig.hcd.reset_port(2)
        h = rig.hcd.open_device(Speed.HIGH)
        d8 = await rig.hcd.control(h, get_descriptor(1, length=8))
        assert d8 == dev.device_descriptor[:8]
        await rig.hcd.control(h, bytes.fromhex("0005070000000000"))
        assert rig.ctl.find_slot(7).device is dev  # SET_ADDRESS took effect after the status stage
        rig.hcd.set_address(h, 7, d8[7])
        assert await rig.hcd.control(h, get_descriptor(1)) == dev.device_descriptor
        cfg = dev.config_descriptors[0]
        assert await rig.hcd.control(h, get_descriptor(2, length=len(cfg))) == cfg
        assert (await rig.hcd.control(h, get_descriptor(3, 2, 255, 0x409)))[2:].decode("utf-16-le") == "loopback"
        with_stall = rig.hcd.control(h, get_descriptor(3, 9, 255, 0x409))  # no string 9: STALL
        try:
            await with_stall
            raise AssertionError("expected a stall")
        except UsbError as exc:
            assert exc.kind == "stall"
        await rig.hcd.control(h, bytes.fromhex("0009010000000000"))
        assert dev.configuration == 1
        # bulk both ways, several qTDs (page-crossing 70 000 bytes), short IN packet ends the transfer
        out = rig.hcd.open_bulk(h, 0x02, 512)
        inp = rig.hcd.open_bulk(h, 0x81, 512)
        payload = bytes(range(256)) * 273 + b"xyz"
        assert await rig.hcd.bulk(out, payload) == len(payload)
        back = await rig.hcd.bulk(inp, length=100_000)
        assert back == payload
        assert rig.hcd.mem.read32(inp.qh + 24) & R.TOK_DT  # toggle kept in the QH (DTC=0)
        assert await rig.hcd.bulk(inp, length=512) == b""  # zero-length reply
        await rig.hcd.close_device(h)  # unlinks the QHs with the async-advance doorbell
        assert rig.ctl.mmio_read(R.ASYNCLISTADDR) == rig.hcd.head
        assert rig.hcd.mem.read32(rig.hcd.head) == rig.hcd.head | 2  # ring back to the lone head
    finally:
        await rig.close()


async def test_core_enumerates_root_port_device_and_generic_driver_describes_it():
    rig = await Rig().start()
    core = UsbCore(rig.hcd, debounce=0.001)
    core.drivers = [HidBootDriver.probe, GenericDriver.probe]
    core.start()
    try:
        rig.ctl.attach(LoopbackDevice(), 5)
        while "5" not in core.devices or core.devices["5"].state != "configured":
            await asyncio.wait_for(core.changed.wait(), 3)
            core.changed.clear()
        info = core.devices["5"]
        assert (info.vid, info.pid, info.product, info.manufacturer) == (0x1209, 0x0BAD, "loopback", "aiospice")
        assert info.address >= 1 and info.driver_name == "generic"
        text = describe(info)
        assert "ID 1209:0bad" in text and "ep 0x83 isochronous maxp 1024" in text
    finally:
        await core.stop()
        await rig.close()


async def test_full_speed_on_root_port_is_reported_unsupported():
    rig = await Rig().start()
    core = UsbCore(rig.hcd, debounce=0.001)
    core.start()
    try:
        rig.ctl.attach(LowSpeedKeyboard(), 1)
        for _ in range(100):
            if core.devices.get("1") and core.devices["1"].state.startswith("unsupported"):
                break
            await asyncio.sleep(0.01)
        assert core.devices["1"].state.startswith("unsupported")
    finally:
        await core.stop()
        await rig.close()


async def test_low_and_full_speed_through_tt_hub_and_hid_reports():
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    try:
        kb, mouse, hs = LowSpeedKeyboard(), FullSpeedMouse(), HidKeyboard()
        ports = [usb.attach(kb), usb.attach(mouse), usb.attach(hs)]
        assert ports == ["1.1", "1.2", "1.3"]
        await usb.wait_for(lambda s: all(p in s.core.devices and s.core.devices[p].driver_name.startswith("hid")
                                         for p in ports), 10)
        rows = {r["port"]: r for r in usb.rows()}
        assert rows["1.1"]["speed"] == "low" and rows["1.2"]["speed"] == "full" and rows["1.3"]["speed"] == "high"
        assert isinstance(usb.info("1").driver, HubDriver)
        # split QHs name the hub address and port; the controller checks them
        slot = usb.controller.find_slot(usb.info("1.1").address)
        assert slot.device is kb and slot.parent.device is usb.hubs[1]
        kb.type_text("Hi there!")
        hs.type_text("ok")
        mouse.move(5, -3)
        kdrv, mdrv, hdrv = (usb.info(p).driver for p in ports)
        await usb.wait_for(lambda s: "".join(kdrv.text) == "Hi there!" and "".join(hdrv.text) == "ok"
                           and any(r[:3] == bytes((0, 5, 0xFD)) for r in mdrv.reports), 10)
        assert kdrv.kind == "keyboard" and mdrv.kind == "mouse"
    finally:
        await usb.close()


async def test_hot_plug_and_unplug_on_hub_and_root_port():
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    try:
        a = usb.attach(LoopbackDevice())
        b = usb.attach(HidKeyboard(), "3")
        await usb.wait_for(lambda s: all(p in s.core.devices and s.core.devices[p].state == "configured"
                                         for p in (a, b)), 10)
        addr_a = usb.info(a).address
        usb.detach(a)
        usb.detach(b)
        await usb.wait_for(lambda s: a not in s.core.devices and b not in s.core.devices, 5)
        assert usb.controller.find_slot(addr_a) is None
        c = usb.attach(LowSpeedKeyboard(), a)  # replug on the same hub port
        await usb.wait_for(lambda s: c in s.core.devices and s.core.devices[c].driver_name == "hid-keyboard", 10)
        assert usb.info(c).speed == Speed.LOW
    finally:
        await usb.close()


class FlakyDevice(LoopbackDevice):
    """Fails its first control transfer (a device that needs a second port reset)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def control(self, setup, data=b""):
        if self.failures:
            self.failures -= 1
            from usbredir.device import Status, TransferResult
            return TransferResult(Status.IOERROR)
        return await super().control(setup, data)


async def test_enumeration_retries_after_a_failed_transfer():
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    try:
        dev = FlakyDevice()
        port = usb.attach(dev)
        await usb.wait_for(lambda s: port in s.core.devices and s.core.devices[port].state == "configured")
        assert dev.failures == 0 and usb.info(port).product == "loopback"
    finally:
        await usb.close()


async def test_host_system_error_resets_controller_and_reenumerates():
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    try:
        ports = [usb.attach(HidKeyboard()), usb.attach(LowSpeedKeyboard(), None), usb.attach(LoopbackDevice(), "4")]
        await usb.wait_for(lambda s: all(p in s.core.devices and s.core.devices[p].state == "configured"
                                         for p in ports))
        # a wild guest write: the async ring head now links outside RAM
        usb.memory.write32(usb.hcd.head, 0xFFFF_F000 | 2)
        await usb.wait_for(lambda s: s.recoveries == 1, 5)
        assert "outside guest RAM" in usb.controller.last_error
        await usb.wait_for(lambda s: all(p in s.core.devices and s.core.devices[p].state == "configured"
                                         for p in ports), 10)
        kb = usb.info(ports[0]).driver
        usb.controller.find_slot(usb.info(ports[0]).address).device.type_text("ok")
        await usb.wait_for(lambda s: "".join(kb.text) == "ok")
        assert not usb.controller.mmio_read(0x24) & 0x1010  # running, no HSE pending
    finally:
        await usb.close()


async def test_nested_hub_and_unplugging_a_hub_removes_its_devices():
    from usbredir.ehci.hub import Hub

    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    try:
        inner = Hub(4)
        usb.attach(LoopbackDevice())  # creates hub 1 on root port 1
        usb.hubs[1].connect(2, inner)  # a second hub behind the first
        kb = LowSpeedKeyboard()
        await usb.wait_for(lambda s: "1.2" in s.core.devices and s.core.devices["1.2"].state == "configured")
        inner.connect(3, kb)  # low speed behind the inner hub: its TT is the inner hub
        await usb.wait_for(lambda s: "1.2.3" in s.core.devices and s.core.devices["1.2.3"].state == "configured")
        kb.type_text("n")
        drv = usb.info("1.2.3").driver
        await usb.wait_for(lambda s: drv.text == ["n"])
        usb.detach("1")  # the whole tree goes
        await usb.wait_for(lambda s: not s.core.devices)
        assert not usb.controller.packets and usb.controller.find_slot(1) is None
    finally:
        await usb.close()


class HostileDevice(LoopbackDevice):
    """Descriptors a malicious (redirected) device might send."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    @property
    def device_descriptor(self) -> bytes:
        d = bytearray(super().device_descriptor)
        if self.kind == "maxp0":
            d[7] = 7
        if self.kind == "short-device":
            return bytes(d[:12])
        if self.kind == "hub-class":
            d[4] = 9
        return bytes(d)

    @property
    def config_descriptors(self) -> list[bytes]:
        if self.kind == "config-garbage":
            return [bytes((9, 2, 0xFF, 0xFF, 1, 1, 0, 0x80, 50)) + bytes((0, 4, 3)) + b"\xff" * 300]
        if self.kind == "storage-no-endpoints":
            return [bytes((9, 2, 18, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 0, 8, 6, 0x50, 0))]
        return super().config_descriptors

    async def control(self, setup, data=b""):
        if self.kind == "babble" and setup.request == 6:
            from usbredir.device import Status, TransferResult
            return TransferResult(Status.SUCCESS, b"\x12\x01" + b"\x00" * 5000)
        return await super().control(setup, data)


@pytest.mark.parametrize("kind", ["maxp0", "short-device", "hub-class", "config-garbage",
                                  "storage-no-endpoints", "babble"])
async def test_hostile_descriptors_do_not_break_the_bus(kind):
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    try:
        bad = usb.attach(HostileDevice(kind))
        await usb.wait_for(lambda s: bad in s.core.devices and s.core.devices[bad].state not in
                           ("resetting", "enumerating"), 10)
        state = usb.info(bad).state
        assert state == "configured" or "error" in state
        good = usb.attach(HidKeyboard())
        await usb.wait_for(lambda s: good in s.core.devices and s.core.devices[good].state == "configured", 10)
    finally:
        await usb.close()


async def test_devices_attached_before_start_and_odd_speeds():
    from ehci_helpers import with_speed

    usb = UsbSubsystem(debounce=0.001)
    ports = [usb.attach(with_speed(LoopbackDevice, Speed.SUPER)()),
             usb.attach(with_speed(LoopbackDevice, Speed.UNKNOWN, 8)()),
             usb.attach(LoopbackDevice(), "3")]
    await usb.start()
    try:
        await usb.wait_for(lambda s: all(p in s.core.devices and s.core.devices[p].state == "configured"
                                         for p in ports))
        assert [usb.info(p).speed for p in ports] == [Speed.HIGH, Speed.FULL, Speed.HIGH]
    finally:
        await usb.close()
