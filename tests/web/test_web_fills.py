"""Our web client draws batched DRAW_FILLs (RECTS clips) pixel-exactly: the many-small-fills scene."""

from __future__ import annotations

import sys
from pathlib import Path

from test_web_browser import canvas_matches_guest, open_client, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import browser_marks, chromium  # noqa: E402
from scenes import many_fills_guest  # noqa: E402

from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = browser_marks()


async def test_browser_draws_grouped_fills_exactly(monkeypatch):
    guest, grouped = many_fills_guest(monkeypatch, 640, 480)
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True))
    await srv.start()
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            await wait_for(lambda: len(grouped) > 200, timeout=30, what="grouped fills sent")
            await guest.stop()
            await wait_for(lambda: canvas_matches_guest(page, guest), timeout=30, what="canvas == framebuffer")
            errors = [line for line in page.console_lines if line.startswith(("error", "pageerror"))]
            assert not errors, errors
    finally:
        await srv.close()
    assert sum(grouped) > 3 * len(grouped)
