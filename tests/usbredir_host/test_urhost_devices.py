"""Virtual devices driven the way a host controller drives them (no usbredir involved)."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from usbredir.device import SetupPacket, Status
from usbredir.devices.base import iter_descriptors
from usbredir.devices.hid import HidKeyboard, HidMouse, HidTablet, key_for_char
from usbredir.devices.storage import CBW, CBW_SIG, CSW, CSW_SIG, EP_IN, EP_OUT, MassStorage


def setup(rt, req, value=0, index=0, length=0):
    return SetupPacket(rt, req, value, index, length)


async def configure(dev):
    assert (await dev.control(setup(0x00, 9, 1))).status == Status.SUCCESS


async def test_chapter9_descriptors(tmp_path):
    img = tmp_path / "d.img"
    img.write_bytes(bytes(1 << 20))
    dev = MassStorage(str(img))
    r = await dev.control(setup(0x80, 6, 0x0100, 0, 64))
    assert r.status == Status.SUCCESS and bytes(r.data) == dev.device_descriptor and len(r.data) == 18
    r = await dev.control(setup(0x80, 6, 0x0200, 0, 9))
    total = struct.unpack_from("<H", r.data, 2)[0]
    full = (await dev.control(setup(0x80, 6, 0x0200, 0, 255))).data
    assert len(full) == total == 32
    kinds = [d[1] for d in iter_descriptors(bytes(full))]
    assert kinds == [2, 4, 5, 5]
    s = (await dev.control(setup(0x80, 6, 0x0302, 0x409, 255))).data
    assert bytes(s[2:]).decode("utf-16-le") == dev.PRODUCT
    assert (await dev.control(setup(0x80, 6, 0x0309, 0, 255))).status == Status.STALL
    assert (await dev.control(setup(0x00, 9, 7))).status == Status.STALL
    await configure(dev)
    assert bytes((await dev.control(setup(0x80, 8, 0, 0, 1))).data) == b"\x01"
    # halt / clear halt on an endpoint
    assert (await dev.control(setup(0x02, 3, 0, EP_IN))).status == Status.SUCCESS
    assert bytes((await dev.control(setup(0x82, 0, 0, EP_IN, 2))).data) == b"\x01\x00"
    assert (await dev.bulk(EP_IN, length=13)).status == Status.STALL
    assert (await dev.control(setup(0x02, 1, 0, EP_IN))).status == Status.SUCCESS
    assert bytes((await dev.control(setup(0x82, 0, 0, EP_IN, 2))).data) == b"\x00\x00"
    await dev.close()


class Bot:
    """A minimal BOT initiator (what Linux usb-storage does), for tests."""

    def __init__(self, dev):
        self.dev, self.tag = dev, 0

    async def run(self, cdb: bytes, *, data_in: int = 0, data_out: bytes = b"", chunk: int = 65536):
        self.tag += 1
        length = data_in or len(data_out)
        flags = 0x80 if data_in else 0
        cbw = CBW.pack(CBW_SIG, self.tag, length, flags, 0, len(cdb), cdb.ljust(16, b"\0"))
        assert (await self.dev.bulk(EP_OUT, cbw)).status == Status.SUCCESS
        got = bytearray()
        if data_in:
            while len(got) < data_in:
                r = await self.dev.bulk(EP_IN, length=min(chunk, data_in - len(got)))
                assert r.status == Status.SUCCESS
                got += r.data
                if len(r.data) < min(chunk, data_in - len(got) + len(r.data)):
                    break
        elif data_out:
            for off in range(0, len(data_out), chunk):
                r = await self.dev.bulk(EP_OUT, data_out[off:off + chunk])
                assert r.status == Status.SUCCESS
        r = await self.dev.bulk(EP_IN, length=13)
        assert r.status == Status.SUCCESS and len(r.data) == 13
        sig, tag, residue, status = CSW.unpack(r.data)
        assert sig == CSW_SIG and tag == self.tag
        return status, residue, bytes(got)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "stick.img"
    path.write_bytes(os.urandom(4 << 20))
    return path


async def test_scsi_commands(image):
    dev = MassStorage(str(image))
    await configure(dev)
    bot = Bot(dev)
    st, res, inq = await bot.run(bytes((0x12, 0, 0, 0, 36, 0)), data_in=36)
    assert st == 0 and inq[0] == 0 and inq[1] & 0x80 and inq[8:16] == b"aiospice"
    st, res, _ = await bot.run(bytes(6))  # TEST UNIT READY
    assert st == 0
    st, res, cap = await bot.run(bytes((0x25,)) + bytes(9), data_in=8)
    last, blk = struct.unpack(">II", cap)
    assert (last + 1) * blk == 4 << 20
    st, res, cap16 = await bot.run(bytes((0x9E, 0x10)) + bytes(8) + struct.pack(">I", 32) + bytes(2), data_in=32)
    assert struct.unpack_from(">QI", cap16) == (last, 512)
    st, res, ms = await bot.run(bytes((0x1A, 0, 0x3F, 0, 192, 0)), data_in=192)
    assert st == 0 and ms[2] & 0x80 == 0 and residue_ok(res, 192, len(ms))
    # unknown opcode -> failed, REQUEST SENSE says ILLEGAL REQUEST / INVALID OPCODE
    st, res, _ = await bot.run(bytes((0xEE,)) + bytes(9))
    assert st == 1
    st, res, sense = await bot.run(bytes((0x03, 0, 0, 0, 18, 0)), data_in=18)
    assert sense[2] & 0xF == 5 and sense[12] == 0x20
    # READ 10 of 1 MiB at LBA 100 in 64 KiB bulk chunks matches the file
    raw = image.read_bytes()
    st, res, data = await bot.run(bytes((0x28, 0)) + struct.pack(">IBH", 100, 0, 2048) + b"\0", data_in=1 << 20)
    assert st == 0 and res == 0 and hashlib.sha256(data).digest() == hashlib.sha256(raw[51200:51200 + (1 << 20)]).digest()
    # WRITE 16 then READ 16 round trip, SYNCHRONIZE CACHE, then the file holds it
    payload = os.urandom(256 * 512)
    st, res, _ = await bot.run(bytes((0x8A, 0)) + struct.pack(">QI", 7, 256) + bytes(2), data_out=payload, chunk=16384)
    assert st == 0 and res == 0
    st, res, _ = await bot.run(bytes((0x35,)) + bytes(9))
    assert st == 0 and not dev.disk.dirty
    st, res, back = await bot.run(bytes((0x88, 0)) + struct.pack(">QI", 7, 256) + bytes(2), data_in=len(payload))
    assert back == payload
    assert image.read_bytes()[7 * 512:7 * 512 + len(payload)] == payload
    # out of range -> failed
    st, res, _ = await bot.run(bytes((0x28, 0)) + struct.pack(">IBH", 8192, 0, 1) + b"\0", data_in=512)
    assert st == 1 and res == 512
    # PREVENT ALLOW, START STOP UNIT
    assert (await bot.run(bytes((0x1E, 0, 0, 0, 1, 0))))[0] == 0
    assert (await bot.run(bytes((0x1B, 0, 0, 0, 1, 0))))[0] == 0
    await dev.close()


def residue_ok(res, asked, got):
    return res == asked - got


async def test_read_only_and_bad_cbw(image):
    before = image.read_bytes()
    dev = MassStorage(str(image), read_only=True)
    await configure(dev)
    bot = Bot(dev)
    st, res, ms = await bot.run(bytes((0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 192, 0)), data_in=192)
    assert st == 0 and ms[3] & 0x80  # WP
    st, res, _ = await bot.run(bytes((0x2A, 0)) + struct.pack(">IBH", 0, 0, 8) + b"\0", data_out=os.urandom(4096))
    assert st == 1
    st, res, sense = await bot.run(bytes((0x03, 0, 0, 0, 18, 0)), data_in=18)
    assert sense[2] & 0xF == 7 and sense[12] == 0x27
    # garbage CBW: both endpoints stall until Reset Recovery
    assert (await dev.bulk(EP_OUT, b"garbage")).status == Status.STALL
    assert (await dev.bulk(EP_IN, length=13)).status == Status.STALL
    await dev.control(setup(0x02, 1, 0, EP_IN))
    assert (await dev.bulk(EP_IN, length=13)).status == Status.STALL
    assert (await dev.control(setup(0x21, 0xFF, 0, 0))).status == Status.SUCCESS
    await dev.control(setup(0x02, 1, 0, EP_IN))
    await dev.control(setup(0x02, 1, 0, EP_OUT))
    assert (await bot.run(bytes(6)))[0] == 0
    assert bytes((await dev.control(setup(0xA1, 0xFE, 0, 0, 1))).data) == b"\0"
    await dev.close()
    assert image.read_bytes() == before


async def test_keyboard_reports():
    kbd = HidKeyboard()
    await configure(kbd)
    rd = (await kbd.control(setup(0x81, 6, 0x2200, 0, 255))).data
    assert bytes(rd) == kbd.REPORT_DESCRIPTOR
    assert (await kbd.interrupt(0x81, length=8)).status == Status.NAK
    kbd.type_text("A")
    r1 = await kbd.interrupt(0x81, length=8)
    assert (await kbd.interrupt(0x81, length=8)).status == Status.NAK  # reports are spaced out
    await kbd.wait_for_data()
    r2 = await kbd.interrupt(0x81, length=8)
    assert bytes(r1.data) == bytes((0x02, 0, 0x04, 0, 0, 0, 0, 0))
    assert bytes(r2.data) == bytes(8)
    assert key_for_char("\n") == (0x28, 0)
    # SET_REPORT LEDs, SET_IDLE, SET_PROTOCOL boot
    assert (await kbd.control(setup(0x21, 0x09, 0x0200, 0, 1), b"\x02")).status == Status.SUCCESS
    assert kbd.leds == 2
    assert (await kbd.control(setup(0x21, 0x0A, 0, 0, 0))).status == Status.SUCCESS
    assert (await kbd.control(setup(0x21, 0x0B, 0, 0, 0))).status == Status.SUCCESS
    assert bytes((await kbd.control(setup(0xA1, 0x03, 0, 0, 1))).data) == b"\0"


async def test_mouse_and_tablet():
    m = HidMouse()
    m.REPORT_GAP = 0
    await configure(m)
    m.move(300, -5)
    reports = [bytes((await m.interrupt(0x81, length=8)).data) for _ in range(3)]
    assert [struct.unpack("<Bbbb", r)[1] for r in reports] == [127, 127, 46]
    await m.control(setup(0x21, 0x0B, 0, 0, 0))  # boot protocol: 3-byte reports
    m.click(1)
    assert bytes((await m.interrupt(0x81, length=8)).data) == b"\x01\x00\x00"
    t = HidTablet()
    await configure(t)
    t.move_to(0x4000, 0x9000, buttons=2)
    assert struct.unpack("<BHHb", (await t.interrupt(0x81, length=8)).data) == (2, 0x4000, 0x7FFF, 0)
