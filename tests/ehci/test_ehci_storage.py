"""Mass storage through EHCI: FAT (pyfatfs) read/write checked by fsck.vfat and mtools, ISO 9660
read-only, hot-unplug during bulk transfers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess

import pytest
from ehci_helpers import LoopbackDevice

from usbredir.devices.storage import MassStorage
from usbredir.guest.hcd import UsbError
from usbredir.guest.subsystem import UsbSubsystem

pytestmark = pytest.mark.skipif(not (shutil.which("mkfs.vfat") and shutil.which("mcopy")),
                                reason="dosfstools/mtools missing")


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def make_fat(tmp_path, size_kib: int = 16384, files: dict[str, bytes] | None = None) -> str:
    img = str(tmp_path / "stick.img")
    subprocess.run(["mkfs.vfat", "-C", img, str(size_kib)], check=True, capture_output=True)
    for name, data in (files or {}).items():
        src = tmp_path / name.replace("/", "_")
        src.write_bytes(data)
        if "/" in name:
            subprocess.run(["mmd", "-i", img, "::" + name.rsplit("/", 1)[0]], check=False, capture_output=True)
        subprocess.run(["mcopy", "-i", img, str(src), "::" + name], check=True, capture_output=True)
    return img


async def test_fat_stick_list_read_write_then_fsck_and_mtools(tmp_path):
    big = os.urandom(300_000)
    small = b"hello from the host\n"
    img = make_fat(tmp_path, files={"BIG.BIN": big, "DOCS/README.TXT": small})
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    stick = MassStorage(img)
    try:
        port = usb.attach(stick)
        vol = await usb.wait_mounted(port)
        assert vol.kind == "fat" and not vol.read_only
        names = {e.name: e for e in await usb.listdir(port, "/")}
        assert names["BIG.BIN"].size == len(big) and names["DOCS"].is_dir
        assert [e.name for e in await usb.listdir(port, "/DOCS")] == ["README.TXT"]
        assert sha(await usb.read_file(port, "/BIG.BIN")) == sha(big)
        assert await usb.read_file(port, "/DOCS/README.TXT") == small
        written = os.urandom(123_457)
        await usb.write_file(port, "/written.bin", written)
        assert sha(await usb.read_file(port, "/written.bin")) == sha(written)
        assert await usb.copy(port, "/DOCS/README.TXT", port, "/COPY.TXT") == len(small)
        row = next(r for r in usb.rows() if r["port"] == port)
        assert row["driver"] == "usb-storage" and row["bytes"] > len(big) + len(written)
        await usb.eject(port)
        assert port not in usb.volumes
    finally:
        await usb.close()
        await stick.close()
    fsck = subprocess.run(["fsck.vfat", "-n", img], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    out = tmp_path / "out.bin"
    subprocess.run(["mcopy", "-n", "-i", img, "::written.bin", str(out)], check=True, capture_output=True)
    assert sha(out.read_bytes()) == sha(written)
    copy = subprocess.run(["mtype", "-i", img, "::COPY.TXT"], check=True, capture_output=True).stdout
    assert copy == small


@pytest.mark.parametrize("size_kib", [1440, 8192, 65536])  # FAT12, FAT12 near the FAT16 limit, FAT16
async def test_fat_types_read_and_write(tmp_path, size_kib):
    data = os.urandom(150_000)
    img = make_fat(tmp_path, size_kib, {"DATA.BIN": data})
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    stick = MassStorage(img)
    try:
        port = usb.attach(stick)
        await usb.wait_mounted(port)
        assert sha(await usb.read_file(port, "/DATA.BIN")) == sha(data)
        await usb.write_file(port, "/OUT.BIN", data[::-1])
        await usb.eject(port)
    finally:
        await usb.close()
        await stick.close()
    assert subprocess.run(["fsck.vfat", "-n", img], capture_output=True).returncode == 0
    out = subprocess.run(["mtype", "-i", img, "::OUT.BIN"], check=True, capture_output=True).stdout
    assert out == data[::-1]


@pytest.mark.skipif(not shutil.which("genisoimage"), reason="genisoimage missing")
async def test_iso9660_image_is_mounted_read_only(tmp_path):
    src = tmp_path / "cd"
    (src / "sub").mkdir(parents=True)
    payload = os.urandom(70_000)
    (src / "Long File Name.dat").write_bytes(payload)
    (src / "sub" / "a.txt").write_bytes(b"inside\n")
    iso = str(tmp_path / "cd.iso")
    subprocess.run(["genisoimage", "-quiet", "-J", "-o", iso, str(src)], check=True, capture_output=True)
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    disk = MassStorage(iso, read_only=True)
    try:
        port = usb.attach(disk)
        vol = await usb.wait_mounted(port)
        assert vol.kind == "iso9660" and vol.joliet
        names = sorted(e.name for e in await usb.listdir(port, "/"))
        assert names == ["Long File Name.dat", "sub"]
        assert sha(await usb.read_file(port, "/Long File Name.dat")) == sha(payload)
        assert await usb.read_file(port, "/sub/a.txt") == b"inside\n"
        with pytest.raises(OSError):
            await usb.write_file(port, "/x.txt", b"no")
    finally:
        await usb.close()
        await disk.close()


async def test_unplug_during_pending_bulk_transfer_cancels_it():
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    dev = LoopbackDevice()
    try:
        port = usb.attach(dev)
        await usb.wait_for(lambda s: port in s.core.devices and s.core.devices[port].state == "configured")
        pipe = usb.hcd.open_bulk(usb.info(port).handle, 0x85, 512)
        xfer = asyncio.ensure_future(usb.hcd.bulk(pipe, length=4096, timeout=None))
        await asyncio.wait_for(dev.blocked.wait(), 2)
        assert usb.controller.packets and usb.runtime.tasks  # in flight at the device
        usb.detach(port)
        with pytest.raises(UsbError) as err:
            await asyncio.wait_for(xfer, 2)
        assert err.value.kind in ("gone", "xact")  # XactErr from the controller or the driver noticing first
        await usb.wait_for(lambda s: port not in s.core.devices)
        await asyncio.sleep(0)
        assert dev.cancelled == 1 and not usb.controller.packets and not usb.runtime.tasks
    finally:
        await usb.close()


async def test_unplug_stick_during_file_read_then_replug(tmp_path):
    data = os.urandom(6 << 20)
    img = make_fat(tmp_path, 32768, {"LARGE.BIN": data})
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    stick = MassStorage(img)
    try:
        port = usb.attach(stick)
        await usb.wait_mounted(port)
        info = usb.info(port)
        start = info.bytes_moved
        read = asyncio.ensure_future(usb.read_file(port, "/LARGE.BIN"))
        while info.bytes_moved < start + (1 << 20) and not read.done():
            await asyncio.sleep(0.002)
        usb.detach(port)
        with pytest.raises(Exception):  # noqa: B017 - the read must fail, whichever layer notices
            await asyncio.wait_for(read, 10)
        await usb.wait_for(lambda s: port not in s.core.devices and port not in s.volumes)
        await stick.close()
        stick = MassStorage(img)
        port = usb.attach(stick)
        await usb.wait_mounted(port)
        assert sha(await usb.read_file(port, "/LARGE.BIN")) == sha(data)
    finally:
        await usb.close()
        await stick.close()


async def test_scsi_errors_and_bot_reset_recovery(tmp_path):
    img = make_fat(tmp_path, 2048, {"A.TXT": b"abc"})
    usb = UsbSubsystem(debounce=0.001, automount=False)
    await usb.start()
    stick = MassStorage(img)
    try:
        from usbredir.guest.storage import ScsiError

        port = usb.attach(stick)
        await usb.wait_for(lambda s: port in s.core.devices and s.core.devices[port].state == "configured")
        drive = usb.info(port).driver
        first = await drive.read_blocks(0, 1)
        with pytest.raises(ScsiError) as err:  # beyond the medium: CHECK CONDITION + REQUEST SENSE
            await drive.read_blocks(drive.blocks + 5, 1)
        assert err.value.sense[2] & 0xF == 0x5  # ILLEGAL REQUEST
        assert await drive.read_blocks(0, 1) == first
        # an invalid CBW halts both bulk endpoints (BOT 6.6.1) until Reset Recovery
        with pytest.raises(UsbError) as err:
            await usb.hcd.bulk(drive.pipe_out, b"not a CBW")
        assert err.value.kind == "stall"
        with pytest.raises((UsbError, ScsiError)):
            await drive.command(bytes(6))
        await drive.reset_recovery()
        assert await drive.read_blocks(0, 1) == first
    finally:
        await usb.close()
        await stick.close()


async def test_corrupt_fat_with_cluster_loop_fails_instead_of_hanging(tmp_path):
    import io

    from usbredir.guest import volumes

    img = make_fat(tmp_path, 16384, {"DOCS/A.TXT": b"a"})
    # point the DOCS directory's cluster at itself in both FATs (an endless chain)
    raw = bytearray(open(img, "rb").read())
    fs = volumes._pyfatfs(io.BytesIO(bytes(raw)))
    cluster = fs.fs.root_dir.get_entry("DOCS").get_cluster()
    bpb = fs.fs.bpb_header
    fat_start = bpb["BPB_RsvdSecCnt"] * 512
    for i in range(bpb["BPB_NumFATs"]):
        off = fat_start + i * bpb["BPB_FATSz16"] * 512 + 2 * cluster
        raw[off:off + 2] = cluster.to_bytes(2, "little")
    open(img, "wb").write(raw)
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    stick = MassStorage(img)
    old = volumes.OP_READ_BUDGET
    volumes.OP_READ_BUDGET = 4 << 20
    try:
        port = usb.attach(stick)
        await usb.wait_mounted(port)
        with pytest.raises(OSError, match="corrupt volume"):
            await asyncio.wait_for(usb.listdir(port, "/DOCS"), 30)
        assert [e.name for e in await usb.listdir(port, "/")] == ["DOCS"]  # the volume still answers
    finally:
        volumes.OP_READ_BUDGET = old
        await usb.close()
        await stick.close()
