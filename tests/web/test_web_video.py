"""Our web client's video streams in Chromium: VP8 and H.264 decoded by WebCodecs (the caps it announces
follow what the browser decodes), STREAM_REPORTs that feed the server's adaptation, a codec the browser
turns out not to decode refused so the server goes on in the next one, and the lossless picture after."""

from __future__ import annotations

import asyncio
import contextlib
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


@contextlib.asynccontextmanager
async def video_session(*codecs: int, **cfg):
    """(guest, server, browser): the built-in guest playing video-320x240, a server with the default
    ``--streaming mjpeg`` policy (stream codecs ``codecs``, else its own order), Chromium."""
    for codec in codecs:
        if not video.available(codec):
            pytest.skip(f"PyAV cannot encode {video.NAMES[codec]} here")
    if codecs:
        cfg["video_codecs"] = codecs
    guest = video_guest()
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, streaming="mjpeg", **cfg))
    await srv.start()
    try:
        async with chromium() as browser:
            yield guest, srv, browser
    finally:
        await srv.close()


async def open_streaming(browser, srv: SpiceServer, *, init_script: str | None = None, query: str = ""):
    """A page of our client, once the server has put it into the video stream; (page, its DisplayClient)."""
    pipeline = srv.display_pipeline
    before = len(pipeline.clients)
    page = await new_page(browser)
    if init_script:
        await page.add_init_script(init_script)
    await page.goto(url(srv) + query)
    await wait_for(lambda: len(pipeline.clients) > before and pipeline.clients[before]._stream_create is not None,
                   what="a stream to the web client")
    return page, pipeline.clients[before]


async def frames_drawn(page, name: str, count: int) -> None:
    await wait_for(lambda: page.evaluate(f"(window.aiospice.display?.stats.byType.{name} || 0) >= {count}"),
                   what=f"{count} {name} frames drawn")


def reports(srv: SpiceServer) -> int:
    return sum(getattr(conn.channel, "stream_reports", 0) for conn in list(srv.connections))


def no_errors(page) -> None:
    errors = [x for x in page.console_lines if x.startswith(("error", "pageerror", "warning"))]
    assert not errors, errors


async def shown_against_guest(page, guest, rect) -> float:
    """Smallest mean absolute difference of three canvas snapshots of ``rect`` against the guest's frame
    at that moment (lossy, and a frame or so behind: 3-10; a wrong or flat picture: 30 and more)."""
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
    async with video_session(codec) as (guest, srv, browser):
        page, client = await open_streaming(browser, srv)
        assert {video.VP8, video.H264} <= client.caps.video_codecs
        assert client._stream_create.codec == codec
        await frames_drawn(page, video.NAMES[codec].upper(), 30)
        assert await shown_against_guest(page, guest, client._stream_create.rect) < 16
        await wait_for(lambda: reports(srv) >= 3, what="stream reports at the server")
        assert client._stream_create.codec == codec  # the reports said all is well: no change of codec
        no_errors(page)
        await guest.stop()
        await wait_for(lambda: canvas_matches_guest(page, guest), timeout=20, what="lossless picture after the video")


async def test_a_codec_the_browser_cannot_decode_is_refused_and_the_next_plays():
    """WebCodecs says yes to H.264 but the decoder cannot be made: the client refuses the stream (a report
    with no frames and 0xffffffff drops) and the server goes on with MJPEG, the next in its order."""
    async with video_session(video.H264, video.MJPEG) as (guest, srv, browser):
        page, client = await open_streaming(browser, srv, init_script=NO_H264)
        await wait_for(lambda: client._stream_create is not None and client._stream_create.codec == video.MJPEG,
                       what="an MJPEG stream")
        assert video.H264 in client._refused_codecs
        await frames_drawn(page, "MJPEG", 20)
        assert await shown_against_guest(page, guest, client._stream_create.rect) < 16
        assert any("cannot be decoded here" in x for x in page.console_lines)


async def test_the_page_asks_for_its_preferred_codec():
    """``?video=vp8`` on the page's address: PREFERRED_VIDEO_CODEC_TYPE puts VP8 before the server's
    MJPEG-first order."""
    if not video.available(video.VP8):
        pytest.skip("PyAV cannot encode VP8 here")
    async with video_session() as (guest, srv, browser):
        page, client = await open_streaming(browser, srv, query="?video=vp8")
        assert client._stream_create.codec == video.VP8
        await frames_drawn(page, "VP8", 10)


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
    async with video_session() as (guest, srv, browser):
        page, client = await open_streaming(browser, srv, init_script=SLOW_JPEG)
        assert client._stream_create.codec == video.MJPEG
        await wait_for(lambda: client._stream_create is not None and client._stream_create.codec != video.MJPEG,
                       timeout=60, what="the stream in another codec")
        await frames_drawn(page, video.NAMES[client._stream_create.codec].upper(), 20)
        assert await shown_against_guest(page, guest, client._stream_create.rect) < 16


async def test_two_pages_share_the_vp8_encodes_and_one_opened_mid_video_starts_at_a_key_frame():
    """A second page opened while the video plays joins the stream (a key frame made for it, which its
    fresh WebCodecs decoder starts from); both pages are then sent the same encoded frames."""
    async with video_session(video.VP8) as (guest, srv, browser):
        pipeline = srv.display_pipeline
        first, a = await open_streaming(browser, srv)
        await frames_drawn(first, "VP8", 20)
        second, b = await open_streaming(browser, srv)
        assert b._stream_create.codec == video.VP8
        await frames_drawn(second, "VP8", 20)
        assert a._shared is not None and b._shared is a._shared and a._shared.members == 2
        frames0, encodes0 = a._shared.seq, pipeline.stats.stream_frames
        await asyncio.sleep(2)
        assert a._shared is not None and b._shared is a._shared, "a page fell behind the shared encoder"
        assert pipeline.stats.stream_frames - encodes0 == a._shared.seq - frames0 >= 30  # one encode a frame
        for page in (first, second):
            assert await shown_against_guest(page, guest, b._stream_create.rect) < 16
            no_errors(page)
