"""Helpers for the usb-host tests: FAT images, free ports, fsck, hashes (imported by name: unique module)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_fat_image(path: str, size_mb: int = 32, files: dict[str, bytes] | None = None) -> None:
    """A FAT image (mkfs.vfat, no partition table) holding ``files`` (copied with mtools)."""
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.vfat", "-n", "AIOSPICE", path], check=True, capture_output=True)
    for name, data in (files or {}).items():
        src = path + ".src"
        with open(src, "wb") as f:
            f.write(data)
        subprocess.run(["mcopy", "-i", path, src, f"::{name}"], check=True, capture_output=True)
        os.unlink(src)


def fat_read(path: str, name: str) -> bytes:
    return subprocess.run(["mtype", "-i", path, f"::{name}"], check=True, capture_output=True).stdout


def fsck_clean(path: str) -> tuple[bool, str]:
    r = subprocess.run(["fsck.fat", "-n", path], capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
