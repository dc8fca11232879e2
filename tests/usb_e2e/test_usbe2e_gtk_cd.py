"""spice-gtk's own USB redirection: its emulated CD-ROM (shared CD made from an ISO file) redirected
into aiospice; the built-in guest enumerates it and reads the ISO's files (ISO 9660 through SCSI
MMC over BOT, 2048-byte blocks) with matching hashes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from usbe2e_helpers import PASSWORD, served_guest, sha256, shell, usb_api, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from spicegtk import SYSTEM_PYTHON, have_spice_glib  # noqa: E402

GTK_SCRIPT = Path(__file__).with_name("gtk_shared_cd.py")

pytestmark = [pytest.mark.peer, pytest.mark.timeout(180),
              pytest.mark.skipif(not shutil.which("genisoimage"), reason="genisoimage missing")]


def make_iso(tmp_path: Path, files: dict[str, bytes]) -> Path:
    src = tmp_path / "isofiles"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    iso = tmp_path / "cd.iso"
    subprocess.run(["genisoimage", "-quiet", "-r", "-J", "-V", "AIOSPICE_CD", "-o", str(iso), str(src)], check=True)
    return iso


class GtkCd:
    """The SpiceClientGLib script as a subprocess; ``events`` collects its JSON lines."""

    def __init__(self, port: int, iso: Path, seconds: float = 120) -> None:
        self.cmd = [SYSTEM_PYTHON, str(GTK_SCRIPT), "127.0.0.1", str(port), PASSWORD, str(iso), str(seconds)]
        self.events: list[dict] = []

    async def __aenter__(self) -> GtkCd:
        self.proc = await asyncio.create_subprocess_exec(*self.cmd, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.DEVNULL)
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass

    def saw(self, event: str) -> dict | None:
        return next((e for e in self.events if e.get("event") == event), None)

    async def __aexit__(self, *exc) -> None:
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.wait_for(self.task, 5)


@pytest.mark.skipif(not have_spice_glib(), reason="SpiceClientGLib missing")
async def test_spicegtk_shared_cd_into_builtin_guest(tmp_path):
    files = {"hello.txt": b"hello from the ISO\n", "big.bin": os.urandom(3 << 20)}
    iso = make_iso(tmp_path, files)
    async with served_guest() as server:
        guest = server.guest
        async with GtkCd(server.ports["plain"], iso) as gtk:
            await wait_until(lambda: gtk.saw("redirected") or gtk.saw("redirect-failed"), 60)
            assert gtk.saw("redirected"), gtk.events
            t0 = time.monotonic()
            await wait_until(lambda: server.usb.subsystem.volumes, 60)
            mounted = time.monotonic() - t0
            rows = await usb_api(server)
            assert len(rows) == 1 and rows[0]["driver"] == "usb-storage" and rows[0]["mounted"], rows
            port = rows[0]["port"]
            info = server.usb.subsystem.info(port)
            drive = info.driver
            assert drive.peripheral == 5 and drive.block_size == 2048 and drive.read_only
            text = "".join(await shell(guest, "ls /"))
            assert "HELLO.TXT" in text.upper() and "BIG.BIN" in text.upper(), text
            assert "hello from the ISO" in "".join(await shell(guest, f"cat {port}:/hello.txt"))
            vol = server.usb.subsystem.volume(port)
            names = {e.name.lower(): e.name for e in await vol.listdir("/")}
            t1 = time.monotonic()
            data = await server.usb.subsystem.read_file(port, "/" + names["big.bin"])
            secs = time.monotonic() - t1
            assert sha256(data) == sha256(files["big.bin"])
            assert sha256(await server.usb.subsystem.read_file(port, "/" + names["hello.txt"])) == \
                sha256(files["hello.txt"])
            print(f"\nspice-gtk shared CD -> aiospice: mounted {mounted:.2f} s after redirect, "
                  f"{len(data) / secs / (1 << 20):.1f} MiB/s file read")


@pytest.mark.skipif(not have_spice_glib(), reason="SpiceClientGLib missing")
async def test_spicegtk_shared_cd_refused_by_filter(tmp_path):
    iso = make_iso(tmp_path, {"a.txt": b"a\n"})
    async with served_guest(usb_filter="0x08,-1,-1,-1,0|-1,-1,-1,-1,1") as server:  # no mass storage
        async with GtkCd(server.ports["plain"], iso) as gtk:
            err = await wait_until(lambda: gtk.saw("device-error"), 60)
            assert "rejected" in err["error"], gtk.events  # spice-gtk got our filter_reject
            assert not server.usb.plugged and not server.usb.subsystem.devices()
