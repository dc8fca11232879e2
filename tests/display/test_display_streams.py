"""Video areas become MJPEG streams for lossy clients; stills and lossless clients stay exact."""

from __future__ import annotations

import time

import numpy as np
from fakeguest import FakeGuest

from spice.display.caps import ImageCaps
from spice.display.commands import StreamCreate, StreamData, StreamDestroy
from spice.display.pipeline import DisplayPipeline
from spice.display.shadow import ShadowCanvas, visible
from spice.guests.base import Rect

GTK = {0, 1, 2, 3, 4, 5, 7, 8, 9}
VIDEO = Rect(21, 13, 21 + 160, 13 + 120)


def video_frame(g: FakeGuest, t: int) -> None:
    yy, xx = np.mgrid[0:VIDEO.height, 0:VIDEO.width]
    v = g.fb[VIDEO.top:VIDEO.bottom, VIDEO.left:VIDEO.right]
    v[..., 0] = (xx + 3 * t) % 256
    v[..., 1] = (yy * 2 + t) % 256
    v[..., 2] = (xx + yy + 5 * t) % 256
    g.report(VIDEO)


def streaming_client(before_frame=lambda: None):
    """A lossy spice-gtk client of a flat desktop whose VIDEO area plays until it streams (15 frames,
    ``before_frame()`` before each): (guest, pipeline, client, the client's canvas)."""
    g = FakeGuest(256, 192, 7)
    g.fb[..., :3] = 90
    p = DisplayPipeline(g)
    c = p.attach(ImageCaps.from_caps({3}, GTK, "spice-gtk", lossy=True), lambda: None)
    sh = ShadowCanvas(256, 192)
    sh.apply(c.take())
    for t in range(15):
        before_frame()
        video_frame(g, t)
        g.finish()
        sh.apply(c.take())
    assert p.active_stream is not None
    return g, p, c, sh


def test_video_area_streams_to_lossy_clients_only_then_lossless_refresh():
    g = FakeGuest(256, 192, 7)
    g.fb[..., :3] = 90  # flat desktop: only the video is photographic
    p = DisplayPipeline(g)
    lossy = p.attach(ImageCaps.from_caps({3}, GTK, "spice-gtk", lossy=True), lambda: None)
    exact = p.attach(ImageCaps.from_caps({3}, GTK, "spice-gtk"), lambda: None)
    ls, es = ShadowCanvas(256, 192), ShadowCanvas(256, 192)
    ls.apply(lossy.take())
    es.apply(exact.take())
    seen = []
    for t in range(30):
        video_frame(g, t)
        if t % 5 == 0:
            g.damage(Rect(200, 150, 230, 170), "ui")  # other, lossless activity
        g.finish()
        cmds = lossy.take()
        seen += [type(c) for c in cmds]
        ls.apply(cmds)
        ec = exact.take()
        assert not any(isinstance(c, (StreamCreate, StreamData)) for c in ec)
        es.apply(ec)
        assert np.array_equal(es.bgr(), visible(g.fb))
        s = p.active_stream
        outside = np.ones((192, 256), bool)
        outside[8:136, 16:184] = False  # VIDEO's cells: JPEG before the stream starts, then the stream
        assert np.array_equal(ls.bgr()[outside], visible(g.fb)[outside])
    s = p.active_stream
    assert s is not None and s.rect.intersect(VIDEO) == VIDEO and s.rect.area < 2 * VIDEO.area
    assert seen.count(StreamCreate) == 1 and seen.count(StreamData) >= 15
    inside = ls.pixels[VIDEO.top:VIDEO.bottom, VIDEO.left:VIDEO.right, :3].astype(int)
    truth = g.fb[VIDEO.top:VIDEO.bottom, VIDEO.left:VIDEO.right, :3].astype(int)
    assert np.abs(inside - truth).mean() < 8  # lossy but close
    # the video stops: after the idle time the stream ends and the area is redrawn losslessly
    p.check_stream(time.monotonic() + 5)
    assert p.active_stream is None and lossy.pending
    cmds = lossy.take()
    assert isinstance(cmds[0], StreamDestroy)
    ls.apply(cmds)
    assert np.array_equal(ls.bgr(), visible(g.fb)) and not ls.streams


def test_ui_changes_do_not_stream():
    g = FakeGuest(256, 192, 8)
    p = DisplayPipeline(g)
    c = p.attach(ImageCaps.from_caps({3}, GTK, "spice-gtk", lossy=True), lambda: None)
    c.take()
    for _ in range(30):
        g.damage(VIDEO, "text")  # text-like: mostly flat runs
        g.finish()
        assert not any(isinstance(x, StreamCreate) for x in c.take())
    assert p.stats.streams == 0


def test_fps_cap_merges_frames():
    import asyncio

    async def run() -> tuple[int, float, bool]:
        g = FakeGuest(64, 48)
        p = DisplayPipeline(g, max_fps=10)
        takes = []
        c = p.attach(ImageCaps.from_caps({3}, GTK, "spice-gtk"), lambda: takes.append(c.take()))
        c.take()
        t0 = time.monotonic()
        for _ in range(20):
            g.damage(g.rand_rect(), "noise")
            g.finish()
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - t0
        await asyncio.sleep(0.15)
        drained = not c.pending
        p.close()
        return len(takes), elapsed, drained

    n, elapsed, drained = asyncio.run(run())
    assert drained and 1 <= n <= elapsed * 10 + 2 and n < 20  # at most one take per 100 ms


def test_photographic_stills_go_as_jpeg_then_lossless_once_still():
    g = FakeGuest(320, 240, 10)
    g.fb[..., :3] = 50
    p = DisplayPipeline(g)
    lossy = p.attach(ImageCaps.from_caps({3}, GTK, "spice-gtk", lossy=True), lambda: None)
    html5 = p.attach(ImageCaps.from_caps({3}, {0, 4, 8, 9, 10}, "spice-html5", lossy=True), lambda: None)
    exact = p.attach(ImageCaps.from_caps({3}, GTK, "spice-gtk"), lambda: None)
    shadows = {c: ShadowCanvas(320, 240) for c in (lossy, html5, exact)}
    for c, sh in shadows.items():
        sh.apply(c.take())
    photo = Rect(10, 20, 250, 180)
    video_frame(g, 3)  # photographic content in VIDEO ...
    g.damage(photo, "noise")  # ... and a bigger photo over it
    g.finish()
    got = {c: c.take() for c in shadows}
    for c, cmds in got.items():
        shadows[c].apply(cmds)
    assert {x.image[8] for x in got[lossy] if hasattr(x, "image")} == {105}  # JPEG
    assert {x.image[8] for x in got[html5] if hasattr(x, "image")} == {105}
    assert 105 not in {x.image[8] for x in got[exact] if hasattr(x, "image")}
    jpeg_bytes = sum(len(x.image) for x in got[lossy])
    assert jpeg_bytes < sum(len(x.image) for x in got[exact])
    assert np.array_equal(shadows[exact].bgr(), visible(g.fb))
    assert not np.array_equal(shadows[lossy].bgr(), visible(g.fb))
    # still for a while: the JPEG areas are redrawn losslessly
    assert p.tick(time.monotonic()) and not lossy.pending
    p.tick(time.monotonic() + 5)
    for c in (lossy, html5):
        assert c.pending
        cmds = c.take()
        assert cmds and 105 not in {x.image[8] for x in cmds if hasattr(x, "image")}
        shadows[c].apply(cmds)
        assert np.array_equal(shadows[c].bgr(), visible(g.fb))
    assert not p.tick(time.monotonic() + 10)


def test_stalled_client_backlog_stays_bounded_across_streams():
    g = FakeGuest(256, 192, 14)
    g.fb[..., :3] = 90
    p = DisplayPipeline(g)
    stalled = p.attach(ImageCaps.from_caps({3}, GTK, "spice-gtk", lossy=True), lambda: None)
    stalled.take()
    for rnd in range(5):  # five videos start and stop; the client never takes
        for t in range(15):
            video_frame(g, t + 100 * rnd)
            g.finish()
        p.check_stream(time.monotonic() + 10)
    assert p.stats.streams == 5
    assert len(stalled._ctrl) == 0 and len(stalled._cmds) <= p.max_passthrough_cmds
    sh = ShadowCanvas(256, 192)
    sh.pixels[:] = g.fb  # irrelevant start; then the merged take must not reference unknown streams
    sh.apply(stalled.take())
    assert not sh.streams


def test_small_frames_are_taken_before_detection_and_a_stream_started_after_them_is_delivered():
    """A frame of a few thousand pixels (a typed key) is taken by a consumer that takes right after the
    frame (as the display channel does) before video detection runs; when that detection then starts a
    stream, the consumer is woken for it at once, not at the next frame."""
    g = FakeGuest(256, 192, 9)
    g.fb[..., :3] = 90
    p = DisplayPipeline(g)
    small = Rect(64, 64, 128, 128)  # 64 x 64: the smallest area that streams
    taken: list = []

    def take_now() -> None:
        taken.append(client.take())

    def wakeup() -> None:
        if not p.after_frame(take_now):
            take_now()

    client = p.attach(ImageCaps.from_caps({3}, GTK, "spice-gtk", lossy=True), wakeup)
    shadow = ShadowCanvas(256, 192)
    shadow.apply(client.take())
    for t in range(40):
        taken.clear()
        yy, xx = np.mgrid[0:small.height, 0:small.width]
        v = g.fb[small.top:small.bottom, small.left:small.right]
        v[..., 0], v[..., 1], v[..., 2] = (xx * 7 + 13 * t) % 256, (yy * 5 + t * t) % 256, (xx * yy + t) % 256
        g.report(small)
        g.finish()
        for cmds in taken:
            shadow.apply(cmds)
        if p.active_stream is not None:
            break
        assert len(taken) == 1 and np.array_equal(shadow.bgr(), visible(g.fb))  # this frame, exact
    assert p.active_stream is not None
    kinds = [type(c) for cmds in taken for c in cmds]
    assert kinds.count(StreamCreate) == 1 and kinds.count(StreamData) == 1


def test_video_detector_skips_frames_after_a_quiet_spell_and_counts_the_rest_in_full():
    """A frame after a quiet spell (a clock tick) takes the detector's short path: no counting at all.
    Every other frame counts as in the full computation (which here never sees the quiet ones): the hit
    counts and the hot areas reported stay the same over random bursts and pauses."""
    from spice.display.region import CellGrid
    from spice.display.streams import VideoDetector

    grid = CellGrid(320, 240)
    fast, full = VideoDetector(grid, min_size=16), VideoDetector(grid, min_size=16)
    rng = np.random.default_rng(3)
    now, previous, hot, skipped = 0.0, -1e9, 0, 0
    for _ in range(600):
        now += float(rng.choice([0.03, 0.1, 0.3, 1.0], p=[0.6, 0.2, 0.1, 0.1]))
        changed = np.zeros(grid.shape, bool)
        if rng.random() < 0.7:  # a video-like area
            changed[5:12, 6:14] = True
        else:
            y, x = int(rng.integers(0, 20)), int(rng.integers(0, 30))
            changed[y:y + int(rng.integers(1, 10)), x:x + int(rng.integers(1, 10))] = True
        quiet, previous = now - previous >= fast.interval, now
        skipped += quiet
        full._newest = float("inf")  # never quiet: always the full computation
        a, b = fast.update(changed, now), None if quiet else full.update(changed, now)
        assert a == b
        hot += a is not None
        assert np.array_equal(fast.hits, full.hits) and np.array_equal(fast.last, full.last)
    assert hot and skipped  # some bursts did get hot, some frames came after a pause


def test_a_stream_whose_video_shrinks_ends_and_the_smaller_video_streams_again(monkeypatch):
    """Frames drawn inside a running stream skip the detector; when what they draw shrinks to a corner
    the stream ends within STREAM_LOOK_EVERY frames and a stream of the smaller area follows."""
    from spice.display import pipeline
    from spice.display.pipeline import STREAM_LOOK_EVERY

    clock = [1000.0]  # 25 frames per second
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: clock[0])

    def tick() -> None:
        clock[0] += 0.04

    g, p, c, canvas = streaming_client(tick)
    big = p.active_stream
    assert big is not None and big.rect.intersect(VIDEO) == VIDEO
    small = Rect(VIDEO.left, VIDEO.top, VIDEO.left + 96, VIDEO.top + 80)  # (streams are at least 64x64)
    yy, xx = np.mgrid[0:small.height, 0:small.width]
    creates = []
    for t in range(15, 35 + 2 * STREAM_LOOK_EVERY):  # ends at the second look; 10 hits to restart
        tick()
        v = g.fb[small.top:small.bottom, small.left:small.right]
        v[..., 0], v[..., 1], v[..., 2] = (xx + 3 * t) % 256, (yy * 2 + t) % 256, (xx + yy + 5 * t) % 256
        g.report(small)
        g.finish()
        cmds = c.take()
        creates += [x for x in cmds if isinstance(x, StreamCreate)]
        canvas.apply(cmds)
    s = p.active_stream
    assert s is not None and s is not big and s.rect.intersect(small) == small and s.rect.area < big.rect.area / 2
    assert [x.rect for x in creates] == [s.rect]
