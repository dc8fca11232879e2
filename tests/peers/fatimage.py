"""FAT disk images for USB storage tests: build with dosfstools + mtools, read back, fsck, hash.

One copy for every test directory (``from tests.peers.fatimage import make_fat_image, ...``)."""

from __future__ import annotations

import hashlib
import os
import subprocess


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_fat_image(path: str | os.PathLike, size_mb: int = 32, files: dict[str, bytes] | None = None) -> None:
    """A FAT image of ``size_mb`` MiB (mkfs.vfat, label AIOSPICE, no partition table) holding ``files``
    (copied in with mtools)."""
    path = os.fspath(path)
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.vfat", "-n", "AIOSPICE", path], check=True, capture_output=True)
    for name, data in (files or {}).items():
        src = path + ".src"
        with open(src, "wb") as f:
            f.write(data)
        subprocess.run(["mcopy", "-i", path, src, f"::{name}"], check=True, capture_output=True)
        os.unlink(src)


def fat_read(path: str | os.PathLike, name: str) -> bytes:
    """The contents of ``name`` in the image's root directory (mtype)."""
    return subprocess.run(["mtype", "-i", os.fspath(path), f"::{name}"], check=True, capture_output=True).stdout


def fsck_clean(path: str | os.PathLike) -> tuple[bool, str]:
    """``fsck.fat -n`` verdict (True = clean) and its report."""
    r = subprocess.run(["fsck.fat", "-n", os.fspath(path)], capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr
