"""`aiospice serve --usbredir-listen/--usb-filter/--usb-channels` as a real process: a stick shared
with `usb share --to` (plain usbredir/TCP) and over SPICE shows in GET /api/v1/usb (password
protected); a device the filter refuses gets filter_reject, a log line, and never reaches the guest."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys

import pytest
from usbe2e_helpers import PASSWORD, ROOT, Share, http_get, make_fat_image, wait_until

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not shutil.which("mkfs.vfat"), reason="dosfstools missing")]


class Serve:
    def __init__(self, *args: str) -> None:
        self.args = args
        self.lines: list[str] = []

    async def __aenter__(self) -> Serve:
        env = dict(os.environ, PYTHONPATH=str(ROOT), AIOSPICE_PASSWORD=PASSWORD)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spice.cli", "serve", "--port", "0", "--size", "640x480", *self.args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self.ports: dict[str, int] = {}
        self._reader = asyncio.create_task(self._read())
        await wait_until(lambda: self.ports, 30)
        return self

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if "aiospice: serving" in line:
                self.ports = {k: int(v) for k, v in re.findall(r"(\w+) 127\.0\.0\.1:(\d+)", line)}

    async def api(self) -> list[dict]:
        status, body = await http_get(self.ports["plain"], "/api/v1/usb", PASSWORD)
        assert status == 200, body
        return json.loads(body)["devices"]

    async def __aexit__(self, *exc) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.wait_for(self._reader, 5)


async def test_serve_usbredir_listen_and_spice_channels(tmp_path):
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    make_fat_image(a, 8, {"A.TXT": b"a\n"})
    make_fat_image(b, 8, {"B.TXT": b"b\n"})
    async with Serve("--usbredir-listen", "0", "--usb-channels", "2") as srv:
        assert "usbredir" in srv.ports
        status, _ = await http_get(srv.ports["plain"], "/api/v1/usb")
        assert status == 401  # the server password guards the API
        async with Share("--to", f"127.0.0.1:{srv.ports['usbredir']}", "--storage", str(a)), \
                Share(f"spice://127.0.0.1:{srv.ports['plain']}", "--storage", str(b)):
            rows = await wait_until(lambda: _configured(srv, 2), 30)
            channels = sorted(r["channel"].split(":")[0] for r in rows)
            assert channels == ["spice", "tcp"]
            assert all(r["driver"] == "usb-storage" and r["id"] == "1209:0001" for r in rows)
        await wait_until(lambda: _count(srv, 0), 20)


async def test_filter_rejects_storage(tmp_path):
    img = tmp_path / "s.img"
    make_fat_image(img, 8, {})
    # allow HID only: a mass-storage stick is refused, a keyboard is taken
    async with Serve("--usb-filter", "0x03,-1,-1,-1,1|-1,-1,-1,-1,0") as srv:
        share = await Share(f"spice://127.0.0.1:{srv.ports['plain']}", "--storage", str(img), "--keyboard").start()
        try:
            rows = await wait_until(lambda: _configured(srv, 1), 30)
            assert rows[0]["driver"] == "hid-keyboard"
            await wait_until(lambda: any("rejecting redirected device" in line for line in srv.lines), 20)
            assert len(await srv.api()) == 1
        finally:
            out = await share.stop()
    assert "filter_reject" in out or "rejected" in out.lower(), out


async def _configured(srv: Serve, n: int):
    rows = await srv.api()
    return rows if len(rows) == n and all(r["state"] == "configured" for r in rows) else None


async def _count(srv: Serve, n: int) -> bool:
    return len(await srv.api()) == n
