"""Video stream codecs: MJPEG for every client, VP8 and H.264 (PyAV: libvpx, libx264) where a client
announces them (display caps CODEC_VP8 / CODEC_H264, spice.md §11.2).

MJPEG frames stand alone, so one encode serves every client.  VP8 and H.264 frames depend on the ones
before: the clients of a stream that take every frame share one :class:`SharedEncoder` (a client joining
it later starts at a key frame it asks for; one a few frames behind gets the frames it missed), and a
client that falls behind, or whose frame rate the adaptation lowered, gets its own
:class:`InterFrameEncoder`, which sees exactly the frames that client is sent (its skipped frames are
never referenced).  The first frame of an encoder is a key frame.

Encoder settings are for live video: no look-ahead, no B-frames, one packet per frame (spice-gtk hands
each STREAM_DATA to its GStreamer decoder as one frame), H.264 as an Annex-B byte stream with its
parameter sets in band.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from fractions import Fraction

import numpy as np

from spice.proto.display import DisplayCap

log = logging.getLogger("spice.display")

# SpiceVideoCodecType (STREAM_CREATE codec_type, PREFERRED_VIDEO_CODEC_TYPE)
MJPEG, VP8, H264, VP9, H265 = 1, 2, 3, 4, 5
NAMES = {MJPEG: "mjpeg", VP8: "vp8", H264: "h264"}
BY_NAME = {v: k for k, v in NAMES.items()}
#: the display cap a client announces for each codec (with MULTI_CODEC)
CAP_OF = {MJPEG: DisplayCap.CODEC_MJPEG, VP8: DisplayCap.CODEC_VP8, H264: DisplayCap.CODEC_H264}
#: our default order: MJPEG first (its encode is 5-10x cheaper: 7 ms against 27 (x264) or 43 ms (libvpx)
#: of CPU per 1080p frame here), the others for links where bytes count (a tenth of MJPEG's)
DEFAULT_ORDER = (MJPEG, H264, VP8)
NOMINAL_FPS = 30
KEYFRAME_EVERY = 300  # frames: a decoder that lost its way recovers within this many
_LIBS = {VP8: "libvpx", H264: "libx264"}


def parse_codecs(text: str) -> tuple[int, ...]:
    """``"h264,mjpeg"`` -> codec types, in that order (ValueError for unknown names or an empty list)."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in BY_NAME]
    if bad or not names:
        raise ValueError(f"unknown video codec(s) {', '.join(bad) or '(none)'}: choose from {', '.join(BY_NAME)}")
    return tuple(dict.fromkeys(BY_NAME[n] for n in names))


def client_codecs(display_caps: set[int] | frozenset[int]) -> frozenset[int]:
    """Codecs a client decodes: MJPEG for a client without MULTI_CODEC, else what it announces."""
    if DisplayCap.MULTI_CODEC not in display_caps:
        return frozenset({MJPEG})
    return frozenset(c for c, cap in CAP_OF.items() if cap in display_caps)


@functools.cache
def available(codec: int) -> bool:
    """True when this codec can be encoded here (MJPEG always; the others need PyAV's encoder)."""
    if codec == MJPEG:
        return True
    try:
        import av

        av.codec.Codec(_LIBS[codec], "w")
    except Exception as err:  # PyAV missing, or built without the library
        log.info("video codec %s unavailable: %s", NAMES.get(codec, codec), err)
        return False
    return True


def choose(order: tuple[int, ...], offered: frozenset[int], width: int, height: int) -> int | None:
    """The first codec of ``order`` the client decodes and we can encode for a ``width`` x ``height``
    stream (H.264's 4:2:0 frames need even sizes), or None."""
    for codec in order:
        if codec in offered and available(codec) and not (codec == H264 and (width | height) & 1):
            return codec
    return None


def crf_for(codec: int, quality: int) -> int:
    """A constant-rate factor for a JPEG-style ``quality`` (20..90): the stream adaptation's knob."""
    q = max(1, min(100, quality))
    if codec == VP8:  # libvpx 4..63
        return max(4, min(63, round(4 + (100 - q) * 0.55)))
    return max(0, min(51, round(16 + (100 - q) * 0.3)))  # libx264 0..51


class EncoderError(Exception):
    """An H.264 / VP8 encoder could not be made or refused a frame."""


class InterFrameEncoder:
    """One client's VP8 or H.264 encoder for one stream of ``width`` x ``height`` BGRX frames."""

    def __init__(self, codec: int, width: int, height: int, quality: int) -> None:
        self.codec, self.width, self.height, self.quality = codec, width, height, quality
        self.frames = 0
        try:
            self._ctx = self._open()
        except Exception as err:  # PyAV raises its FFmpeg errors, ValueError, ...
            raise EncoderError(f"{NAMES[codec]} {width}x{height}: {err}") from err

    def _open(self):
        import av

        codec, width, height = self.codec, self.width, self.height
        ctx = av.CodecContext.create(_LIBS[codec], "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        # frame numbers at a nominal 30 fps, not wall-clock times: the rate control then budgets the same
        # bits per frame however fast frames come (and the output does not depend on the timing)
        ctx.time_base = Fraction(1, NOMINAL_FPS)
        ctx.gop_size = KEYFRAME_EVERY
        crf = str(crf_for(codec, self.quality))
        if codec == VP8:
            # constrained quality: crf within a generous ceiling (bits per pixel at 30 fps)
            ctx.bit_rate = max(500_000, width * height * 30 // 4)
            ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "crf": crf,
                           "error-resilient": "1", "threads": "2"}
        else:
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": crf, "bf": "0",
                           "threads": "2"}
        ctx.open()
        return ctx

    def encode(self, pixels: np.ndarray, key: bool = False) -> bytes:
        """The next compressed frame: ``pixels`` (``(height, width, 4)`` BGRX); ``key``: a key frame (H.264:
        an IDR with its parameter sets), which a decoder can start from."""
        import av

        if self._ctx is None:
            raise EncoderError("encoder closed")
        try:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="bgra")
            frame.pts = self.frames
            if key:
                frame.pict_type = av.video.frame.PictureType.I
            data = b"".join(bytes(p) for p in self._ctx.encode(frame))
        except Exception as err:
            raise EncoderError(f"{NAMES[self.codec]} frame: {err}") from err
        self.frames += 1
        return data

    def close(self) -> None:
        self._ctx = None  # (PyAV frees the codec context with the object)


#: encoded frames a shared encoder keeps for members that are a take or two behind
SHARED_FRAMES_KEPT = 4


class SharedEncoder:
    """One stream's VP8 / H.264 encoder whose frames go to every member client, each frame encoded once.

    Frames are numbered from 1 as encoded (``seq``); a member remembers the last one it was sent and asks
    for those after it (:meth:`after`).  The first member to want a newer picture encodes it
    (:meth:`encode`).  A member joining once the first frame is gone makes the next frame a key frame."""

    def __init__(self, codec: int, width: int, height: int, quality: int) -> None:
        self.codec = codec
        self._encoder = InterFrameEncoder(codec, width, height, quality)
        self._frames: deque[tuple[int, bytes]] = deque(maxlen=SHARED_FRAMES_KEPT)
        self.seq = 0  # the last frame encoded
        self.serial = -1  # the stream's frame serial it showed
        self.members = 0
        self._key_wanted = False

    def join(self) -> int:
        """Add a member; its starting point for :meth:`after`: the first frame while it is still kept (the
        clients a stream starts for join one after the other), else the next frame, made a key frame."""
        self.members += 1
        if not self.seq or self._frames[0][0] == 1:
            return 0
        self._key_wanted = True
        return self.seq

    def leave(self) -> bool:
        """Remove a member; True when none is left (the encoder is closed)."""
        self.members -= 1
        if self.members > 0:
            return False
        self._encoder.close()
        return True

    def encode(self, serial: int, pixels: np.ndarray) -> bytes:
        """Encode the stream's picture ``serial`` as the next frame, and return it (EncoderError passes
        through)."""
        data = self._encoder.encode(pixels, key=self._key_wanted)
        self._key_wanted = False
        self.seq += 1
        self.serial = serial
        self._frames.append((self.seq, data))
        return data

    def after(self, seq: int) -> list[bytes] | None:
        """The frames encoded after ``seq``, oldest first; None when some of them are no longer kept."""
        if seq >= self.seq:
            return []
        if not self._frames or self._frames[0][0] > seq + 1:
            return None
        return [data for n, data in self._frames if n > seq]
