"""Benchmark: sequential read/write MB/s of the virtual stick inside the QEMU guest (busybox dd).

Printed for: our stick over plain usbredir/TCP (`aiospice usb share --to`), the same over SPICE
(`aiospice usb share spice://` into QEMU's libspice-server), and QEMU's own emulated usb-storage
on the same image as the reference, all in the same run.  Sizes: $AIOSPICE_BENCH_MB (default 16, the
short version README and CI promise; 64 with AIOSPICE_SOAK=1)
each way.  Run: ``python3 -m usbredir.share --bench`` or ``pytest -m bench -s``.
"""

from __future__ import annotations

import os
import re

import pytest
from urhost_helpers import free_port, kill_share, redir_args, start_share, stop_share

from tests.peers.qemu_guest import QemuGuest

pytestmark = [pytest.mark.bench, pytest.mark.peer, pytest.mark.timeout(900)]
MB = int(os.environ.get("AIOSPICE_BENCH_MB") or (64 if os.environ.get("AIOSPICE_SOAK") else 16))
REC_RE = re.compile(r"(\d+)\+(\d+) records (in|out)")


async def guest_dd(guest: QemuGuest, cmd: str) -> tuple[float, float]:
    """Run dd in the guest; returns (MiB moved by record count, seconds by the guest's /proc/uptime)."""
    out = await guest.check(f"cat /proc/uptime; {cmd} 2>&1; cat /proc/uptime", timeout=600)
    lines = out.strip().splitlines()
    t0, t1 = float(lines[0].split()[0]), float(lines[-1].split()[0])
    recs = [m for m in REC_RE.finditer(out) if m.group(3) == "out"]
    assert recs, out
    full, partial = int(recs[-1].group(1)), int(recs[-1].group(2))
    assert partial == 0, out
    return float(full), max(t1 - t0, 0.01)


async def measure(guest: QemuGuest, dev: str) -> tuple[float, float]:
    await guest.wait_for_command(f"test -b {dev}", timeout=60)
    mib, secs = await guest_dd(guest, f"dd if=/dev/zero of={dev} bs=1M count={MB} conv=fsync")
    write = mib / secs
    await guest.check("sync; echo 3 > /proc/sys/vm/drop_caches")
    mib, secs = await guest_dd(guest, f"dd if={dev} of=/dev/null bs=1M count={MB}")
    return mib / secs, write


async def test_bench_stick_read_write(tmp_path, need_qemu):
    img = str(tmp_path / "bench.img")
    with open(img, "wb") as f:
        f.truncate((MB + 8) << 20)
    results: dict[str, tuple[float, float]] = {}

    # 1. plain usbredir over TCP
    port = free_port()
    guest = QemuGuest(redir_args(port))
    share = None
    try:
        await guest.start()
        share = await start_share("--to", f"127.0.0.1:{port}", "--storage", img, "--quiet")
        results["aiospice usb share --to (usbredir/TCP)"] = await measure(guest, "/dev/sda")
        rc, log = await stop_share(share)
        assert rc == 0, log
    finally:
        await kill_share(share)
        await guest.stop()

    # 2. through QEMU's SPICE server
    port = free_port()
    guest = QemuGuest(["-spice", f"port={port},addr=127.0.0.1,disable-ticketing=on",
                       "-chardev", "spicevmc,name=usbredir,id=ur0",
                       "-device", "usb-redir,chardev=ur0,id=redir0,bus=ehci.0"])
    share = None
    try:
        await guest.start()
        share = await start_share(f"spice://127.0.0.1:{port}", "--storage", img, "--quiet")
        results["aiospice usb share spice:// (libspice-server)"] = await measure(guest, "/dev/sda")
        rc, log = await stop_share(share)
        assert rc == 0, log
    finally:
        await kill_share(share)
        await guest.stop()

    # 3. reference: QEMU's own emulated usb-storage on the same image
    guest = QemuGuest(["-drive", f"if=none,id=stick,file={img},format=raw,cache=writeback",
                       "-device", "usb-storage,bus=ehci.0,drive=stick"])
    try:
        await guest.start()
        results["reference: QEMU usb-storage (in-process C)"] = await measure(guest, "/dev/sda")
    finally:
        await guest.stop()

    accel = guest.accel
    lines = [f"virtual stick, {MB} MiB sequential each way, busybox dd bs=1M inside the QEMU guest ({accel}):",
             f"  {'path':48s} {'read MB/s':>10s} {'write MB/s':>11s}"]
    for name, (rd, wr) in results.items():
        lines.append(f"  {name:48s} {rd * 1.048576:10.1f} {wr * 1.048576:11.1f}")
    print("\n" + "\n".join(lines))
    assert all(rd > 0 and wr > 0 for rd, wr in results.values())
