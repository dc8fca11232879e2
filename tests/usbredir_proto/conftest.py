"""Fixtures: the libusbredirparser C harness, compiled at test time."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HARNESS_SRC = Path(__file__).with_name("harness.c")


@pytest.fixture(scope="session")
def harness(tmp_path_factory) -> Path:
    """Path of the compiled C harness (skips when gcc or libusbredirparser-dev is missing)."""
    if shutil.which("gcc") is None or not Path("/usr/include/usbredirparser.h").exists():
        pytest.skip("needs gcc and libusbredirparser-dev")
    exe = tmp_path_factory.mktemp("harness") / "harness"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(HARNESS_SRC), "-lusbredirparser"],
                   check=True, timeout=120)
    return exe
