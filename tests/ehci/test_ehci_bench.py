"""Benchmarks (print figures, assert only correctness): stick throughput through EHCI and the
guest driver, FAT file throughput, attach -> enumerated latency."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time

import pytest
from ehci_helpers import LoopbackDevice

from usbredir.devices.storage import MassStorage
from usbredir.guest.subsystem import UsbSubsystem

pytestmark = [pytest.mark.bench,
              pytest.mark.skipif(not shutil.which("mkfs.vfat"), reason="dosfstools missing")]


async def test_bench_stick_throughput_and_enumeration_latency(tmp_path):
    mib = int(os.environ.get("AIOSPICE_EHCI_BENCH_MIB", "16"))
    img = str(tmp_path / "bench.img")
    subprocess.run(["mkfs.vfat", "-C", img, str((mib * 2 + 8) * 1024)], check=True, capture_output=True)
    usb = UsbSubsystem(debounce=0.0, reset_time=0.0)
    await usb.start()
    stick = MassStorage(img)
    try:
        # attach -> enumerated (driver bound) latency: root port and behind the TT hub
        lat = {}
        for where in ("2", None):
            dev = LoopbackDevice()
            t0 = time.perf_counter()
            port = usb.attach(dev, where)
            await usb.wait_for(lambda s, p=port: p in s.core.devices and s.core.devices[p].state == "configured")
            lat["root port" if where else "hub port"] = (time.perf_counter() - t0) * 1000
        port = usb.attach(stick)
        await usb.wait_mounted(port)
        drive = usb.info(port).driver
        data = os.urandom(mib << 20)
        base = drive.blocks - (len(data) // drive.block_size) - 16  # the tail: clear of the FAT area
        t0 = time.perf_counter()
        await drive.write_blocks(base, data)
        t_w = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = await drive.read_blocks(base, len(data) // drive.block_size)
        t_r = time.perf_counter() - t0
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        fdata = data[: 4 << 20]
        t0 = time.perf_counter()
        await usb.write_file(port, "/bench.bin", fdata)
        t_fw = time.perf_counter() - t0
        vol = usb.volumes[port]
        vol.file._cache.clear()  # cold read: every block comes through EHCI again
        t0 = time.perf_counter()
        fback = await usb.read_file(port, "/bench.bin")
        t_fr = time.perf_counter() - t0
        assert fback == fdata
        c = usb.controller
        print(f"\nEHCI bench: block write {mib / t_w:.1f} MB/s, block read {mib / t_r:.1f} MB/s "
              f"({mib} MiB, 256 KiB SCSI commands, 20 KiB qTDs)")
        print(f"EHCI bench: FAT file write {4 / t_fw:.1f} MB/s, FAT file read {4 / t_fr:.1f} MB/s (4 MiB, pyfatfs)")
        print("EHCI bench: attach->configured " + ", ".join(f"{k} {v:.1f} ms" for k, v in lat.items()))
        print(f"EHCI bench: controller stats {c.stats}")
        await asyncio.sleep(0)
    finally:
        await usb.close()
        await stick.close()


async def test_bench_stick_through_usbredir(tmp_path):
    """The same stick exported by usbredir.host over TCP and redirected into the EHCI model."""
    from usbredir.guest_listener import GuestListener
    from usbredir.host import serve_stream

    mib = int(os.environ.get("AIOSPICE_EHCI_BENCH_MIB", "16"))
    img = str(tmp_path / "redir.img")
    subprocess.run(["mkfs.vfat", "-C", img, str((mib * 2 + 8) * 1024)], check=True, capture_output=True)
    usb = UsbSubsystem(debounce=0.0, reset_time=0.0, automount=False)
    await usb.start()
    listener = await GuestListener().start()
    stop = asyncio.Event()
    share = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        share = asyncio.create_task(serve_stream(MassStorage(img), reader, writer, stop=stop))
        t0 = time.perf_counter()
        port = usb.attach(await listener.next_device(timeout=10))
        await usb.wait_for(lambda s: port in s.core.devices and s.core.devices[port].state == "configured", 10)
        t_enum = (time.perf_counter() - t0) * 1000
        drive = usb.info(port).driver
        data = os.urandom(mib << 20)
        base = drive.blocks - len(data) // 512 - 16
        t0 = time.perf_counter()
        await drive.write_blocks(base, data)
        t_w = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = await drive.read_blocks(base, len(data) // 512)
        t_r = time.perf_counter() - t0
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        print(f"\nEHCI bench via usbredir/TCP: block write {mib / t_w:.1f} MB/s, block read {mib / t_r:.1f} MB/s, "
              f"attach->configured {t_enum:.1f} ms (hub port)")
    finally:
        stop.set()
        if share is not None:
            await asyncio.wait_for(share, 10)
        await usb.close()
        await listener.close()
