"""Video stream codecs: which codec each client gets, and our H.264 / VP8 frames decoded by FFmpeg's
decoders (PyAV) to the pictures the guest showed."""

from __future__ import annotations

import numpy as np
import pytest
from fakeguest import FakeGuest
from test_display_streams import GTK, VIDEO, video_frame

from spice.display import images, video
from spice.display.caps import ImageCaps
from spice.display.commands import StreamCreate, StreamData, StreamDestroy
from spice.display.pipeline import STREAM_QUALITY_MIN, DisplayPipeline
from spice.display.shadow import ShadowCanvas
from spice.proto.display import DisplayCap

CODECS = [video.H264, video.VP8]
needs_av = pytest.mark.skipif(not all(video.available(c) for c in CODECS), reason="PyAV without libx264 / libvpx")
ALL_CODECS = GTK | {DisplayCap.CODEC_VP8, DisplayCap.CODEC_H264}


def moving(t: int, w: int = 160, h: int = 120) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    px = np.zeros((h, w, 4), np.uint8)
    px[..., 0] = (xx + 3 * t) % 256
    px[..., 1] = (yy * 2 + t) % 256
    px[..., 2] = (xx + yy + 5 * t) % 256
    return px


def test_codec_names_and_client_caps():
    assert video.parse_codecs("h264, MJPEG,h264") == (video.H264, video.MJPEG)
    for bad in ("", "theora", "mjpeg,av1"):
        with pytest.raises(ValueError):
            video.parse_codecs(bad)
    assert video.client_codecs({DisplayCap.LZ4_COMPRESSION}) == {video.MJPEG}  # no MULTI_CODEC: MJPEG only
    assert video.client_codecs({DisplayCap.MULTI_CODEC, DisplayCap.CODEC_H264}) == {video.H264}
    assert video.client_codecs(ALL_CODECS) == {video.MJPEG, video.VP8, video.H264}


@needs_av
def test_choose_follows_the_order_and_skips_odd_sizes_for_h264():
    both = frozenset({video.MJPEG, video.H264})
    assert video.choose((video.H264, video.MJPEG), both, 160, 120) == video.H264
    assert video.choose((video.H264, video.MJPEG), both, 161, 120) == video.MJPEG  # 4:2:0 needs even sizes
    assert video.choose((video.VP8,), both, 160, 120) is None


@needs_av
@pytest.mark.parametrize("codec", CODECS, ids=["h264", "vp8"])
def test_inter_frame_encoder_frames_decode_to_the_pictures(codec):
    import av

    enc = video.InterFrameEncoder(codec, 160, 120, 60)
    dec = av.CodecContext.create(video.NAMES[codec], "r")
    sizes = []
    for t in range(20):
        data = enc.encode(moving(t))
        sizes.append(len(data))
        (frame,) = dec.decode(av.Packet(data))
        if t == 0:
            assert frame.key_frame
        shown = frame.to_ndarray(format="bgra")[..., :3].astype(int)
        assert np.abs(shown - moving(t)[..., :3]).mean() < 6, t
    jpeg = len(images.jpeg_bytes(moving(10), 60))
    assert sum(sizes[1:]) / 19 < jpeg / 3  # the point of it: frames after the first are small


def flat_desktop(order: tuple[int, ...] = video.DEFAULT_ORDER) -> tuple[FakeGuest, DisplayPipeline]:
    """A flat desktop whose VIDEO area plays (``video_frame``), and its pipeline with codec ``order``."""
    g = FakeGuest(256, 192, 7)
    g.fb[..., :3] = 90
    p = DisplayPipeline(g)
    p.video_codecs = order
    return g, p


def lossy_client(p: DisplayPipeline, caps=ALL_CODECS):
    return p.attach(ImageCaps.from_caps({3}, caps, "spice-gtk", lossy=True), lambda: None)


def play(g: FakeGuest, clients: list, canvases: list[ShadowCanvas], frames: range) -> list[list]:
    taken = [[] for _ in clients]
    for t in frames:
        video_frame(g, t)
        g.finish()
        for c, sh, out in zip(clients, canvases, taken, strict=True):
            cmds = c.take()
            sh.apply(cmds)
            out.extend(cmds)
    return taken

def shows_video(g: FakeGuest, sh: ShadowCanvas) -> float:
    want = g.fb[VIDEO.top:VIDEO.bottom, VIDEO.left:VIDEO.right, :3].astype(int)
    return float(np.abs(sh.pixels[VIDEO.top:VIDEO.bottom, VIDEO.left:VIDEO.right, :3].astype(int) - want).mean())


@needs_av
def test_each_client_gets_its_codec_and_sees_the_video():
    g, p = flat_desktop((video.H264, video.VP8, video.MJPEG))
    h264, mjpeg_only, vp8 = lossy_client(p), lossy_client(p, GTK), lossy_client(p)
    vp8.set_codec_preference([video.VP8])  # its PREFERRED_VIDEO_CODEC_TYPE
    clients = [h264, mjpeg_only, vp8]
    canvases = [ShadowCanvas(256, 192) for _ in clients]
    for c, sh in zip(clients, canvases, strict=True):
        sh.apply(c.take())
    taken = play(g, clients, canvases, range(30))
    for cmds, codec in zip(taken, (video.H264, video.MJPEG, video.VP8), strict=True):
        assert [x.codec for x in cmds if isinstance(x, StreamCreate)] == [codec]
        assert sum(isinstance(x, StreamData) for x in cmds) >= 10
    for sh in canvases:  # every client shows the latest frame (lossy)
        assert shows_video(g, sh) < 8


@needs_av
def test_refused_codec_reopens_the_stream_in_the_next_and_drops_lower_the_h264_frame_rate():
    g, p = flat_desktop((video.H264, video.VP8, video.MJPEG))
    c = lossy_client(p)
    sh = ShadowCanvas(256, 192)
    sh.apply(c.take())
    play(g, [c], [sh], range(15))
    assert c._stream_create.codec == video.H264
    encoder = c._video
    c.stream_report(3, 2, 40)  # drops: fewer frames, the same encoder (a new quality would cost a key frame)
    assert c.stream_interval > 0 and c.stream_quality_drop == 0
    play(g, [c], [sh], range(15, 18))
    assert c._video is encoder
    c.stream_report(0, 0xFFFFFFFF, 0)  # "cannot decode": VP8 next, same stream id
    (cmds,) = play(g, [c], [sh], range(18, 22))
    kinds = [type(x).__name__ for x in cmds if not isinstance(x, StreamData)]
    assert kinds[:2] == ["StreamDestroy", "StreamCreate"] and cmds[1].codec == video.VP8
    c.stream_report(0, 0xFFFFFFFF, 0)
    (cmds,) = play(g, [c], [sh], range(22, 26))
    assert [x.codec for x in cmds if isinstance(x, StreamCreate)] == [video.MJPEG]
    assert not c.streams_refused
    c.stream_report(0, 0xFFFFFFFF, 0)  # none left: no more streams
    (cmds,) = play(g, [c], [sh], range(26, 30))
    assert c.streams_refused and any(isinstance(x, StreamDestroy) for x in cmds)
    assert not any(isinstance(x, StreamData | StreamCreate) for x in cmds)


@needs_av
def test_odd_sized_stream_goes_to_the_next_codec_for_h264():
    c = lossy_client(DisplayPipeline(FakeGuest(64, 64, 1)))
    c._pipeline.video_codecs = (video.H264, video.MJPEG)
    assert c.stream_codec(161, 120) == video.MJPEG and c.stream_codec(160, 120) == video.H264


@needs_av
def test_mjpeg_too_big_for_the_link_goes_on_in_h264_then_the_frame_rate_drops():
    g, p = flat_desktop()  # the server's default order: MJPEG first
    c, plain = lossy_client(p), lossy_client(p, GTK)
    canvases = [ShadowCanvas(256, 192), ShadowCanvas(256, 192)]
    for cl, sh in zip((c, plain), canvases, strict=True):
        sh.apply(cl.take())
    play(g, [c, plain], canvases, range(15))
    assert c._stream_create.codec == video.MJPEG
    for cl in (c, plain):
        for _ in range(5):  # drops at every quality step down to the floor, and once more
            cl.stream_report(5, 5, 10)
    (cmds, plain_cmds) = play(g, [c, plain], canvases, range(15, 30))
    assert [x.codec for x in cmds if isinstance(x, StreamCreate)] == [video.H264]
    assert c.stream_interval == 0 and c.stream_quality_drop == 0  # H.264 starts at the default quality
    assert plain.stream_interval > 0 and not any(isinstance(x, StreamCreate) for x in plain_cmds)  # MJPEG only
    h264 = [len(x.data) for x in cmds if isinstance(x, StreamData)]
    floor = len(p.stream_frame(p.active_stream, STREAM_QUALITY_MIN).data)  # MJPEG's smallest
    assert sum(h264[1:]) / len(h264[1:]) < floor / 2
    shown = canvases[0].pixels[VIDEO.top:VIDEO.bottom, VIDEO.left:VIDEO.right, :3].astype(int)
    assert np.abs(shown - g.fb[VIDEO.top:VIDEO.bottom, VIDEO.left:VIDEO.right, :3]).mean() < 8
    for _ in range(5):
        c.stream_report(5, 5, 10)  # still too much: now the frame rate goes down
    assert c.stream_interval > 0 and c._stream_create.codec == video.H264


@needs_av
def test_failing_encoder_hands_the_stream_to_the_next_codec(monkeypatch):
    g, p = flat_desktop((video.VP8, video.MJPEG))
    c = lossy_client(p)
    sh = ShadowCanvas(256, 192)
    sh.apply(c.take())

    def broken(self, pixels, key=False):
        raise video.EncoderError("out of memory")

    monkeypatch.setattr(video.InterFrameEncoder, "encode", broken)
    (cmds,) = play(g, [c], [sh], range(20))
    assert [x.codec for x in cmds if isinstance(x, StreamCreate)] == [video.VP8, video.MJPEG]
    assert sum(isinstance(x, StreamData) for x in cmds) >= 3 and not c.streams_refused
    with pytest.raises(video.EncoderError):  # (and a bad size is an EncoderError too, not a crash)
        video.InterFrameEncoder(video.H264, 0, 0, 60)


@needs_av
def test_h264_budget_keeps_later_clients_on_mjpeg_until_it_is_released():
    g, p = flat_desktop((video.H264, video.MJPEG))
    p.max_inter_frame_pixels = VIDEO.area * 3 // 2  # room for one stream of this size
    first, second = lossy_client(p), lossy_client(p)
    canvases = [ShadowCanvas(256, 192), ShadowCanvas(256, 192)]
    for c, sh in zip((first, second), canvases, strict=True):
        sh.apply(c.take())
    taken = play(g, [first, second], canvases, range(20))
    assert [x.codec for x in taken[0] if isinstance(x, StreamCreate)] == [video.H264]
    assert [x.codec for x in taken[1] if isinstance(x, StreamCreate)] == [video.MJPEG]
    first.detach()  # its encoder's share comes back: the next stream may be H.264 again
    assert p._inter_frame_pixels == 0
    second._leave(p.active_stream)
    assert second._join(p.active_stream) and second._stream_create.codec == video.H264


def test_client_preference_reorders_the_server_list_and_never_adds_to_it():
    g, p = flat_desktop((video.MJPEG, video.VP8))
    c = lossy_client(p)
    c.set_codec_preference([video.H264, video.VP8, 77])  # H.264 is not on the server's list; 77 is no codec
    assert c._codec_order() == (video.VP8, video.MJPEG)
    p.video_codecs = (video.MJPEG,)  # the operator's list wins, whenever it changes
    assert c._codec_order() == (video.MJPEG,) and c.stream_codec(160, 120) == video.MJPEG



@needs_av
@pytest.mark.parametrize("codec", CODECS, ids=["h264", "vp8"])
def test_clients_in_step_share_one_encode_per_frame_and_a_late_joiner_starts_at_a_key_frame(codec):
    """Two clients taking every frame get the same encoded frames (one encode each); a third attached
    mid-stream asks for a key frame, which a fresh decoder starts from, and shares from then on."""
    g, p = flat_desktop((codec, video.MJPEG))
    first, second = lossy_client(p), lossy_client(p)
    canvases = [ShadowCanvas(256, 192), ShadowCanvas(256, 192)]
    for c, sh in zip((first, second), canvases, strict=True):
        sh.apply(c.take())
    taken = play(g, [first, second], canvases, range(20))
    data = [[x.data for x in cmds if isinstance(x, StreamData)] for cmds in taken]
    assert len(data[0]) >= 10 and data[0] == data[1]
    assert all(a is b for a, b in zip(*data, strict=True))  # the same bytes, not two equal encodes
    assert p.stats.stream_frames == len(data[0])
    assert first._video is None and first._shared is second._shared is not None
    late = lossy_client(p)
    late_canvas = ShadowCanvas(256, 192)
    late_canvas.apply(late.take())
    before = p.stats.stream_frames
    taken = play(g, [first, second, late], [*canvases, late_canvas], range(20, 30))
    assert p.stats.stream_frames - before == 10  # still one encode per frame, for all three
    late_frames = [x.data for x in taken[2] if isinstance(x, StreamData)]
    assert late_frames == [x.data for x in taken[0] if isinstance(x, StreamData)][-len(late_frames):]
    assert late._shared is first._shared and len(late_frames) >= 9
    for sh in (*canvases, late_canvas):
        assert shows_video(g, sh) < 8


@needs_av
def test_a_client_behind_the_shared_encoder_or_slowed_down_gets_its_own():
    """A client that missed more frames than the shared encoder keeps goes on with its own encoder (from a
    key frame); so does one whose frame rate the reports lowered; the others keep sharing."""
    g, p = flat_desktop((video.VP8, video.MJPEG))
    fast, slow, slowed = lossy_client(p), lossy_client(p), lossy_client(p)
    canvases = [ShadowCanvas(256, 192) for _ in range(3)]
    for c, sh in zip((fast, slow, slowed), canvases, strict=True):
        sh.apply(c.take())
    play(g, [fast, slow, slowed], canvases, range(12))
    assert fast._shared is slow._shared is slowed._shared is not None
    play(g, [fast, slowed], [canvases[0], canvases[2]], range(12, 12 + video.SHARED_FRAMES_KEPT + 2))
    slowed.stream_report(10, 0, -5)  # late frames: a VP8 stream's frame rate drops
    assert slowed.stream_interval > 0
    slowed._last_stream_frame = 0.0  # (its next take is a frame time after the last, however fast this runs)
    play(g, [fast, slow, slowed], canvases, range(20, 30))
    assert slow._shared is None and slow._video is not None
    assert slowed._shared is None and slowed._video is not None
    assert fast._shared is not None and fast._shared.members == 1
    slowed.stream_interval = 0.0  # (so that the last frame reached it too)
    play(g, [fast, slow, slowed], canvases, range(30, 31))
    for sh in canvases:
        assert shows_video(g, sh) < 8
