"""spice-html5 0.3 (Chromium) decodes what the html5 profile gets — LZ_RGB, fills, COPY_BITS — exactly,
on adversarial content (noise, UI, flat areas, overlapping copies), and plays our MJPEG and VP8 streams."""

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


async def lossy_server(seed: int):
    """spice-html5's site, and a server of a flat guest that allows video streams to it."""
    httpd, site = start_html5_site()
    guest = FakeGuest(W, H, seed=seed)
    guest.fb[..., :3] = 60
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, extra={"allow_origin": [site]}))
    await srv.start()
    srv.display_pipeline.lossy = True
    return httpd, site, guest, srv


async def test_spice_html5_plays_an_mjpeg_stream_then_shows_the_lossless_picture():
    httpd, site, guest, srv = await lossy_server(12)
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


VIDEO_PIXELS_JS = """() => {
  const v = document.querySelector('video');
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(v, 0, 0);
  return {w: c.width, h: c.height, px: Array.from(ctx.getImageData(0, 0, c.width, c.height).data)};
}"""


async def test_spice_html5_plays_our_vp8_stream():
    """spice-html5 announces VP8 when Chromium's MediaSource takes WebM/VP8; it wraps our raw VP8 frames
    in WebM clusters for a <video> element over its canvas: that element shows our frames."""
    from spice.display import video

    if not video.available(video.VP8):
        pytest.skip("no VP8 encoder (PyAV)")
    httpd, site, guest, srv = await lossy_server(13)
    pipeline = srv.display_pipeline
    pipeline.video_codecs = (video.VP8, video.MJPEG)
    frames, shown = [], None
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(f"{site}/spice_auto.html?host=127.0.0.1&port={srv.ports['plain']}&path=spice")
            for _ in range(60):
                bgr = await canvas_bgr(page)
                if bgr is not None and np.array_equal(bgr, guest.fb[..., :3]):
                    break
                await asyncio.sleep(0.25)
            assert pipeline.clients and video.VP8 in pipeline.clients[0].caps.video_codecs
            yy, xx = np.mgrid[0:120, 0:160]
            for t in range(100):  # 4 s of video; its picture is read from the <video> element meanwhile
                v = guest.fb[20:140, 40:200]
                v[..., 0] = (xx + 7 * t) % 256
                v[..., 1] = (yy * 2 + 3 * t) % 256
                v[..., 2] = (xx + yy + 11 * t) % 256
                frames.append(guest.fb[..., :3].copy())
                guest.report(Rect(40, 20, 200, 140))
                guest.finish()
                await asyncio.sleep(0.04)
                if t >= 60 and t % 5 == 0 and shown is None:
                    got = await page.evaluate(VIDEO_PIXELS_JS)
                    if got is not None:
                        shown = np.array(got["px"], np.uint8).reshape(got["h"], got["w"], 4)
            client = pipeline.clients[0]
            assert not client.streams_refused and client._stream_create.codec == video.VP8
            r = pipeline.active_stream.rect  # (cell-aligned: a little more than the drawn area)
    finally:
        await srv.close()
        httpd.shutdown()
        httpd.server_close()
    assert shown is not None, "no <video> picture: " + " | ".join(page.console_lines[-5:])
    assert shown.shape[:2] == (r.height, r.width)
    errors = [np.abs(shown[..., 2::-1].astype(int) - f[r.top:r.bottom, r.left:r.right]).mean()
              for f in frames]  # (RGBA -> BGR)
    assert min(errors) < 12, min(errors)
    assert int(np.argmin(errors)) >= 12  # a frame of the stream, not the picture before it
