"""Fixtures for the usb-host tests."""

from __future__ import annotations

import shutil

import pytest
from urhost_helpers import ROOT  # noqa: F401  (puts the repository root on sys.path)

from tests.peers.qemu_guest import qemu_available


@pytest.fixture
def need_qemu():
    why = qemu_available()
    if why:
        pytest.skip(why)
    for tool in ("mkfs.vfat", "mcopy", "fsck.fat"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} missing (dosfstools / mtools)")
