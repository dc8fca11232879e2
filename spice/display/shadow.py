"""A client-side model: apply drawing commands to a numpy canvas, as spice-gtk's canvas would."""

from __future__ import annotations

import numpy as np
import simplejpeg

from spice.display import video
from spice.display.commands import (
    CopyBits,
    DrawCommand,
    DrawCopy,
    DrawFill,
    InvalList,
    Resize,
    StreamCreate,
    StreamData,
    StreamDestroy,
)
from spice.display.decode import decode_image


class ShadowCanvas:
    """``(h, w, 4)`` BGRX canvas plus a pixmap cache, driven by :class:`DrawCommand` lists."""

    def __init__(self, width: int, height: int) -> None:
        self.pixels = np.zeros((height, width, 4), np.uint8)
        self.cache: dict[int, np.ndarray] = {}
        self.glz_window: dict[int, np.ndarray] = {}  # GLZ id -> pixels, as spice-gtk's decode-glz.c keeps them
        self.streams: dict[int, tuple] = {}
        self.stream_frames = 0

    def apply(self, cmds: list[DrawCommand]) -> None:
        for cmd in cmds:
            if isinstance(cmd, DrawFill):
                c = cmd.color
                for r in (cmd.rect.intersect(k) for k in cmd.clip_rects) if cmd.clip else (cmd.rect,):
                    if not r.is_empty():  # RECTS clip: the box ∩ each clip rect
                        self.pixels[r.top:r.bottom, r.left:r.right] = (c & 255, c >> 8 & 255, c >> 16 & 255, 0)
            elif isinstance(cmd, DrawCopy):
                r = cmd.rect
                d, img = decode_image(cmd.image, self.glz_window)
                if img is None:
                    img = self.cache[d.id]
                elif d.flags & 1:  # CACHE_ME
                    self.cache[d.id] = img
                if img.shape[:2] != (r.height, r.width):
                    raise AssertionError(f"image {img.shape[:2]} does not fit box {r}")
                self.pixels[r.top:r.bottom, r.left:r.right] = img
            elif isinstance(cmd, CopyBits):
                r = cmd.rect
                src = self.pixels[cmd.src_y:cmd.src_y + r.height, cmd.src_x:cmd.src_x + r.width].copy()
                self.pixels[r.top:r.bottom, r.left:r.right] = src
            elif isinstance(cmd, Resize):
                self.pixels = np.zeros((cmd.height, cmd.width, 4), np.uint8)
            elif isinstance(cmd, StreamCreate):
                if cmd.stream_id in self.streams:
                    raise AssertionError(f"stream {cmd.stream_id} created twice")
                self.streams[cmd.stream_id] = (cmd.rect, _decoder(cmd.codec))
            elif isinstance(cmd, StreamData):
                r, decoder = self.streams[cmd.stream_id]
                if r != cmd.rect:
                    raise AssertionError("stream frame for another rectangle")
                img = decoder(cmd.data)
                self.pixels[r.top:r.bottom, r.left:r.right] = img[:r.height, :r.width]
                self.stream_frames += 1
            elif isinstance(cmd, StreamDestroy):
                del self.streams[cmd.stream_id]
            elif isinstance(cmd, InvalList):
                for i in cmd.ids:
                    self.cache.pop(i, None)
            else:
                raise TypeError(f"unknown command {cmd!r}")

    def bgr(self) -> np.ndarray:
        """The visible colour (X byte ignored) as ``(h, w)`` uint32."""
        return self.pixels.view(np.uint32)[..., 0] & 0x00FFFFFF


def _decoder(codec: int):
    """``data -> (h, w, 4) BGRX`` for one stream: JPEG frames alone, VP8 / H.264 with PyAV's decoder (one
    per stream: each frame depends on the ones before)."""
    if codec == video.MJPEG:
        return lambda data: simplejpeg.decode_jpeg(data, colorspace="BGRX")
    import av

    ctx = av.CodecContext.create(video.NAMES[codec], "r")  # (FFmpeg's decoder names: vp8, h264)

    def decode(data: bytes) -> np.ndarray:
        frames = ctx.decode(av.Packet(data))
        if len(frames) != 1:
            raise AssertionError(f"a stream frame decoded to {len(frames)} pictures")
        return frames[0].to_ndarray(format="bgra")

    return decode


def visible(fb: np.ndarray) -> np.ndarray:
    """The visible colour of a BGRX framebuffer as ``(h, w)`` uint32."""
    return np.ascontiguousarray(fb).view(np.uint32)[..., 0] & 0x00FFFFFF
