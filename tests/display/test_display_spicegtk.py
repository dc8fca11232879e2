"""Real spice-gtk 0.42 decodes our BITMAP / LZ_RGB / LZ4 / ZLIB_GLZ_RGB images, fills and copies pixel-exactly."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest
from fakeguest import FakeGuest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
import spicegtk  # noqa: E402

from spice.display import video  # noqa: E402
from spice.display.caps import ImageType  # noqa: E402
from spice.guests.base import Rect  # noqa: E402
from spice.proto import display as pd  # noqa: E402
from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120),
              pytest.mark.skipif(not spicegtk.have_spice_glib(), reason="SpiceClientGLib (gi) missing")]

W, H = 320, 200


@pytest.mark.parametrize("image_type", [ImageType.BITMAP, ImageType.LZ_RGB, ImageType.LZ4, ImageType.ZLIB_GLZ_RGB])
async def test_spice_gtk_shows_the_guest_exactly(tmp_path, image_type):
    guest = FakeGuest(W, H, seed=int(image_type))
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw"))
    srv.display_pipeline.force_type = image_type
    await srv.start()
    try:
        client = await spicegtk.watch_dump(srv, tmp_path, settle=2.5)
        pipeline = srv.display_pipeline
        for _ in range(25):  # damage (noise / UI / flat), fills and copies while it watches
            for _ in range(3):
                guest.random_op()
            guest.finish()
            await asyncio.sleep(0.02)
        # a menu opening and closing: recurring pixels come from the pixmap cache
        g_rect = Rect(40, 30, 200, 150)
        saved = guest.fb[30:150, 40:200].copy()
        guest.damage(g_rect, "ui")
        opened = guest.fb[30:150, 40:200].copy()
        guest.finish()
        for k in range(6):
            await asyncio.sleep(0.05)
            guest.fb[30:150, 40:200] = saved if k % 2 == 0 else opened
            guest.report(g_rect)
            guest.finish()
        rep = await client
    finally:
        await srv.close()
    assert not rep["errors"], rep
    assert pipeline.stats.by_type.get(image_type, 0) > 1
    assert pipeline.stats.cache_hits >= 3
    shown = spicegtk.read_dump(tmp_path / "fb.raw", W, H)
    assert np.array_equal(shown[..., :3], guest.fb[..., :3])


async def test_spice_gtk_plays_an_mjpeg_stream_then_gets_the_lossless_picture(tmp_path):
    guest = FakeGuest(W, H, seed=21)
    guest.fb[..., :3] = 70
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw"))
    pipeline = srv.display_pipeline
    pipeline.lossy = True  # server policy: lossy allowed (video streams, JPEG)
    await srv.start()
    try:
        client = await spicegtk.watch_dump(srv, tmp_path, settle=4)
        video = Rect(40, 30, 40 + 160, 30 + 120)
        yy, xx = np.mgrid[0:120, 0:160]
        for t in range(30):  # 25 fps of moving photographic content
            v = guest.fb[30:150, 40:200]
            v[..., 0] = (xx + 3 * t) % 256
            v[..., 1] = (yy * 2 + t) % 256
            v[..., 2] = (xx + yy + 5 * t) % 256
            v[..., :3] += guest.rng.integers(0, 8, v[..., :3].shape, dtype=np.uint8)
            guest.report(video)
            guest.finish()
            await asyncio.sleep(0.04)
        assert pipeline.active_stream is not None
        rep = await client
    finally:
        await srv.close()
    assert not rep["errors"], rep
    assert pipeline.stats.streams == 1 and pipeline.stats.stream_frames >= 10
    assert pipeline.active_stream is None  # ended once the area was still
    shown = spicegtk.read_dump(tmp_path / "fb.raw", W, H)
    assert np.array_equal(shown[..., :3], guest.fb[..., :3])  # lossless refresh after the stream


@pytest.mark.parametrize(("order", "gst_rank", "expect"), [
    ((video.MJPEG,), "", [video.MJPEG]),
    ((video.H264,), "", [video.H264]),
    ((video.VP8,), "", [video.VP8]),
    # spice-gtk announces H.264 (avdec_h264 is there) but cannot build the decoder without h264parse: it
    # answers "no such stream", and the video goes on as MJPEG
    ((video.H264, video.MJPEG), "h264parse:NONE", [video.H264, video.MJPEG]),
], ids=["mjpeg", "h264", "vp8", "h264-undecodable-falls-back-to-mjpeg"])
async def test_spice_gtk_shows_stream_frames_while_streaming(tmp_path, order, gst_rank, expect, monkeypatch):
    """spice-gtk decodes our MJPEG, and (GStreamer's avdec_h264 / vp8dec) our H.264 and VP8 streams."""
    if not all(video.available(c) for c in order):
        pytest.skip("no H.264 / VP8 encoder (PyAV)")
    if gst_rank:
        monkeypatch.setenv("GST_PLUGIN_FEATURE_RANK", gst_rank)  # (for the client process)
    guest = FakeGuest(W, H, seed=22)
    guest.fb[..., :3] = 70
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw"))
    pipeline = srv.display_pipeline
    pipeline.lossy = True
    pipeline.video_codecs = order
    codecs_sent = []
    build = pd.build_stream_create
    monkeypatch.setattr(pd, "build_stream_create", lambda *a: codecs_sent.append(a[5]) or build(*a))
    await srv.start()
    frames = []
    try:
        client = asyncio.create_task(spicegtk.gtk_client(f"spice://127.0.0.1:{srv.ports['plain']}", "pw",
                                                         tmp_path, "--settle", "1.2", "--dump",
                                                         str(tmp_path / "fb.raw")))
        for _ in range(300):
            if pipeline.clients and not pipeline.clients[0].pending:
                break
            await asyncio.sleep(0.05)
        area = Rect(40, 30, 200, 150)
        yy, xx = np.mgrid[0:120, 0:160]
        for t in range(100):  # 4 s of video: the dump lands in the middle of the stream
            v = guest.fb[30:150, 40:200]
            v[..., 0] = (xx + 7 * t) % 256
            v[..., 1] = (yy * 2 + 3 * t) % 256
            v[..., 2] = (xx + yy + 11 * t) % 256
            frames.append(v[..., :3].copy())
            guest.report(area)
            guest.finish()
            await asyncio.sleep(0.04)
            if client.done():
                break
        rep = await client
    finally:
        await srv.close()
    assert not rep["errors"], rep
    shown = spicegtk.read_dump(tmp_path / "fb.raw", W, H)[30:150, 40:200, :3].astype(int)
    errors = [np.abs(shown - f).mean() for f in frames]
    best = int(np.argmin(errors))
    assert errors[best] < 10, min(errors)
    assert best >= 12, "the picture is not a stream frame"  # the stream starts after ~10 frames
    assert pipeline.stats.streams >= 1
    assert not pipeline.clients or not pipeline.clients[0].streams_refused  # (the client would say so)
    assert codecs_sent == expect


async def test_spice_gtk_shows_the_builtin_terminal_exactly(tmp_path):
    """Typing, editing, output and scrolling in the built-in terminal reach the client mostly as
    COPY_BITS of character cells already on screen (some frames merged for a client that lags):
    spice-gtk's picture equals the guest's framebuffer pixel for pixel."""
    from datetime import datetime, timedelta

    from spice.guests.builtin import BuiltinGuest

    now = [datetime(2026, 1, 2, 3, 58, 55)]
    guest = BuiltinGuest(800, 600, clock=lambda: now[0])
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw"))
    await srv.start()
    t = guest.terminal
    try:
        client = await spicegtk.watch_dump(srv, tmp_path, settle=4)
        copies0, drawn0 = t.grid.copies, t.grid.drawn
        for ch in "echo the quick brown fox\nhelp\necho fox the quick\n":
            t.type_text(ch)
            await asyncio.sleep(0.01)
        for key in ["Home", "x", "y", "End", "Left", "Left", "Backspace", "z"]:
            t.key(key)
            await asyncio.sleep(0.01)
        for i in range(30):  # scrolling output, some frames merged before the client takes them
            t.write_line(f"{i:04d} lorem ipsum dolor sit amet " + "elit " * (i % 5))
            guest.flush()
            if i % 7 == 0:
                await asyncio.sleep(0.02)
        for _ in range(8):  # clock ticks: digits copied from the clock's other cells, or pixels
            now[0] += timedelta(seconds=1)
            guest._update_clock()
            await asyncio.sleep(0.01)
        t.scroll_view(5)  # the scrolled-back view, then back to the bottom
        await asyncio.sleep(0.02)
        t.type_text("q")
        await asyncio.sleep(0.02)
        rep = await client
    finally:
        await srv.close()
    assert not rep["errors"], rep
    assert t.grid.copies - copies0 > 5 * (t.grid.drawn - drawn0) and guest.topbar.clock_grid.copies > 0
    shown = spicegtk.read_dump(tmp_path / "fb.raw", 800, 600)
    assert np.array_equal(shown[..., :3], guest.framebuffer[..., :3])


async def test_spice_gtk_follows_a_long_full_screen_scroll_exactly(tmp_path):
    """The scroll workload's maximised terminal, 250 lines (the framebuffer slides through its backing
    array and is moved back to the middle twice): spice-gtk's picture equals the framebuffer exactly."""
    from datetime import datetime

    from spice.guests.builtin import BuiltinGuest

    guest = BuiltinGuest(1024, 768, workload="scroll", clock=lambda: datetime(2026, 1, 2, 3, 4, 5))
    scroll, guest.workload = guest.workload, None  # stepped here, not by the guest's timer
    fb0 = guest.framebuffer
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw"))
    await srv.start()
    try:
        client = await spicegtk.watch_dump(srv, tmp_path, settle=4)
        pipeline = srv.display_pipeline
        frames0 = pipeline.stats.frames
        for i in range(250):  # a line per frame; some frames merged before the client takes them
            scroll.step()
            guest.flush()
            if i % 5 == 0:
                await asyncio.sleep(0.01)
        rep = await client
    finally:
        await srv.close()
    assert not rep["errors"], rep
    assert pipeline.stats.frames - frames0 == 250
    assert guest.framebuffer is not fb0 and guest.framebuffer.base is fb0.base  # slid, not copied
    shown = spicegtk.read_dump(tmp_path / "fb.raw", 1024, 768)
    assert np.array_equal(shown[..., :3], guest.framebuffer[..., :3])
