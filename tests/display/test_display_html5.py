"""spice-html5 0.3 (Chromium) decodes what the html5 profile gets — LZ_RGB, fills, COPY_BITS — exactly,
on adversarial content (noise, UI, flat areas, overlapping copies)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest
from fakeguest import FakeGuest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import HTML5_DIR, browser_marks, chromium, html5_canvas_rgba, new_page, start_html5_site  # noqa: E402

from spice.display.caps import ImageType  # noqa: E402
from spice.guests.base import Rect  # noqa: E402
from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

W, H = 256, 160
pytestmark = [
    *browser_marks(),
    pytest.mark.skipif(not (HTML5_DIR / "spice_auto.html").exists(), reason="spice-html5 not installed"),
]

async def canvas_bgr(page) -> np.ndarray | None:
    rgba = await html5_canvas_rgba(page)
    return None if rgba is None else rgba[..., 2::-1]


async def test_spice_html5_decodes_lz_rgb_fills_and_copies_exactly():
    httpd, site = start_html5_site()
    guest = FakeGuest(W, H, seed=11)
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, extra={"allow_origin": [site]}))
    await srv.start()
    pipeline = srv.display_pipeline
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(f"{site}/spice_auto.html?host=127.0.0.1&port={srv.ports['plain']}&path=spice")

            async def matches() -> bool:
                bgr = await canvas_bgr(page)
                return bgr is not None and np.array_equal(bgr, guest.fb[..., :3])

            for _ in range(60):
                if await matches():
                    break
                await asyncio.sleep(0.25)
            assert await matches(), "first screen differs"
            for _ in range(3):
                for _ in range(8):
                    for _ in range(3):
                        guest.random_op()
                    guest.finish()
                    await asyncio.sleep(0.03)
                for _ in range(60):
                    if await matches():
                        break
                    await asyncio.sleep(0.25)
                assert await matches(), "canvas differs from the guest after updates"
            # a menu opening and closing: spice-html5 draws the recurring pixels from its cache
            box = Rect(40, 30, 200, 150)
            saved = guest.fb[30:150, 40:200].copy()
            guest.damage(box, "ui")
            opened = guest.fb[30:150, 40:200].copy()
            guest.finish()
            for k in range(6):
                await asyncio.sleep(0.05)
                guest.fb[30:150, 40:200] = saved if k % 2 == 0 else opened
                guest.report(box)
                guest.finish()
            for _ in range(60):
                if await matches():
                    break
                await asyncio.sleep(0.25)
            assert await matches(), "canvas differs after FROM_CACHE draws"
            assert pipeline.stats.cache_hits >= 3
            assert set(pipeline.stats.by_type) == {ImageType.LZ_RGB}
            assert not [x for x in page.console_lines if "unhandled" in x.lower() or "unknown" in x.lower()]
    finally:
        await srv.close()
        httpd.shutdown()
        httpd.server_close()


async def test_spice_html5_plays_an_mjpeg_stream_then_shows_the_lossless_picture():
    httpd, site = start_html5_site()
    guest = FakeGuest(W, H, seed=12)
    guest.fb[..., :3] = 60
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, extra={"allow_origin": [site]}))
    await srv.start()
    pipeline = srv.display_pipeline
    pipeline.lossy = True
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(f"{site}/spice_auto.html?host=127.0.0.1&port={srv.ports['plain']}&path=spice")

            async def matches() -> bool:
                bgr = await canvas_bgr(page)
                return bgr is not None and np.array_equal(bgr, guest.fb[..., :3])

            for _ in range(60):
                if await matches():
                    break
                await asyncio.sleep(0.25)
            assert await matches(), "first screen differs"
            video = Rect(40, 20, 200, 140)
            yy, xx = np.mgrid[0:120, 0:160]
            for t in range(30):
                v = guest.fb[20:140, 40:200]
                v[..., 0] = (xx + 3 * t) % 256
                v[..., 1] = (yy * 2 + t) % 256
                v[..., 2] = (xx + yy + 5 * t) % 256
                guest.report(video)
                guest.finish()
                await asyncio.sleep(0.04)
            assert pipeline.active_stream is not None
            for _ in range(60):
                if await matches():
                    break
                await asyncio.sleep(0.25)
            assert await matches(), "canvas differs after the stream ended"
            assert pipeline.stats.stream_frames >= 10 and pipeline.active_stream is None
    finally:
        await srv.close()
        httpd.shutdown()
        httpd.server_close()
