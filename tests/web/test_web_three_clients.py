"""Two browsers (our web client) and one spice-gtk client on one server at once see the same frame."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
import spicegtk  # noqa: E402
from browser import browser_marks, chromium, new_page  # noqa: E402
from test_web_browser import canvas_matches_guest, frozen_guest, url, wait_for  # noqa: E402

from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = [
    *browser_marks(180),
    pytest.mark.skipif(not spicegtk.have_spice_glib(), reason="SpiceClientGLib missing"),
]


async def login(page, srv, password: str) -> None:
    await page.goto(url(srv))
    await page.wait_for_selector("#password-dialog[open]", timeout=10000)
    await page.fill("#password", password)
    await page.click("#password-ok")
    await wait_for(
        lambda: page.evaluate("document.getElementById('status').dataset.state === 'connected'"),
        what="browser connected",
    )


async def test_two_browsers_and_spice_gtk_see_the_same_frame(tmp_path):
    srv = SpiceServer(frozen_guest(), ServerConfig(port=0, password="pw"))
    await srv.start()
    guest = srv.guest
    w, h = guest.size
    try:
        async with chromium() as browser:
            pages = [await new_page(browser), await new_page(browser)]
            for page in pages:
                await login(page, srv, "pw")
            peak = {"sessions": 0}

            async def watch() -> None:
                while True:
                    peak["sessions"] = max(peak["sessions"], srv.stats.sessions_open)
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            dump = tmp_path / "gtk.raw"
            rep = await spicegtk.gtk_client(
                f"spice://127.0.0.1:{srv.ports['plain']}",
                "pw",
                tmp_path,
                "--type",
                "echo three\n",
                "--dump",
                str(dump),
                "--settle",
                "2",
            )
            watcher.cancel()
            assert not rep["errors"], rep
            assert peak["sessions"] == 3
            assert "three" in guest.terminal.lines[:-1]  # spice-gtk's typing reached the guest
            gtk = spicegtk.read_dump(dump, w, h)
            assert np.array_equal(gtk[..., :3], guest.framebuffer[..., :3])  # spice-gtk: exact frame
            for page in pages:  # both browsers: the same frame, exactly
                await wait_for(lambda p=page: canvas_matches_guest(p, guest), what="browser frame")
            print(
                "types per browser:",
                [await p.evaluate("window.aiospice.stats().display.byType") for p in pages],
            )
    finally:
        await srv.close()
