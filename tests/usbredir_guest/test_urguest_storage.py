"""RedirectedDevice against the project's usb-host side (usbredir.host over TCP) exporting a
virtual mass-storage stick: BOT/SCSI reads and writes through the usbredir link, checked by hashes
against the image file; cancel, filter, detach."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct

import pytest

from usbredir.device import SetupPacket, Speed, Status
from usbredir.devices.storage import MassStorage
from usbredir.guest_listener import GuestListener
from usbredir.host import serve_stream
from usbredir.redirected import RedirectedDevice

pytestmark = pytest.mark.timeout(60)

CBW = struct.Struct("<IIIBBB16s")
CSW = struct.Struct("<IIIB")
EP_IN, EP_OUT = 0x81, 0x02


class Bot:
    """Minimal Bulk-Only-Transport initiator on a UsbDevice."""

    def __init__(self, dev: RedirectedDevice) -> None:
        self.dev = dev
        self.tag = 0

    async def command(self, cb: bytes, *, data_in: int = 0, data_out: bytes = b"") -> bytes:
        self.tag += 1
        length = data_in or len(data_out)
        flags = 0x80 if data_in else 0
        r = await self.dev.bulk(EP_OUT, CBW.pack(0x43425355, self.tag, length, flags, 0, len(cb), cb.ljust(16, b"\0")))
        assert r.status == Status.SUCCESS and r.actual == 31
        got = b""
        if data_in:
            while len(got) < data_in:
                r = await self.dev.bulk(EP_IN, None, min(data_in - len(got), 16384))
                assert r.status == Status.SUCCESS, r
                got += bytes(r.data)
                if not r.data:
                    break
        elif data_out:
            for off in range(0, len(data_out), 16384):
                r = await self.dev.bulk(EP_OUT, data_out[off:off + 16384])
                assert r.status == Status.SUCCESS
        r = await self.dev.bulk(EP_IN, None, 13)
        sig, tag, residue, status = CSW.unpack(bytes(r.data))
        assert (sig, tag, status) == (0x53425355, self.tag, 0), (sig, tag, residue, status)
        return got

    async def read(self, lba: int, blocks: int) -> bytes:
        return await self.command(struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0), data_in=blocks * 512)

    async def write(self, lba: int, data: bytes) -> None:
        await self.command(struct.pack(">BBIBHB", 0x2A, 0, lba, 0, len(data) // 512, 0), data_out=data)

    async def sync(self) -> None:
        await self.command(bytes([0x35]) + bytes(9))


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "stick.img"
    path.write_bytes(os.urandom(4 << 20))
    return path


async def share(image, listener: GuestListener):
    """Export a MassStorage over TCP to the listener, as `aiospice usb share --to` does."""
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_stream(MassStorage(str(image)), reader, writer, stop=stop))
    return task, stop


async def test_mass_storage_read_write_through_redirected_device(image):
    original = image.read_bytes()
    async with GuestListener() as listener:
        task, stop = await share(image, listener)
        dev = await listener.next_device(timeout=10)
        assert dev.speed == Speed.HIGH and (dev.vendor_id, dev.product_id) == (0x1209, 0x0001)
        assert dev.device_descriptor[:2] == b"\x12\x01" and dev.config_descriptors[0][1] == 2
        assert dev.product  # read through GET_DESCRIPTOR(STRING)
        assert await dev.set_configuration(1) == Status.SUCCESS
        r = await dev.control(SetupPacket(0x80, 8, 0, 0, 1))  # GET_CONFIGURATION -> packet 7
        assert (r.status, bytes(r.data)) == (Status.SUCCESS, b"\x01")
        bot = Bot(dev)
        # read 64 KiB at block 100: identical to the image file
        got = await bot.read(100, 128)
        assert hashlib.sha256(got).digest() == hashlib.sha256(original[100 * 512:228 * 512]).digest()
        # write 96 KiB at block 2000, read it back, sync
        payload = os.urandom(96 * 1024)
        await bot.write(2000, payload)
        assert await bot.read(2000, len(payload) // 512) == payload
        await bot.sync()
        stop.set()
        assert "detach" in await asyncio.wait_for(task, 10)
        await asyncio.sleep(0)
        assert dev.detached
        assert (await dev.bulk(EP_IN, None, 13)).status == Status.IOERROR
    after = image.read_bytes()
    expected = original[:2000 * 512] + payload + original[2000 * 512 + len(payload):]
    assert hashlib.sha256(after).hexdigest() == hashlib.sha256(expected).hexdigest()


async def test_cancelled_transfer_is_cancelled_on_the_wire(image):
    async with GuestListener() as listener:
        task, stop = await share(image, listener)
        dev = await listener.next_device(timeout=10)
        assert await dev.set_configuration(1) == Status.SUCCESS
        # a bulk IN with no command pending waits in the device (it NAKs): cancel it
        pending = asyncio.create_task(dev.bulk(EP_IN, None, 13))
        await asyncio.sleep(0.2)
        assert not pending.done()
        core = dev.conn.core
        (pid,) = core._pending
        dropped = core.stats.dropped_replies
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert core.stats.cancels == 1 and pid not in core._pending
        # the host answers the cancel with a (cancelled) reply for that id, which is dropped
        for _ in range(100):
            if core.stats.dropped_replies > dropped:
                break
            await asyncio.sleep(0.02)
        assert core.stats.dropped_replies == dropped + 1 and pid not in core._cancelled
        # the device still works afterwards
        got = await Bot(dev).read(0, 8)
        assert got == image.read_bytes()[:4096]
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_filter_rejects_mass_storage(image):
    async with GuestListener(rules="0x08,-1,-1,-1,0|-1,-1,-1,-1,1") as listener:
        task, stop = await share(image, listener)
        reason = await asyncio.wait_for(task, 10)
        assert "filter rejected" in reason
        assert listener._devices.empty()


async def test_filter_allows_other_devices(image):
    async with GuestListener(rules="0x03,-1,-1,-1,0|-1,-1,-1,-1,1") as listener:
        task, stop = await share(image, listener)
        dev = await listener.next_device(timeout=10)
        assert dev.vendor_id == 0x1209
        stop.set()
        await asyncio.wait_for(task, 10)
