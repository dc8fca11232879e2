"""Garbage into the virtual devices: random CBWs, CDBs and control requests never raise."""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from usbredir.device import SetupPacket, Status
from usbredir.devices.hid import HidKeyboard
from usbredir.devices.storage import CBW, CBW_SIG, EP_IN, EP_OUT, MassStorage

IMG = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"urhost-fuzz-{os.getpid()}.img")
atexit.register(lambda: os.path.exists(IMG) and os.unlink(IMG))


def _image() -> str:
    if not os.path.exists(IMG):
        with open(IMG, "wb") as f:
            f.write(os.urandom(256 * 1024))
    return IMG


async def _drive(dev: MassStorage, cdb: bytes, xfer: int, flags: int, out: bytes, lun: int) -> None:
    cbw = CBW.pack(CBW_SIG, 1, xfer, flags, lun, len(cdb), cdb.ljust(16, b"\0"))
    r = await dev.bulk(EP_OUT, cbw)
    assert r.status in (Status.SUCCESS, Status.STALL)
    if flags & 0x80:
        for _ in range(4):  # bounded: a short packet ends the data stage
            r = await asyncio.wait_for(dev.bulk(EP_IN, length=4096), 1)
            if r.status != Status.SUCCESS or len(r.data) < 4096:
                break
    elif out:
        await dev.bulk(EP_OUT, out)
    if dev.phase.value in ("status", "data-in"):
        r = await asyncio.wait_for(dev.bulk(EP_IN, length=4096), 1)


@settings(max_examples=300, deadline=None)
@given(cdb=st.binary(min_size=1, max_size=16), xfer=st.integers(0, 1 << 20), flags=st.sampled_from([0, 0x80]),
       out=st.binary(max_size=600), lun=st.integers(0, 2))
def test_random_commands_never_crash_and_ro_image_untouched(cdb, xfer, flags, out, lun):
    path = _image()
    before = hashlib.sha256(open(path, "rb").read()).digest()

    async def run() -> None:
        dev = MassStorage(path, read_only=True)
        await dev.control(SetupPacket(0, 9, 1, 0, 0))
        await _drive(dev, cdb, xfer, flags, out, lun)
        # the device still works afterwards (after Reset Recovery if it asked for one)
        await dev.control(SetupPacket(0x21, 0xFF, 0, 0, 0))
        dev.halted.clear()
        cbw = CBW.pack(CBW_SIG, 2, 0, 0, 0, 6, bytes(16))
        assert (await dev.bulk(EP_OUT, cbw)).status == Status.SUCCESS
        csw = await asyncio.wait_for(dev.bulk(EP_IN, length=13), 1)
        assert struct.unpack("<IIIB", csw.data)[1:] == (2, 0, 0)
        await dev.close()

    asyncio.run(run())
    assert hashlib.sha256(open(path, "rb").read()).digest() == before


@settings(max_examples=300, deadline=None)
@given(rt=st.integers(0, 255), req=st.integers(0, 255), value=st.integers(0, 0xFFFF),
       index=st.integers(0, 0xFFFF), length=st.integers(0, 0xFFFF), data=st.binary(max_size=64))
def test_random_control_requests(rt, req, value, index, length, data):
    async def run() -> None:
        for dev in (HidKeyboard(), MassStorage(_image(), read_only=True)):
            r = await dev.control(SetupPacket(rt, req, value, index, length), b"" if rt & 0x80 else data)
            assert r.status in (Status.SUCCESS, Status.STALL)
            if r.status == Status.SUCCESS and rt & 0x80:
                assert len(r.data) <= length
            await dev.close()

    asyncio.run(run())
