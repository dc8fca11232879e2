"""Faults: a peer sending garbage, an unplug during a transfer, a guest resetting the device mid-write."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from urhost_helpers import fat_read, free_port, fsck_clean, make_fat_image, redir_args, sha256

from tests.peers.qemu_guest import QemuGuest
from usbredir import proto as P
from usbredir.device import Status
from usbredir.devices.storage import CBW, CBW_SIG, MassStorage
from usbredir.host import serve_stream
from usbredir.parser import Role, UsbredirParser
from usbredir.share import StatusLine, share_tcp_listen


async def read_until_closed(reader: asyncio.StreamReader, limit: float = 10) -> bytes:
    data = b""
    async with asyncio.timeout(limit):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def test_garbage_peer_is_dropped_and_next_peer_served(tmp_path):
    img = tmp_path / "s.img"
    img.write_bytes(bytes(1 << 20))
    stick = MassStorage(str(img))
    port = free_port()
    stop = asyncio.Event()
    events: list[str] = []
    status = StatusLine(quiet=True)
    status.event = events.append
    server = asyncio.create_task(share_tcp_listen(stick, "127.0.0.1", port, stop, status))
    await asyncio.sleep(0.2)
    # 1: random bytes instead of a hello
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(os.urandom(4096))
    await read_until_closed(r)  # we close it: no hang
    w.close()
    # 2: a valid hello, then a packet announcing 1 GiB
    r, w = await asyncio.open_connection("127.0.0.1", port)
    guest = UsbredirParser(Role.GUEST)
    w.write(guest.bytes_to_send())
    w.write((100).to_bytes(4, "little") + (1 << 30).to_bytes(4, "little") + bytes(8))
    await read_until_closed(r)
    w.close()
    assert sum("protocol error" in e for e in events) == 2, events
    # 3 and 4: well-behaved guests, one after the other, get a working stick
    for round_ in range(2):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        guest = UsbredirParser(Role.GUEST)
        w.write(guest.bytes_to_send())
        got: list = []

        async def until(pred, r=r, guest=guest, got=got):
            async with asyncio.timeout(10):
                while not any(pred(e) for e in got):
                    guest.receive_data(await r.read(65536))
                    got += guest.events_received()

        await until(lambda e: isinstance(e, P.DeviceConnect))
        dc = next(e for e in got if isinstance(e, P.DeviceConnect))
        assert (dc.vendor_id, dc.product_id) == (0x1209, 0x0001)
        cbw = CBW.pack(CBW_SIG, 5, 0, 0, 0, 6, bytes(16))  # TEST UNIT READY
        for pkt in (P.Reset(), P.SetConfiguration(1, 1), P.BulkPacket(2, 0x02, 0, len(cbw), 0, cbw),
                    P.BulkPacket(3, 0x81, 0, 13)):
            guest.send(pkt)
        w.write(guest.bytes_to_send())
        await until(lambda e: isinstance(e, P.BulkPacket) and e.id == 3)
        csw = next(e for e in got if isinstance(e, P.BulkPacket) and e.id == 3)
        assert csw.status == Status.SUCCESS and bytes(csw.data)[4:] == bytes((5, 0, 0, 0, 0, 0, 0, 0, 0)), round_
        w.close()
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(server, 10)
    assert stick.closed  # closed once, at the end


@pytest.mark.peer
@pytest.mark.timeout(240)
async def test_unplug_during_transfer(tmp_path, need_qemu):
    import usb.core

    from usbredir.devices.pyusb_device import PyusbDevice
    from usbredir.devices.pyusb_virtual import VirtualBackend

    img = str(tmp_path / "stick.img")
    make_fat_image(img, 48, {"BIG.BIN": os.urandom(40 << 20)})
    before = hashlib.sha256(open(img, "rb").read()).hexdigest()
    stick = MassStorage(img)
    backend = VirtualBackend(stick, asyncio.get_running_loop())
    dev = PyusbDevice(await asyncio.to_thread(usb.core.find, backend=backend))
    port = free_port()
    guest = QemuGuest(redir_args(port))
    hosts: list = []
    try:
        await guest.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = asyncio.create_task(serve_stream(dev, reader, writer, on_host=hosts.append))
        await guest.wait_for_command("test -b /dev/sda", timeout=60)
        await guest.check("(dd if=/dev/sda of=/dev/null bs=65536; echo dd-exit-$? > /tmp/dd) >/dev/null 2>&1 &")
        async with asyncio.timeout(60):
            while hosts[0].stats.bytes_to_guest < (4 << 20):
                await asyncio.sleep(0.05)
        backend.unplug()  # cable pulled in the middle of the read
        await guest.wait_for_command("! test -b /dev/sda", timeout=30)
        out = await guest.wait_for_command("cat /tmp/dd", timeout=30)
        assert "dd-exit-" in out
        assert hosts[0].stats.bytes_to_guest < (48 << 20)  # really interrupted
        assert (await guest.check("echo alive")).strip() == "alive"
        writer.close()
        await asyncio.wait_for(session, 20)
    finally:
        await guest.stop()
        await stick.close()
    assert hashlib.sha256(open(img, "rb").read()).hexdigest() == before
    assert fsck_clean(img)[0]


@pytest.mark.peer
@pytest.mark.timeout(240)
async def test_guest_resets_device_during_writes(tmp_path, need_qemu):
    img = str(tmp_path / "stick.img")
    make_fat_image(img, 32, {"KEEP.TXT": b"keep me\n"})
    stick = MassStorage(img)
    port = free_port()
    guest = QemuGuest(redir_args(port))
    hosts: list = []
    stop = asyncio.Event()
    try:
        await guest.start()
        if (await guest.run("test -x /bin/usbreset"))[0]:
            pytest.skip("no usbreset in the guest (gcc -static missing)")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = asyncio.create_task(serve_stream(stick, reader, writer, stop=stop, on_host=hosts.append))
        await guest.wait_for_command("test -b /dev/sda", timeout=60)
        node = (await guest.check("ls /dev/bus/usb/001/ | tail -1")).strip()
        await guest.check("mount -t vfat /dev/sda /mnt")
        resets_before = hosts[0].stats.resets
        await guest.check("(dd if=/dev/urandom of=/mnt/BIG.BIN bs=65536 count=160 2>/dev/null && sync"
                          " && echo write-ok > /tmp/w) >/dev/null 2>&1 &")
        async with asyncio.timeout(60):
            while hosts[0].stats.bytes_from_guest < (2 << 20):
                await asyncio.sleep(0.05)
        await guest.check(f"usbreset /dev/bus/usb/001/{node}")
        assert hosts[0].stats.resets > resets_before
        await guest.wait_for_command("grep -q write-ok /tmp/w", timeout=90)
        written = (await guest.check("sha256sum /mnt/BIG.BIN")).split()[0]
        await guest.check("umount /mnt")
        stop.set()
        await asyncio.wait_for(session, 20)
    finally:
        stop.set()
        await guest.stop()
        await stick.close()
    ok, report = fsck_clean(img)
    assert ok, report
    assert sha256(fat_read(img, "BIG.BIN")) == written
    assert fat_read(img, "KEEP.TXT") == b"keep me\n"
