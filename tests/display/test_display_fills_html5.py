"""spice-html5 0.3 fills a DRAW_FILL's whole box whatever its clip: it gets plain fills, and its canvas
still equals the guest after frames of many same-coloured, overlapping fills."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest
from fakeguest import FakeGuest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import HTML5_DIR, browser_marks, chromium, html5_canvas_rgba, new_page, start_html5_site  # noqa: E402

from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

W, H = 256, 160
pytestmark = [
    *browser_marks(),
    pytest.mark.skipif(not (HTML5_DIR / "spice_auto.html").exists(), reason="spice-html5 not installed"),
]


async def test_spice_html5_gets_plain_fills_and_shows_the_guest_exactly():
    httpd, site = start_html5_site()
    guest = FakeGuest(W, H, seed=21)
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, extra={"allow_origin": [site]}))
    await srv.start()
    palette = [0xFF204060, 0xFFE0A000, 0xFF00C0C0]
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(f"{site}/spice_auto.html?host=127.0.0.1&port={srv.ports['plain']}&path=spice")

            async def matches() -> bool:
                rgba = await html5_canvas_rgba(page)
                return rgba is not None and np.array_equal(rgba[..., 2::-1], guest.fb[..., :3])

            for _ in range(60):
                if await matches():
                    break
                await asyncio.sleep(0.25)
            assert await matches(), "first screen differs"
            for _ in range(10):
                for _ in range(30):
                    guest.fill(guest.rand_rect(40, 40), palette[int(guest.rng.integers(0, len(palette)))])
                guest.finish()
                await asyncio.sleep(0.03)
            for _ in range(60):
                if await matches():
                    break
                await asyncio.sleep(0.25)
            assert await matches(), "canvas differs from the guest after the fills"
    finally:
        await srv.close()
        httpd.shutdown()
        httpd.server_close()
