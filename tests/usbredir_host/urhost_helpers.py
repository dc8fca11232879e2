"""Helpers for the usb-host tests: FAT images, free ports, fsck, hashes (imported by name: unique module)."""

from __future__ import annotations

import os
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
