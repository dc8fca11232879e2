"""`aiospice usb share spice+tls://` verifies the server: refused without the CA that signed it,
connected with `--ca-file` (the stick is enumerated in the guest), `--insecure` only on request."""

from __future__ import annotations

import shutil

import pytest
from usbe2e_helpers import Share, make_fat_image, served_guest, usb_api, wait_until

from spice.certs import generate

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not shutil.which("mkfs.vfat"), reason="dosfstools missing")]


async def test_share_over_tls_verifies_the_server_certificate(tmp_path):
    certs = generate(tmp_path / "certs", ["127.0.0.1", "localhost"])
    img = tmp_path / "stick.img"
    make_fat_image(img, 16, {"A.TXT": b"tls\n"})
    async with served_guest(tls_port=0, certs_dir=tmp_path / "certs") as server:
        target = f"spice+tls://127.0.0.1:{server.ports['tls']}"

        unverified = Share(target, "--storage", str(img), "-q")
        await unverified.start()
        assert unverified.proc is not None
        rc = await unverified.proc.wait()
        out = await unverified.stop()
        assert rc != 0, out
        assert "certificate" in out.lower(), out
        assert await usb_api(server) == []

        async with Share(target, "--ca-file", str(certs["ca-cert.pem"]), "--storage", str(img), "-q"):
            await wait_until(lambda: server.usb is not None
                             and [r for r in server.usb.rows() if r.get("mounted")], 20)
            rows = await usb_api(server)
            assert len(rows) == 1 and rows[0]["state"] == "configured" and rows[0]["id"] == "1209:0001", rows
