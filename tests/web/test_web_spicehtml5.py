"""The official spice-html5 0.3 client (Debian package), served from another local port, straight at our
SPICE port: no websockify.  Its canvas must show the guest's pixels exactly."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import HTML5_DIR, browser_marks, chromium, html5_canvas_rgba, new_page, start_html5_site  # noqa: E402
from test_web_browser import frozen_guest, wait_for  # noqa: E402

from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = [
    *browser_marks(),
    pytest.mark.skipif(not (HTML5_DIR / "spice_auto.html").exists(), reason="spice-html5 not installed"),
]

@pytest.fixture
def html5_site():
    """spice-html5's files on an ephemeral local HTTP port (another origin than the SPICE port)."""
    httpd, site = start_html5_site()
    yield site
    httpd.shutdown()
    httpd.server_close()


async def html5_rgb(page):
    rgba = await html5_canvas_rgba(page)
    return None if rgba is None else rgba[..., :3]


async def test_spice_html5_shows_guest_pixels_directly(html5_site):
    import numpy as np

    srv = SpiceServer(
        frozen_guest(),
        ServerConfig(port=0, password="html5-pw", extra={"allow_origin": [html5_site]}),
    )
    await srv.start()
    port = srv.ports["plain"]
    guest = srv.guest
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(
                f"{html5_site}/spice_auto.html?host=127.0.0.1&port={port}&path=spice&password=html5-pw"
            )

            async def same() -> bool:
                rgb = await html5_rgb(page)
                return rgb is not None and np.array_equal(rgb, guest.framebuffer[..., 2::-1])

            await wait_for(same, timeout=30, what="spice-html5 canvas == guest framebuffer")
            guest.terminal.write_line("from html5")
            await wait_for(same, timeout=30, what="spice-html5 canvas after an update")
            # Keys typed into spice-html5 reach the guest (it sends KEY_DOWN/UP scancodes).
            await page.focus("#spice_surface_0")
            await page.keyboard.type("echo html5ok")
            await page.keyboard.press("Enter")
            await wait_for(lambda: "html5ok" in guest.terminal.lines[:-1], what="typed text in guest")
            errors = [line for line in page.console_lines if "unhandled image type" in line.lower()]
            assert not errors, errors
    finally:
        await srv.close()


async def test_spice_html5_page_from_foreign_origin_is_refused_without_allow_origin(html5_site):
    srv = SpiceServer(frozen_guest(), ServerConfig(port=0, disable_ticketing=True))
    await srv.start()
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(
                f"{html5_site}/spice_auto.html?host=127.0.0.1&port={srv.ports['plain']}&path=spice"
            )
            await asyncio.sleep(2)
            assert await page.evaluate("document.getElementById('spice_surface_0')") is None
            assert srv.stats.sessions_total == 0
    finally:
        await srv.close()
