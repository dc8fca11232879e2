"""32 devices at once behind the built-in TT hubs: all enumerate with distinct addresses and work."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
from ehci_helpers import LoopbackDevice, LowSpeedKeyboard

from usbredir.devices.hid import HidKeyboard
from usbredir.devices.storage import MassStorage
from usbredir.guest.subsystem import UsbSubsystem


@pytest.mark.skipif(not shutil.which("mkfs.vfat"), reason="dosfstools missing")
async def test_32_devices_attached_at_once(tmp_path):
    sticks = []
    payloads = []
    for i in range(4):
        img = str(tmp_path / f"s{i}.img")
        subprocess.run(["mkfs.vfat", "-C", img, "2048"], check=True, capture_output=True)
        data = os.urandom(20_000 + i)
        (tmp_path / "f").write_bytes(data)
        subprocess.run(["mcopy", "-i", img, str(tmp_path / "f"), "::F.BIN"], check=True, capture_output=True)
        sticks.append(MassStorage(img))
        payloads.append(data)
    keyboards = [LowSpeedKeyboard() if i % 2 else HidKeyboard() for i in range(16)]
    loops = [LoopbackDevice() for _ in range(12)]
    devices = keyboards + sticks + loops
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    try:
        ports = [usb.attach(d) for d in devices]
        assert len(set(ports)) == 32 and len(usb.hubs) == 4
        await usb.wait_for(lambda s: all(p in s.core.devices and s.core.devices[p].state == "configured"
                                         for p in ports), 60)
        addresses = [usb.info(p).address for p in ports] + [usb.info(str(r)).address for r in usb.hubs]
        assert len(set(addresses)) == 36 and all(1 <= a <= 127 for a in addresses)
        for i, kb in enumerate(keyboards):
            kb.type_text(f"k{i % 10}")
        drivers = [usb.info(p).driver for p in ports[:16]]
        await usb.wait_for(lambda s: all("".join(d.text) == f"k{i % 10}" for i, d in enumerate(drivers)), 20)
        for port, data in zip(ports[16:20], payloads, strict=True):
            await usb.wait_mounted(port, 20)
            got = await usb.read_file(port, "/F.BIN")
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert len(usb.rows()) == 32
    finally:
        await usb.close()
        for s in sticks:
            await s.close()
