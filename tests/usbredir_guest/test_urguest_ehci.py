"""End to end: a virtual FAT stick exported by usbredir.host over TCP, received by our usb-guest
side (GuestListener -> RedirectedDevice), plugged into the EHCI model and used by the guest USB
software (mount, list, write, read back, eject); the image is then checked with mtools and fsck."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import pytest

from tests.peers.fatimage import make_fat_image
from tests.peers.fatimage import sha256 as sha
from usbredir.devices.storage import MassStorage
from usbredir.guest.subsystem import UsbSubsystem
from usbredir.guest_listener import GuestListener
from usbredir.host import serve_stream

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not (shutil.which("mkfs.vfat") and shutil.which("mcopy")),
                                 reason="dosfstools/mtools missing")]


def make_image(tmp_path, big: bytes) -> str:
    img = str(tmp_path / "stick.img")
    # 16 MiB -> FAT16 (pyfatfs, used by the guest software, mishandles FAT12 images)
    make_fat_image(img, 16, {"BIG.BIN": big})
    return img


class Rig:
    """MassStorage -> usbredir.host -> TCP -> GuestListener -> RedirectedDevice -> EHCI model."""

    def __init__(self, img: str) -> None:
        self.img = img

    async def __aenter__(self):
        self.usb = UsbSubsystem(debounce=0.001)
        await self.usb.start()
        self.listener = await GuestListener().start()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.listener.port)
        self.stop = asyncio.Event()
        self.share = asyncio.create_task(serve_stream(MassStorage(self.img), reader, writer, stop=self.stop))
        self.dev = await self.listener.next_device(timeout=10)
        self.port = self.usb.attach(self.dev)
        self.dev.on_disconnect = lambda: self.usb.detach(self.port)  # how a server wires unplug
        await self.usb.wait_mounted(self.port, timeout=30)
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        try:
            await asyncio.wait_for(self.share, 10)
        finally:
            await asyncio.wait_for(self.usb.close(), 10)
            await asyncio.wait_for(self.listener.close(), 10)


async def test_fat_stick_through_usbredir_into_ehci(tmp_path):
    big = os.urandom(200_000)
    img = make_image(tmp_path, big)
    written = os.urandom(150_001)
    async with Rig(img) as rig:
        usb, port = rig.usb, rig.port
        names = {e.name: e for e in await usb.listdir(port, "/")}
        assert names["BIG.BIN"].size == len(big)
        await usb.write_file(port, "/NEW.BIN", written)
        assert sha(await usb.read_file(port, "/NEW.BIN")) == sha(written)
        row = next(r for r in usb.rows() if r["port"] == port)
        assert row["driver"] == "usb-storage" and row["id"] == "1209:0001"
        await usb.eject(port)
        rig.stop.set()
        await asyncio.wait_for(rig.share, 10)
        # device_disconnect -> RedirectedDevice.on_disconnect -> unplugged from the EHCI model
        await usb.wait_for(lambda u: all(r["port"] != port for r in u.rows()), timeout=10)
    out = subprocess.run(["mtype", "-i", img, "::NEW.BIN"], check=True, capture_output=True).stdout
    assert sha(out) == sha(written)
    assert sha(subprocess.run(["mtype", "-i", img, "::BIG.BIN"], check=True, capture_output=True).stdout) == sha(big)
    r = subprocess.run(["fsck.fat", "-n", img], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


async def test_read_existing_file_through_usbredir_into_ehci(tmp_path):
    big = os.urandom(200_000)
    img = make_image(tmp_path, big)
    async with Rig(img) as rig:
        data = await asyncio.wait_for(rig.usb.read_file(rig.port, "/BIG.BIN"), 15)
        assert sha(data) == sha(big)
