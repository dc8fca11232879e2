"""Many devices, hard unplugs, hostile share clients and a hostile schedule: the guest and the
server recover and other sessions are unaffected."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct

import pytest
from usbe2e_helpers import PASSWORD, Share, make_fat_image, served_guest, sha256, usb_api, wait_until

from spice.proto.enums import ChannelType
from usbredir.devices.hid import HidKeyboard, HidMouse
from usbredir.devices.storage import MassStorage
from usbredir.share import StatusLine
from usbredir.spice_client import SpiceConnection, SpiceUsbSession, share_spice

pytestmark = [pytest.mark.timeout(150),
              pytest.mark.skipif(not shutil.which("mkfs.vfat"), reason="dosfstools missing")]

SPICEVMC_DATA, SPICEVMC_COMPRESSED_DATA = 101, 102


async def configured(server, n: int):
    rows = await usb_api(server)
    return rows if len(rows) == n and all(r["state"] == "configured" for r in rows) else None


async def test_32_devices_at_once(tmp_path):
    sticks = []
    for i in range(8):
        img = tmp_path / f"s{i}.img"
        make_fat_image(img, 1, {f"F{i}.TXT": f"stick {i}\n".encode()})
        sticks.append(MassStorage(str(img)))
    devices = sticks + [HidKeyboard() for _ in range(12)] + [HidMouse() for _ in range(12)]
    async with served_guest(usb_channels=32) as server:
        stop = asyncio.Event()
        task = asyncio.create_task(share_spice(f"spice://127.0.0.1:{server.ports['plain']}", devices, PASSWORD,
                                               stop, StatusLine(quiet=True)))
        try:
            try:
                rows = await wait_until(lambda: configured(server, 32), 60, 0.2)
            except TimeoutError:
                rows = await usb_api(server)
                raise AssertionError(f"{len(rows)} rows: {[(r['channel'], r['port'], r['state']) for r in rows]}"
                                     ) from None
            assert len({r["port"] for r in rows}) == 32 and len({r["channel"] for r in rows}) == 32
            drivers = sorted(r["driver"] for r in rows)
            assert drivers.count("usb-storage") == 8 and drivers.count("hid-keyboard") == 12
            await wait_until(lambda: len(server.usb.subsystem.volumes) == 8, 40, 0.2)
            for row in rows:
                if row["driver"] == "usb-storage":
                    names = [e.name for e in await server.usb.subsystem.listdir(row["port"], "/")]
                    (name,) = names
                    text = await server.usb.subsystem.read_file(row["port"], "/" + name)
                    assert text == f"stick {name[1]}\n".encode()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        await wait_until(lambda: not server.usb.plugged, 20)


async def test_unplug_during_transfer_other_session_unaffected(tmp_path):
    big_a, big_b = os.urandom(12 << 20), os.urandom(2 << 20)
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    make_fat_image(a, 32, {"BIG.BIN": big_a})
    make_fat_image(b, 8, {"B.BIN": big_b})
    async with served_guest() as server:
        usb = server.usb
        target = f"spice://127.0.0.1:{server.ports['plain']}"
        async with Share(target, "--storage", str(b)):
            await wait_until(lambda: len(usb.subsystem.volumes) == 1, 30)
            port_b = next(iter(usb.subsystem.volumes))
            share_a = await Share(target, "--storage", str(a)).start()
            await wait_until(lambda: len(usb.subsystem.volumes) == 2, 30)
            port_a = next(p for p in usb.subsystem.volumes if p != port_b)
            read = asyncio.create_task(usb.subsystem.read_file(port_a, "/BIG.BIN"))
            await wait_until(lambda: usb.subsystem.info(port_a).bytes_moved > 1 << 20, 30, 0.005)
            share_a.proc.kill()  # yanked mid-transfer: no device_disconnect, the socket just dies
            await share_a.stop()
            with pytest.raises(Exception):  # noqa: B017 - any I/O error, but it must end
                await asyncio.wait_for(read, 20)
            await wait_until(lambda: len(usb.plugged) == 1, 20)
            # the other session's stick still reads correctly
            assert sha256(await usb.subsystem.read_file(port_b, "/B.BIN")) == sha256(big_b)
            # and the yanked stick comes back when shared again
            async with Share(target, "--storage", str(a)):
                await wait_until(lambda: len(usb.subsystem.volumes) == 2, 30)
                port_a = next(p for p in usb.subsystem.volumes if p != port_b)
                assert sha256(await usb.subsystem.read_file(port_a, "/BIG.BIN")) == sha256(big_a)


async def _raw_channel(server, channel_id: int) -> tuple[SpiceUsbSession, SpiceConnection]:
    session = SpiceUsbSession("127.0.0.1", server.ports["plain"], None, PASSWORD)
    await session.connect()
    conn = await SpiceConnection.open("127.0.0.1", server.ports["plain"], None, ChannelType.USBREDIR, channel_id,
                                      session.session_id, PASSWORD, frozenset({0}))
    return session, conn


async def _closed_by_server(conn: SpiceConnection) -> bool:
    async def drain() -> None:
        while await conn.messages():
            pass
    try:
        await asyncio.wait_for(drain(), 10)
    except ConnectionError:
        pass
    return True


HOSTILE_STREAMS = {
    "garbage": os.urandom(4096),
    "huge length": struct.pack("<III", 0, 0x7FFF_FFF0, 0) + b"x" * 64,
    "device_connect before hello": struct.pack("<III", 1, 10, 0) + bytes(10),
    "hello then junk types": struct.pack("<III", 0, 68, 0) + b"evil".ljust(64, b"\0") + struct.pack("<I", 0xFF)
    + b"".join(struct.pack("<III", t, 0, 0) for t in (999, 12345, 77)),
}


async def test_hostile_share_clients_do_not_hurt_others(tmp_path):
    blob = os.urandom(1 << 20)
    img = tmp_path / "good.img"
    make_fat_image(img, 8, {"GOOD.BIN": blob})
    async with served_guest() as server:
        usb = server.usb
        async with Share(f"spice://127.0.0.1:{server.ports['plain']}", "--storage", str(img)):
            await wait_until(lambda: usb.subsystem.volumes, 30)
            port = next(iter(usb.subsystem.volumes))
            for what, stream in HOSTILE_STREAMS.items():
                session, conn = await _raw_channel(server, 1)
                conn.send(SPICEVMC_DATA, stream)
                assert await _closed_by_server(conn), what
                session.close()
            # corrupt LZ4, unknown compression, lying sizes
            for body in (b"\x01" + struct.pack("<I", 5000) + os.urandom(300), b"\x07abc",
                         b"\x01" + struct.pack("<I", 1 << 30) + b"\0" * 16):
                session, conn = await _raw_channel(server, 2)
                conn.send(SPICEVMC_COMPRESSED_DATA, body)
                assert await _closed_by_server(conn)
                session.close()
            assert len(usb.plugged) == 1
            assert sha256(await usb.subsystem.read_file(port, "/GOOD.BIN")) == sha256(blob)


async def test_hostile_schedule_in_guest_memory_recovers(tmp_path):
    blob = os.urandom(4 << 20)
    img = tmp_path / "s.img"
    make_fat_image(img, 16, {"DATA.BIN": blob})
    async with served_guest() as server:
        usb = server.usb
        sub = usb.subsystem
        async with Share(f"spice://127.0.0.1:{server.ports['plain']}", "--storage", str(img), "--keyboard"):
            await wait_until(lambda: configured(server, 2), 30)
            await wait_until(lambda: sub.volumes, 30)
            port = next(iter(sub.volumes))
            read = asyncio.create_task(sub.read_file(port, "/DATA.BIN"))
            await wait_until(lambda: sub.info(port).bytes_moved > 256 << 10, 30, 0.002)
            # a wild guest write: the async ring head now links outside guest RAM
            sub.memory.write32(sub.hcd.head, 0xFFFF_F000 | 2)
            await wait_until(lambda: sub.recoveries >= 1, 10)
            with pytest.raises(Exception):  # noqa: B017 - the transfer in flight fails, it must not hang
                await asyncio.wait_for(read, 20)
            assert "outside guest RAM" in (sub.controller.last_error or "")
            # both redirected devices are enumerated again; the stick reads correctly
            await wait_until(lambda: configured(server, 2), 30)
            await wait_until(lambda: sub.volumes, 30)
            port = next(iter(sub.volumes))
            assert sha256(await sub.read_file(port, "/DATA.BIN")) == sha256(blob)
