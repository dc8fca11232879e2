"""`aiospice usb share spice://` with a virtual stick into the built-in guest: enumeration (API and
framebuffer text), ls, a guest read matching the original's hash, a guest write in the image after
eject (fsck clean), a filtered device refused."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from usbe2e_helpers import (
    Share,
    fat_read,
    fsck_clean,
    make_fat_image,
    served_guest,
    sha256,
    shell,
    usb_api,
    wait_until,
)

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not shutil.which("mkfs.vfat") or not shutil.which("mcopy"),
                                 reason="dosfstools/mtools missing")]


async def test_share_stick_over_spice(tmp_path):
    blob = os.urandom(300_000)
    img = tmp_path / "stick.img"
    make_fat_image(img, 16, {"BLOB.BIN": blob, "HELLO.TXT": b"hello from the stick\n"})
    async with served_guest() as server:
        guest = server.guest
        port = server.ports["plain"]
        share = Share(f"spice://127.0.0.1:{port}", "--storage", str(img))
        async with share:
            rows = await wait_until(lambda: usb_api(server) if server.usb.plugged else None)
            await wait_until(lambda: server.usb.subsystem.volumes, 30)
            rows = await usb_api(server)
            assert len(rows) == 1
            row = rows[0]
            assert row["channel"] == "spice:0" and row["driver"] == "usb-storage"
            assert row["state"] == "configured" and row["mounted"]
            usb_port = row["port"]
            await guest.settle()
            assert any(usb_port in str(r.get("port") if isinstance(r, dict) else r) for r in guest.panel.rows)
            out = await shell(guest, "lsusb")
            text = "".join(out)  # the terminal wraps long lines
            assert f"Port {usb_port}" in text and "1209:0001" in text and "usb-storage" in text, out
            out = await shell(guest, "ls /")
            assert "BLOB.BIN" in "".join(out) and "HELLO.TXT" in "".join(out), out
            out = await shell(guest, f"cat {usb_port}:/HELLO.TXT")
            assert "hello from the stick" in "".join(out), out
            data = await server.usb.subsystem.read_file(usb_port, "/BLOB.BIN")
            assert sha256(data) == sha256(blob)
            out = await shell(guest, "write /NOTE.TXT written by the guest")
            out = await shell(guest, "cp /BLOB.BIN /COPY.BIN")
            assert f"copied {len(blob)} bytes" in "".join(out), out
            # to the RAM folder and back under another name
            assert f"copied {len(blob)} bytes" in "".join(await shell(guest, f"cp {usb_port}:/BLOB.BIN ram:/B.BIN"))
            assert sha256(guest.ram_folder.files["B.BIN"]) == sha256(blob)
            assert "B.BIN" in "".join(await shell(guest, "ls ram:/"))
            assert f"copied {len(blob)} bytes" in "".join(await shell(guest, "cp ram:/B.BIN /FROMRAM.BIN"))
            out = await shell(guest, f"eject {usb_port}")
            assert "safe to remove" in "".join(out), out
            moved = (await usb_api(server))[0]["bytes"]
            assert moved > len(blob)
        log = await share.stop()
        # LZ4 both ways: the client compresses zero-filled sectors, the server FAT/zero writes
        m = re.search(r"spicevmc messages: sent (\d+) data \+ (\d+) lz4, received (\d+) data \+ (\d+) lz4", log)
        assert m, log
        assert int(m.group(2)) > 0 and int(m.group(4)) > 0, m.group(0)
        await wait_until(lambda: not server.usb.plugged)
        assert await usb_api(server) == []
    assert fat_read(img, "NOTE.TXT") == b"written by the guest\n"
    assert sha256(fat_read(img, "COPY.BIN")) == sha256(blob)
    assert sha256(fat_read(img, "FROMRAM.BIN")) == sha256(blob)
    ok, report = fsck_clean(img)
    assert ok, report
