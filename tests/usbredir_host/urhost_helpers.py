"""Helpers for the usb-host tests: free ports, QEMU usb-redir arguments, the ``usb share`` CLI as a
subprocess; FAT images, fsck and hashes from tests/peers/fatimage.py (imported by name: unique module)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# FAT image helpers live in tests/peers/fatimage.py (shared with the other USB test directories)
from tests.peers.fatimage import fat_read, fsck_clean, make_fat_image, sha256  # noqa: E402,F401


def redir_args(port: int, *, server: bool = True) -> list[str]:
    mode = "server=on,wait=off" if server else "reconnect=1"
    return ["-chardev", f"socket,id=ur,host=127.0.0.1,port={port},{mode},nodelay=on",
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


async def kill_share(proc: asyncio.subprocess.Process | None) -> None:
    """Clean-up for a share that a failed test left running."""
    if proc is not None and proc.returncode is None:
        proc.kill()
        await proc.wait()
