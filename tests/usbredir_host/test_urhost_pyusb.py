"""The pyusb device path, exercised for real through a pyusb backend that presents a virtual device."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct

import usb.core
from test_urhost_devices import Bot

from usbredir.device import SetupPacket, Speed, Status
from usbredir.devices.hid import HidKeyboard
from usbredir.devices.pyusb_device import PyusbDevice, list_devices
from usbredir.devices.pyusb_virtual import VirtualBackend
from usbredir.devices.storage import EP_IN, MassStorage


async def test_pyusb_mass_storage_roundtrip(tmp_path):
    img = tmp_path / "s.img"
    img.write_bytes(os.urandom(2 << 20))
    virt = MassStorage(str(img))
    backend = VirtualBackend(virt, asyncio.get_running_loop())
    rows = await asyncio.to_thread(list_devices, backend)
    assert [(r["vid"], r["pid"], r["bus"], r["address"]) for r in rows] == [(0x1209, 0x0001, 1, 7)]
    dev = PyusbDevice(await asyncio.to_thread(usb.core.find, backend=backend))
    # descriptors re-serialised from pyusb's parsed view equal the device's own bytes
    assert dev.device_descriptor == virt.device_descriptor
    assert dev.config_descriptors == virt.config_descriptors
    assert dev.speed == Speed.HIGH
    r = await dev.control(SetupPacket(0x80, 6, 0x0302, 0x409, 255))
    assert r.status == Status.SUCCESS and bytes(r.data[2:]).decode("utf-16-le") == virt.PRODUCT
    assert (await dev.control(SetupPacket(0x00, 9, 1, 0, 0))).status == Status.SUCCESS
    assert virt.configuration == 1
    bot = Bot(dev)
    st, res, data = await bot.run(bytes((0x28, 0)) + struct.pack(">IBH", 0, 0, 1024) + b"\0", data_in=512 * 1024)
    assert st == 0 and hashlib.sha256(data).digest() == hashlib.sha256(img.read_bytes()[:512 * 1024]).digest()
    payload = os.urandom(64 * 512)
    st, res, _ = await bot.run(bytes((0x2A, 0)) + struct.pack(">IBH", 9, 0, 64) + b"\0", data_out=payload)
    assert st == 0
    # a stall maps to Status.STALL through pyusb's EPIPE
    await virt.control(SetupPacket(0x02, 3, 0, EP_IN, 0))
    assert (await dev.bulk(EP_IN, length=13)).status == Status.STALL
    assert await dev.clear_halt(EP_IN) == Status.SUCCESS
    # unplug: ENODEV -> IOERROR and on_disconnect
    gone = []
    dev.on_disconnect = lambda: gone.append(True)
    backend.unplug()
    assert (await dev.bulk(EP_IN, length=13)).status == Status.IOERROR
    await asyncio.sleep(0)
    assert gone == [True]
    await dev.close()
    await virt.close()
    assert img.read_bytes()[9 * 512:9 * 512 + len(payload)] == payload


async def test_pyusb_interrupt_nak_and_report():
    kbd = HidKeyboard()
    kbd.REPORT_GAP = 0
    backend = VirtualBackend(kbd, asyncio.get_running_loop())
    dev = PyusbDevice(await asyncio.to_thread(usb.core.find, backend=backend))
    assert await dev.set_configuration(1) == Status.SUCCESS
    assert (await dev.interrupt(0x81, length=8)).status == Status.NAK  # poll timed out: nothing to report
    kbd.type_text("b")
    r = await dev.interrupt(0x81, length=8)
    assert r.status == Status.SUCCESS and bytes(r.data) == bytes((0, 0, 0x05, 0, 0, 0, 0, 0))
    r = await dev.control(SetupPacket(0x81, 6, 0x2200, 0, 255))
    assert bytes(r.data) == kbd.REPORT_DESCRIPTOR
    await dev.close()


async def test_usb_list_output(tmp_path, monkeypatch, capsys):
    """`aiospice usb list` through the pyusb path: bus-address, VID:PID, class, product."""
    import argparse

    from usbredir import share
    from usbredir.devices import pyusb_device

    img = tmp_path / "l.img"
    img.write_bytes(bytes(1 << 20))
    backend = VirtualBackend(MassStorage(str(img)), asyncio.get_running_loop())
    monkeypatch.setattr(pyusb_device, "default_backend", lambda: backend)
    rc = await asyncio.to_thread(share.list_main, argparse.Namespace())
    assert rc == 0
    assert capsys.readouterr().out.strip() == "001-007  1209:0001  class 08  aiospice virtual stick"
