"""Our web client's video streams in Chromium: VP8 and H.264 decoded by WebCodecs (the caps it announces
follow what the browser decodes), STREAM_REPORTs that feed the server's adaptation, a codec the browser
turns out not to decode refused so the server goes on in the next one, and the lossless picture after."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import browser_marks, chromium, new_page  # noqa: E402
from test_web_browser import H, W, canvas_matches_guest, canvas_rgb, guest_rgb, url, wait_for  # noqa: E402

from spice.display import video  # noqa: E402
from spice.guests.builtin import BuiltinGuest  # noqa: E402
from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = browser_marks()

#: a page whose WebCodecs refuses to configure an H.264 decoder (as a browser without that decoder does
#: once asked, though isConfigSupported said yes)
NO_H264 = """(() => {
  const configure = VideoDecoder.prototype.configure;
  VideoDecoder.prototype.configure = function (config) {
    if (String(config.codec).startsWith('avc1')) throw new DOMException('no H.264 decoder', 'NotSupportedError');
    return configure.call(this, config);
  };
})();"""


def video_guest() -> BuiltinGuest:
    return BuiltinGuest(width=W, height=H, workload="video-320x240", clock=lambda: datetime(2026, 1, 2, 3, 4, 5),
                        uptime=lambda: 42.0)


def reports(srv: SpiceServer) -> int:
    return sum(getattr(conn.channel, "stream_reports", 0) for conn in list(srv.connections))


async def shown_against_guest(page, guest, rect) -> float:
    """Smallest mean absolute difference of three canvas snapshots of ``rect`` against the guest's frame
    at that moment (lossy, and a frame or so behind: ~10; a wrong or flat picture: 30 and more)."""
    diffs = []
    for _ in range(3):
        now = guest_rgb(guest)[rect.top:rect.bottom, rect.left:rect.right].astype(int)
        shown = (await canvas_rgb(page))[rect.top:rect.bottom, rect.left:rect.right].astype(int)
        diffs.append(np.abs(shown - now).mean())
    return min(diffs)


@pytest.mark.parametrize("codec", [video.VP8, video.H264], ids=["vp8", "h264"])
async def test_inter_frame_stream_plays_in_webcodecs_with_reports(codec):
    """The server's order names only ``codec`` (``--video-codecs``): the browser announced it, decodes the
    stream with WebCodecs onto the canvas, answers the report window, and after the video the canvas is
    the guest's exact framebuffer again."""
    if not video.available(codec):
        pytest.skip(f"PyAV cannot encode {video.NAMES[codec]} here")
    guest = video_guest()
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, streaming="mjpeg", video_codecs=(codec,)))
    await srv.start()
    pipeline = srv.display_pipeline
    name = video.NAMES[codec].upper()
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(url(srv))
            await wait_for(lambda: pipeline.clients and pipeline.clients[0]._stream_create is not None,
                           what="a stream to the web client")
            client = pipeline.clients[0]
            assert {video.VP8, video.H264} <= client.caps.video_codecs
            assert client._stream_create.codec == codec
            r = client._stream_create.rect
            await wait_for(lambda: page.evaluate(f"(window.aiospice.display?.stats.byType.{name} || 0) >= 30"),
                           what=f"30 {name} frames drawn")
            assert await shown_against_guest(page, guest, r) < 16
            await wait_for(lambda: reports(srv) >= 3, what="stream reports at the server")
            assert client._stream_create.codec == codec  # the reports said all is well: no change of codec
            errors = [x for x in page.console_lines if x.startswith(("error", "pageerror", "warning"))]
            assert not errors, errors
            await guest.stop()
            await wait_for(lambda: canvas_matches_guest(page, guest), timeout=20, what="lossless picture after the video")
    finally:
        await srv.close()


async def test_a_codec_the_browser_cannot_decode_is_refused_and_the_next_plays():
    """WebCodecs says yes to H.264 but the decoder cannot be made: the client refuses the stream (a report
    with no frames and 0xffffffff drops) and the server goes on with MJPEG, the next in its order."""
    if not video.available(video.H264):
        pytest.skip("PyAV cannot encode H.264 here")
    guest = video_guest()
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, streaming="mjpeg",
                                          video_codecs=(video.H264, video.MJPEG)))
    await srv.start()
    pipeline = srv.display_pipeline
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.add_init_script(NO_H264)
            await page.goto(url(srv))
            await wait_for(lambda: pipeline.clients and pipeline.clients[0]._stream_create is not None
                           and pipeline.clients[0]._stream_create.codec == video.MJPEG, what="an MJPEG stream")
            client = pipeline.clients[0]
            assert video.H264 in client._refused_codecs
            await wait_for(lambda: page.evaluate("(window.aiospice.display?.stats.byType.MJPEG || 0) >= 20"),
                           what="20 MJPEG frames drawn")
            assert await shown_against_guest(page, guest, client._stream_create.rect) < 16
            assert any("cannot be decoded here" in x for x in page.console_lines)
    finally:
        await srv.close()


async def test_the_page_asks_for_its_preferred_codec():
    """``?video=vp8`` on the page's address: PREFERRED_VIDEO_CODEC_TYPE puts VP8 before the server's
    MJPEG-first order."""
    if not video.available(video.VP8):
        pytest.skip("PyAV cannot encode VP8 here")
    guest = video_guest()
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, streaming="mjpeg"))
    await srv.start()
    pipeline = srv.display_pipeline
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(url(srv) + "?video=vp8")
            await wait_for(lambda: pipeline.clients and pipeline.clients[0]._stream_create is not None,
                           what="a stream to the web client")
            assert pipeline.clients[0]._stream_create.codec == video.VP8
            await wait_for(lambda: page.evaluate("(window.aiospice.display?.stats.byType.VP8 || 0) >= 10"),
                           what="10 VP8 frames drawn")
    finally:
        await srv.close()


#: a page whose JPEG decoding takes 150 ms (a slow machine): MJPEG frames are drawn after their time
SLOW_JPEG = """(() => {
  const real = window.createImageBitmap.bind(window);
  window.createImageBitmap = (...args) => new Promise((ok) => setTimeout(ok, 150)).then(() => real(...args));
})();"""


async def test_late_mjpeg_frames_in_the_reports_move_the_stream_to_an_inter_frame_codec():
    """The browser's reports say its MJPEG frames come late (negative delay): the server lowers the MJPEG
    quality step by step, then goes on in the next codec the browser announced, whose frames keep time."""
    if not (video.available(video.VP8) or video.available(video.H264)):
        pytest.skip("PyAV cannot encode VP8 or H.264 here")
    guest = video_guest()
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, streaming="mjpeg"))
    await srv.start()
    pipeline = srv.display_pipeline
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.add_init_script(SLOW_JPEG)
            await page.goto(url(srv))
            await wait_for(lambda: pipeline.clients and pipeline.clients[0]._stream_create is not None,
                           what="a stream to the web client")
            client = pipeline.clients[0]
            assert client._stream_create.codec == video.MJPEG
            await wait_for(lambda: client._stream_create is not None and client._stream_create.codec != video.MJPEG,
                           timeout=60, what="the stream in another codec")
            name = video.NAMES[client._stream_create.codec].upper()
            await wait_for(lambda: page.evaluate(f"(window.aiospice.display?.stats.byType.{name} || 0) >= 20"),
                           what=f"20 {name} frames drawn")
            assert await shown_against_guest(page, guest, client._stream_create.rect) < 16
    finally:
        await srv.close()


async def test_two_pages_share_the_vp8_encodes_and_one_opened_mid_video_starts_at_a_key_frame():
    """A second page opened while the video plays joins the stream (a key frame made for it, which its
    fresh WebCodecs decoder starts from); both pages are then sent the same encoded frames."""
    if not video.available(video.VP8):
        pytest.skip("PyAV cannot encode VP8 here")
    guest = video_guest()
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, streaming="mjpeg", video_codecs=(video.VP8,)))
    await srv.start()
    pipeline = srv.display_pipeline
    try:
        async with chromium() as browser:
            first = await new_page(browser)
            await first.goto(url(srv))
            await wait_for(lambda: first.evaluate("(window.aiospice.display?.stats.byType.VP8 || 0) >= 20"),
                           what="20 VP8 frames on the first page")
            second = await new_page(browser)
            await second.goto(url(srv))
            await wait_for(lambda: len(pipeline.clients) == 2 and pipeline.clients[1]._stream_create is not None,
                           what="the second page in the stream")
            a, b = pipeline.clients
            assert b._stream_create.codec == video.VP8
            await wait_for(lambda: second.evaluate("(window.aiospice.display?.stats.byType.VP8 || 0) >= 20"),
                           what="20 VP8 frames on the second page")
            assert a._shared is not None and b._shared is a._shared and a._shared.members == 2
            frames0, encodes0 = a._shared.seq, pipeline.stats.stream_frames
            await asyncio.sleep(2)
            shared = a._shared is not None and b._shared is a._shared
            assert shared, "a page fell behind the shared encoder"
            assert pipeline.stats.stream_frames - encodes0 == a._shared.seq - frames0 >= 30  # one encode a frame
            for page in (first, second):
                assert await shown_against_guest(page, guest, b._stream_create.rect) < 16
                errors = [x for x in page.console_lines if x.startswith(("error", "pageerror", "warning"))]
                assert not errors, errors
    finally:
        await srv.close()
