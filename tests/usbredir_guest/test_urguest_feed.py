"""GuestConnection without sockets: bytes pushed with feed() (as a SPICE usbredir channel would),
talking to usbredir.host's UsbredirHost through an in-memory pipe; a virtual stick read by hash."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from usbredir.device import SetupPacket, Status
from usbredir.devices.storage import MassStorage
from usbredir.host import UsbredirHost
from usbredir.redirected import GuestConnection

pytestmark = pytest.mark.timeout(30)


class Pipe:
    """Writer side of an in-memory link: delivers each write on the next loop iteration."""

    def __init__(self) -> None:
        self.deliver = None
        self.closed = False

    def writelines(self, chunks) -> None:  # GuestConnection writer protocol
        data = b"".join(bytes(c) for c in chunks)
        asyncio.get_running_loop().call_soon(lambda: self.deliver(data))

    write = writelines  # UsbredirHost transport protocol: write(list)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_feed_style_connection_to_usbredir_host(tmp_path):
    img = tmp_path / "stick.img"
    content = os.urandom(1 << 20)
    img.write_bytes(content)
    to_host, to_guest = Pipe(), Pipe()
    attached: asyncio.Queue = asyncio.Queue()
    conn = GuestConnection(None, to_host, on_attach=attached.put_nowait)
    host = UsbredirHost(MassStorage(str(img)), to_guest)
    to_host.deliver = host.feed
    to_guest.deliver = conn.feed
    dev = await asyncio.wait_for(attached.get(), 10)
    assert dev.vendor_id == 0x1209 and await dev.set_configuration(1) == Status.SUCCESS
    # READ(10) of 16 blocks at LBA 8 over BOT
    cbw = (b"USBC" + (7).to_bytes(4, "little") + (8192).to_bytes(4, "little") + b"\x80\x00\x0a"
           + bytes([0x28, 0, 0, 0, 0, 8, 0, 0, 16, 0]).ljust(16, b"\0"))
    assert (await dev.bulk(0x02, cbw)).actual == 31
    got = b""
    while len(got) < 8192:
        r = await dev.bulk(0x81, None, 8192 - len(got))
        assert r.status == Status.SUCCESS
        got += bytes(r.data)
    csw = await dev.bulk(0x81, None, 13)
    assert bytes(csw.data[:4]) == b"USBS" and csw.data[12] == 0
    assert hashlib.sha256(got).digest() == hashlib.sha256(content[8 * 512:24 * 512]).digest()
    # the usb-host goes away: pending and later transfers fail, the device is detached
    conn.feed_eof()
    assert dev.detached
    assert (await dev.control(SetupPacket(0x80, 0, 0, 0, 2))).status == Status.IOERROR
    await conn.close()
    await host.device.close()
