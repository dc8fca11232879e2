"""`aiospice usb share` against QEMU's usb-redir (the reference usb-guest) with a Linux guest."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from conftest import ROOT, fat_read, free_port, fsck_clean, make_fat_image, sha256

from tests.peers.qemu_guest import QemuGuest

pytestmark = [pytest.mark.peer, pytest.mark.timeout(240)]


def redir_args(port: int, *, server: bool = True) -> list[str]:
    mode = "server=on,wait=off" if server else "reconnect=1"
    return ["-chardev", f"socket,id=ur,host=127.0.0.1,port={port},{mode}",
            "-device", "usb-redir,chardev=ur,id=redir0,bus=ehci.0"]


async def start_share(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spice.cli", "usb", "share", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def stop_share(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(errors="replace")


async def test_storage_share_to_qemu(tmp_path, need_qemu):
    payload = os.urandom(3 << 20) + b"tail"
    img = str(tmp_path / "stick.img")
    make_fat_image(img, 32, {"DATA.BIN": payload})
    port = free_port()
    guest = QemuGuest(redir_args(port))
    share = None
    try:
        await guest.start()
        share = await start_share("--to", f"127.0.0.1:{port}", "--storage", img)
        await guest.wait_for_command("test -b /dev/sda", timeout=60)
        await guest.check("mount -t vfat /dev/sda /mnt")
        out = await guest.check("sha256sum /mnt/DATA.BIN")
        assert out.split()[0] == sha256(payload)
        await guest.check("dd if=/dev/urandom of=/mnt/NEW.BIN bs=4096 count=300 2>/dev/null")
        written = (await guest.check("sha256sum /mnt/NEW.BIN")).split()[0]
        await guest.check("umount /mnt")
        rc, log = await stop_share(share)
        assert rc == 0, log
        assert "device_disconnect" in log or "detached" in log, log
        # the guest saw the device go away
        await guest.wait_for_command("! test -b /dev/sda", timeout=30)
    finally:
        if share is not None and share.returncode is None:
            share.kill()
            await share.wait()
        await guest.stop()
    ok, report = fsck_clean(img)
    assert ok, report
    assert sha256(fat_read(img, "NEW.BIN")) == written
    assert fat_read(img, "DATA.BIN") == payload
