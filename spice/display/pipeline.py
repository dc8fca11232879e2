"""From guest frames to per-client drawing commands: coalesced damage, pass-through fills and copies,
one encode per (frame, rectangle, format) shared by every client, MJPEG streams for video areas.

Pull model: the pipeline keeps, per client, only a bounded state — a dirty-cell mask, a short list of
pass-through :class:`DrawFill` / :class:`CopyBits`, a few control commands — and builds drawing
commands when the client :meth:`DisplayClient.take`\\ s.  A client that takes rarely gets merged
damage, never a growing queue.

Invariant per client: after applying its pending commands, every clean cell of the client's picture
equals the latest frame; dirty cells are sent from the pipeline's snapshot of that frame at take
time.  Fills and copies pass through only while the client keeps up (at most
``max_passthrough_frames`` frames between takes); otherwise they degrade to damage.  Inside an
active video stream the client's picture is the latest JPEG frame instead (lossy clients only); when
the stream ends its area is redrawn losslessly.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from spice.display import glz, glzref, images, video
from spice.display.caps import ImageCaps, ImageType
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
from spice.display.fills import FillRun
from spice.display.region import CellGrid, marked
from spice.display.streams import MAX_STREAMS, VideoDetector, VideoStream, looks_photographic, overlap
from spice.guests.base import CopyRect, Damage, Fill, Frame, Guest, GuestListener, Rect

log = logging.getLogger("spice.display")
MAX_BAND_PIXELS = 64 * 1024  # 256 KiB of raw BGRX per DrawCopy
MAX_BAND_WIDTH = 2048
FILL_CMD_BYTES = 41
COPY_BITS_BYTES = 29
DRAW_COPY_OVERHEAD = 57
STREAM_DATA_OVERHEAD = 12
STREAM_QUALITY = 60  # MJPEG quality of small streams; big ones go lower (stream_quality)
STREAM_QUALITY_BIG = 50  # from this many pixels (STREAM_BIG_PIXELS) on: ~35 KB per 1024x768 frame
STREAM_BIG_PIXELS = 640 * 480
MAX_EXACT_RECTS = 32  # a damage-only frame with at most this many changed boxes is sent box by box
#: frames that change at most this many pixels (a typed key) are written before video detection runs
SMALL_FRAME_PIXELS = 4096
SMALL_BAND_PIXELS = 4096  # bands this small never get GLZ (references or a trial encode)
GLZ_AFTER_BYTES = 2048  # bigger bands (spice-gtk): ZLIB_GLZ_RGB is tried when LZ4 needs more than this
JPEG_MIN_PIXELS = 16384  # lossy clients get photographic pieces at least this big as JPEG
JPEG_QUALITY = 80
CACHE_MIN_PIXELS = 64  # lossless images at least this big go through the client's pixmap cache (a glyph: ~100)
CACHE_LIMIT_PIXELS = 8 << 20  # at most this much of a client's pixmap cache is used (32 MiB of BGRX)
REFRESH_DELAY = 3.0  # lossy (JPEG) areas are redrawn losslessly after this long without change
STREAM_LOOK_EVERY = 8  # frames drawn inside a running stream: its area is checked this often
NOT_VIDEO_RECHECK = 1.0  # a busy area that is not photographic is looked at again after this long
STREAM_QUALITY_STEP = 10  # stream adaptation: quality moves by this much per report
STREAM_QUALITY_MIN = 20
MAX_INTER_FRAME_PIXELS = 2 * 1920 * 1088  # see DisplayPipeline.max_inter_frame_pixels
STREAM_MAX_INTERVAL = 0.2  # adaptation never goes below 5 stream frames per second
STREAM_BAD_DROPS = 0.1  # a report with more than this share of dropped frames means "too much"


def _fastest_hash() -> Callable:
    """SHA-256 where the CPU has SHA instructions (2.5x blake2b's speed: 2.7 ms per 1024x768 picture),
    else blake2b: the one that hashes a 256 KiB sample faster here."""
    sample = bytes(1 << 18)
    best = {}
    for make in (hashlib.sha256, hashlib.blake2b):
        t0 = time.perf_counter()
        for _ in range(3):
            make(sample).digest()
        best[make] = time.perf_counter() - t0
    return min(best, key=best.__getitem__)


_CONTENT_HASH = _fastest_hash()  # pixmap-cache ids: the first 8 bytes of its digest


@dataclass
class PipelineStats:
    frames: int = 0
    encodes: int = 0
    shared: int = 0  # encode-cache hits (a second client took the same rect at the same serial)
    fills: int = 0
    encoded_bytes: int = 0
    encode_seconds: float = 0.0
    streams: int = 0
    cache_hits: int = 0
    stream_frames: int = 0
    by_type: dict[int, int] = field(default_factory=dict)
    glz_refs: int = 0  # images with matches into a client's GLZ window (encoded for that client)


def stream_quality(rect: Rect) -> int:
    """MJPEG quality for a stream of this size (libspice-server's MJPEG encoder also runs at
    quality 50-70 on a fast link; no adaptation to the client's reports yet)."""
    return STREAM_QUALITY_BIG if rect.area >= STREAM_BIG_PIXELS else STREAM_QUALITY


def command_size(cmd: DrawCommand) -> int:
    """Approximate message body size of a command on the wire."""
    if isinstance(cmd, DrawCopy):
        return DRAW_COPY_OVERHEAD + len(cmd.image)
    if isinstance(cmd, DrawFill):
        return FILL_CMD_BYTES + (4 + len(cmd.clip) if cmd.clip else 0)
    if isinstance(cmd, CopyBits):
        return COPY_BITS_BYTES
    if isinstance(cmd, StreamData):
        return STREAM_DATA_OVERHEAD + len(cmd.data)
    if isinstance(cmd, StreamCreate):
        return 51
    return 20


class DisplayClient:
    """One viewer's view of the pipeline (see the module docstring)."""

    def __init__(self, pipeline: DisplayPipeline, caps: ImageCaps, wakeup: Callable[[], None]) -> None:
        self._pipeline = pipeline
        self.caps = caps
        self._wakeup = wakeup
        self._full = True
        self._dirty = pipeline.grid.new_mask()
        # False only while _dirty is known to be empty: every write that may mark it sets this first,
        # so the per-frame emptiness checks skip the mask scan for a client that keeps up
        self._maybe_dirty = False
        self._ctrl: list[DrawCommand] = []  # Resize / StreamCreate / StreamDestroy, in order
        self._cmds: list[DrawCommand] = []  # pass-through DrawFill / CopyBits
        self._frames_pending = 0
        self._stream: VideoStream | None = None
        self._stream_serial = -1
        self._stream_create: StreamCreate | None = None  # how this client's stream was opened (its codec)
        self._video: video.InterFrameEncoder | None = None  # its own VP8 / H.264 encoder (MJPEG: shared encodes)
        self._shared: video.SharedEncoder | None = None  # or the stream's shared one, and the last frame of it
        self._shared_seq = 0  # it was sent
        self._solo = False  # fell behind the shared encoder (or its frame rate was lowered): its own till the end
        #: the client's own codec order (PREFERRED_VIDEO_CODEC_TYPE): it reorders the server's list (never
        #: adds to it); empty: the server's order
        self.codec_preference: tuple[int, ...] = ()
        self._refused_codecs: set[int] = set()  # codecs whose stream the client could not decode
        self._no_mjpeg = False  # MJPEG proved too big for this client's link (see _leave_mjpeg)
        self._codec_ok: bool | None = None  # some codec works for this client's streams (None: find out)
        self._open_streams: set[int] = set()
        self._exact_ok = False  # dirty == exactly the latest frame's changes (send its exact boxes)
        self._lossy = pipeline.grid.new_mask()  # cells showing JPEG content
        self._refresh = pipeline.grid.new_mask()  # cells to redraw losslessly
        self._lossy_since = 0.0
        limit = min(caps.cache_pixels, CACHE_LIMIT_PIXELS) if pipeline.image_cache else 0
        self._cache_limit = limit
        self._cache: OrderedDict[int, int] = OrderedDict()  # image id -> pixels, least recently used first
        self._cache_used = 0
        self.glz = glzref.GlzHistory()  # GLZ ids and the images this client's GLZ window holds
        self._last_take = -1e9
        self._wake_handle: asyncio.TimerHandle | None = None
        self.taken_serial = 0
        self.bytes_taken = 0
        # stream adaptation (STREAM_REPORT): quality levels below the default, frame interval, verdict run
        self.streams_refused = False  # the client said it cannot decode our streams
        self.stream_quality_drop = 0
        self.stream_interval = 0.0
        self._good_reports = 0
        self._last_stream_frame = -1e9

    @property
    def lossy_allowed(self) -> bool:
        return self.caps.lossy if self._pipeline.lossy is None else self._pipeline.lossy

    @property
    def streams_allowed(self) -> bool:
        ok = self._codec_ok
        if ok is None:  # (checked on every frame: worked out again only when the codec choice changed)
            ok = self._codec_ok = self.stream_codec(2, 2) is not None
        return ok and self.lossy_allowed and not self.streams_refused

    def codecs_changed(self) -> None:
        """The codec order, the refused codecs or the MJPEG verdict changed: work out :attr:`streams_allowed`
        again."""
        self._codec_ok = None

    def _codec_order(self) -> tuple[int, ...]:
        server, pref = self._pipeline.video_codecs, self.codec_preference
        if not pref:
            return server
        return tuple(c for c in pref if c in server) + tuple(c for c in server if c not in pref)

    def _codecs(self) -> frozenset[int]:
        """The codecs this client decodes and did not refuse."""
        return self.caps.video_codecs - self._refused_codecs

    def stream_codec(self, width: int, height: int, inter_frame: bool = True) -> int | None:
        """The codec a ``width`` x ``height`` stream to this client uses: the first of its preference (else
        the server's order) that it decodes, did not refuse, and we encode (``inter_frame=False``: MJPEG
        or nothing)."""
        order, codecs = self._codec_order(), self._codecs()
        if not inter_frame:
            codecs &= {video.MJPEG}
        elif self._no_mjpeg:  # (the link proved too slow for MJPEG: the others first, MJPEG if none fits)
            return video.choose(order, codecs - {video.MJPEG}, width, height) or video.choose(order, codecs, width, height)
        return video.choose(order, codecs, width, height)

    def set_codec_preference(self, codecs: list[int]) -> None:
        """The client's PREFERRED_VIDEO_CODEC_TYPE: the codecs of the server's list it names come first,
        in its order, then the rest of the server's (an operator's ``--video-codecs mjpeg`` stays MJPEG
        only); the next stream uses it."""
        self.codec_preference = tuple(dict.fromkeys(codecs))
        self.codecs_changed()

    @property
    def jpeg_allowed(self) -> bool:
        return self.lossy_allowed and self._pipeline.jpeg_stills and ImageType.JPEG in self.caps.types

    # -- consumer side
    @property
    def pending(self) -> bool:
        s = self._stream
        return (self._full or bool(self._ctrl) or bool(self._cmds) or self._dirty_marked()
                or (s is not None and s.frame_serial > self._stream_serial))

    def _dirty_marked(self) -> bool:
        if self._maybe_dirty and not marked(self._dirty):
            self._maybe_dirty = False
        return self._maybe_dirty

    def take(self, max_bytes: int | None = None) -> list[DrawCommand]:
        """Commands that bring this client from its previous take to the latest frame.

        With ``max_bytes`` the answer stops after about that many bytes (at least one command);
        the rest stays pending.
        """
        p = self._pipeline
        active = p._stream
        if active is not None and self._stream is None and not self._full and self.streams_allowed:
            self._join(active)  # attached (or given its whole screen) while the video played: join it now
        if (self._cmds and not self._ctrl and not self._full and self._stream is None
                and not self._dirty_marked() and not marked(self._refresh)):
            return self._take_passthrough()
        out: list[DrawCommand] = list(self._ctrl)
        self._ctrl.clear()
        for cmd in out:
            if isinstance(cmd, StreamCreate):
                self._open_streams.add(cmd.stream_id)
            elif isinstance(cmd, StreamDestroy):
                self._open_streams.discard(cmd.stream_id)
        if self._full:
            self._maybe_dirty = True
            self._dirty[:] = True
            self._full = False
        out.extend(self._cmds)
        self._cmds.clear()
        self._frames_pending = 0
        s = self._stream
        if s is not None:
            self._dirty[s.cells] = False
            now = time.monotonic()
            if s.frame_serial > self._stream_serial and now - self._last_stream_frame >= self.stream_interval:
                try:
                    frames = self._stream_frames(s)
                except video.EncoderError as err:  # as if the client could not decode it: the next codec
                    log.warning("video encoder failed: %s", err)
                    self.stream_report(0, 0xFFFFFFFF, 0)
                else:
                    out.extend(f for f in frames if f.data)  # (an encoder may hold a frame back)
                    self._stream_serial = s.frame_serial
                    self._last_stream_frame = now
        total = sum(command_size(c) for c in out)
        grid = p.grid
        jpeg = self.jpeg_allowed
        dirty = self._dirty
        refresh_any = marked(self._refresh)
        bands: list[tuple[Rect, bool]] = []
        if self._dirty_marked():  # (few mask operations: a key's frame is on the key-to-pixel path)
            refresh = dirty & self._refresh if refresh_any else None
            if refresh is not None and not refresh.any():
                refresh = None
            exact = p._exact if (self._exact_ok and s is None and refresh is None) else None
            rects = exact if exact is not None else grid.rects(dirty if refresh is None else dirty & ~refresh)
            bands = [(b, jpeg) for r in rects for b in p.bands(r)]
            if refresh is not None:
                bands += [(b, False) for r in grid.rects(refresh) for b in p.bands(r)]
            dirty[:] = False
            self._maybe_dirty = False
        if refresh_any:
            self._refresh[:] = False
        self._exact_ok = False
        for i, (band, lossy_ok) in enumerate(bands):
            if max_bytes is not None and total >= max_bytes and out:
                self._maybe_dirty = True
                for rest, rest_lossy in bands[i:]:
                    self._dirty[grid.outer(rest)] = True
                    if not rest_lossy and jpeg:
                        self._refresh[grid.outer(rest)] = True
                break
            if self._cache_limit and not lossy_ok and band.area >= CACHE_MIN_PIXELS:
                image_id = p.content_id(band)  # the client may have it already: no encode at all
                if image_id in self._cache:
                    self._cache.move_to_end(image_id)
                    p.stats.cache_hits += 1
                    cmd = p.from_cache(band, image_id)
                    if jpeg:
                        self._lossy[grid.inner(band)] = False
                    out.append(cmd)
                    total += command_size(cmd)
                    continue
            cmd = p.encode_glz_refs(band, self.caps, self.glz)  # per client: matches into its GLZ window
            own = cmd is not None
            if cmd is None:
                cmd = p.encode(band, self.caps, lossy_ok)
            if (self._cache_limit and isinstance(cmd, DrawCopy) and band.area >= CACHE_MIN_PIXELS
                    and cmd.image[8] != ImageType.JPEG):
                cmd = self._through_cache(cmd, out, shared=not own)
            if jpeg:
                if isinstance(cmd, DrawCopy) and cmd.image[8] == ImageType.JPEG:
                    self._lossy[grid.outer(band)] = True
                    self._lossy_since = time.monotonic()
                    p._arm_timer()
                else:
                    self._lossy[grid.inner(band)] = False
            if isinstance(cmd, DrawCopy) and cmd.image[8] == ImageType.ZLIB_GLZ_RGB:
                cmd = DrawCopy(cmd.rect, glz.stamp(cmd.image, *self.glz.add(band.top, band.left,
                                                                      *p.glz_picture(band, self.glz))))
            out.append(cmd)
            total += command_size(cmd)
        self.taken_serial = p.serial
        self.bytes_taken += total
        self._last_take = time.monotonic()
        return out

    def _take_passthrough(self) -> list[DrawCommand]:
        """:meth:`take` when only pass-through fills and copies wait (a typed key's echo): no mask work."""
        out, self._cmds = self._cmds, []
        self._frames_pending = 0
        self._exact_ok = False
        self.taken_serial = self._pipeline.serial
        self.bytes_taken += sum(command_size(c) for c in out)
        self._last_take = time.monotonic()
        return out

    def _through_cache(self, cmd: DrawCopy, out: list[DrawCommand], shared: bool = True) -> DrawCopy:
        """FROM_CACHE if this client has the image, else the image with CACHE_ME (after an INVAL_LIST
        for what it evicts); the server owns the client's cache accounting (spice.md §6.9)."""
        p = self._pipeline
        image_id = int.from_bytes(cmd.image[:8], "little")
        area = cmd.rect.area
        if image_id in self._cache:
            self._cache.move_to_end(image_id)
            p.stats.cache_hits += 1
            return p.from_cache(cmd.rect, image_id)
        if area > self._cache_limit:
            return cmd
        evicted = []
        while self._cache and self._cache_used + area > self._cache_limit:
            old, pixels = self._cache.popitem(last=False)
            self._cache_used -= pixels
            evicted.append(old)
        if evicted:
            out.append(InvalList(tuple(evicted)))
        self._cache[image_id] = area
        self._cache_used += area
        if not shared:  # this client's own image (GLZ references): flagged here, not in the shared cache
            return DrawCopy(cmd.rect, images.with_cache_me(cmd.image))
        return p.cache_me(cmd)

    def stream_report(self, num_frames: int, num_drops: int, last_frame_delay: int) -> None:
        """Adapt to a STREAM_REPORT: dropped or late frames lower the MJPEG quality, then (a client that
        decodes H.264 or VP8) change to that codec, then lower the frame rate (H.264 / VP8: the frame rate
        only); two good reports in a row win back a step (frame rate first).  ``num_frames == 0``
        with ``num_drops == 0xFFFFFFFF`` means the client cannot decode the stream: its codec is not used again
        for this client (the video goes on in the next codec it takes; none left: no more streams)."""
        if num_frames == 0 and num_drops == 0xFFFFFFFF:
            s, create = self._stream, self._stream_create
            if create is not None:  # that codec fails on this client (a GStreamer decoder missing): not again
                self._refused_codecs.add(create.codec)
                self.codecs_changed()
                log.info("display client cannot decode %s streams", video.NAMES.get(create.codec, create.codec))
            self.streams_refused = self.stream_codec(2, 2) is None
            if s is not None:
                self._leave(s)
                if not self.streams_refused:
                    self._join(s)  # the same video in the next codec
                self._notify()
            return
        total = num_frames + num_drops
        if (total and num_drops / total > STREAM_BAD_DROPS) or last_frame_delay < 0:
            self._good_reports = 0
            top = max(0, STREAM_QUALITY - STREAM_QUALITY_MIN)
            if self.stream_quality_drop < top and not self._inter_frame:
                self.stream_quality_drop += STREAM_QUALITY_STEP
            elif self._inter_frame or not self._leave_mjpeg():
                self.stream_interval = min(STREAM_MAX_INTERVAL, max(1 / 30, 2 * self.stream_interval))
            return
        self._good_reports += 1
        if self._good_reports >= 2:
            self._good_reports = 0
            if self.stream_interval:
                self.stream_interval = 0.0 if self.stream_interval <= 1 / 30 else self.stream_interval / 2
            elif self.stream_quality_drop:
                self.stream_quality_drop -= STREAM_QUALITY_STEP

    def detach(self) -> None:
        if self._wake_handle is not None:
            self._wake_handle.cancel()
            self._wake_handle = None
        self._pipeline._detach(self)

    # -- producer side (called by the pipeline)
    def _notify(self) -> None:
        """Wake the consumer, at most ``max_fps`` times a second."""
        fps = self._pipeline.max_fps
        if fps:
            delay = self._last_take + 1.0 / fps - time.monotonic()
            if delay > 0:
                if self._wake_handle is None:
                    try:
                        loop = asyncio.get_running_loop()
                    except RuntimeError:
                        loop = None
                    if loop is not None:
                        self._wake_handle = loop.call_later(delay, self._fire)
                        return
                else:
                    return
        self._wakeup()

    def _fire(self) -> None:
        self._wake_handle = None
        if self.pending:
            self._wakeup()

    def _reset(self) -> None:
        self._full = True
        self._ctrl = [StreamDestroy(i) for i in sorted(self._open_streams)]
        self._ctrl.append(Resize(self._pipeline.grid.width, self._pipeline.grid.height))
        self._cmds.clear()
        self._dirty = self._pipeline.grid.new_mask()
        self._maybe_dirty = False
        self._frames_pending = 0
        self._exact_ok = False
        self._stream = None
        self._drop_video()
        self._lossy = self._pipeline.grid.new_mask()
        self._refresh = self._pipeline.grid.new_mask()

    def _join(self, s: VideoStream) -> bool:
        w, h = s.rect.width, s.rect.height
        codec = self.stream_codec(w, h)
        if codec not in (None, video.MJPEG) and not self._pipeline._reserve_inter_frame(w * h):
            codec = self.stream_codec(w, h, inter_frame=False)  # the server's H.264 / VP8 budget is spent
        if codec is None:
            return False
        self._stream_create = StreamCreate(s.id, s.rect, codec)
        self._ctrl.append(self._stream_create)
        self._stream = s
        self._stream_serial = -1
        self._dirty[s.cells] = False
        return True

    def _stream_frames(self, s: VideoStream) -> list[StreamData]:
        """What this client is sent of ``s``'s latest picture: one MJPEG frame (shared encodes, at its
        quality), or VP8 / H.264 frames from the stream's shared encoder (those after the last it was sent)
        or, for a client that fell behind it or whose frame rate is lowered, from its own encoder.  Their
        quality stays the default: a new quality would need a new encoder, and so a key frame, the biggest
        frame there is (the adaptation lowers the frame rate instead)."""
        p = self._pipeline
        codec = self._stream_create.codec if self._stream_create is not None else video.MJPEG
        if codec == video.MJPEG:
            return [p.stream_frame(s, max(STREAM_QUALITY_MIN, stream_quality(s.rect) - self.stream_quality_drop))]
        if self._shared is not None and self.stream_interval:  # fewer frames than the others: its own
            self._leave_shared()
            self._solo = True
        if self._shared is None and self._video is None and not self._solo:
            self._shared = p.shared_encoder(self._stream_create)
            self._shared_seq = self._shared.join()
        shared = self._shared
        if shared is not None:
            if shared.serial < s.frame_serial:
                p.shared_stream_frame(s, shared)
            frames = shared.after(self._shared_seq)
            if frames is not None:
                self._shared_seq = shared.seq
                return [StreamData(s.id, s.rect, data, s.frame_time) for data in frames]
            self._leave_shared()  # too far behind the others: its own encoder from here (a key frame)
            self._solo = True
        if self._video is None:
            self._video = video.InterFrameEncoder(codec, s.rect.width, s.rect.height, stream_quality(s.rect))
        return [p.own_stream_frame(s, self._video)]

    def _leave_shared(self) -> None:
        if self._shared is not None:
            self._pipeline._leave_shared(self._stream_create)
            self._shared = None

    @property
    def _inter_frame(self) -> bool:
        return self._stream_create is not None and self._stream_create.codec != video.MJPEG

    def _leave_mjpeg(self) -> bool:
        """MJPEG at its lowest quality is still too much for this client's link: its streams go on in the
        next codec of the order it decodes (H.264 or VP8: a tenth of the bytes for 3-6x the CPU), at the
        default quality.  False when there is none (or the stream is not MJPEG)."""
        s, create = self._stream, self._stream_create
        if s is None or create is None or create.codec != video.MJPEG or self._no_mjpeg:
            return False
        codec = video.choose(self._codec_order(), self._codecs() - {video.MJPEG}, s.rect.width, s.rect.height)
        if codec is None:
            return False
        self._no_mjpeg = True
        self.codecs_changed()
        log.info("display client: MJPEG at its lowest quality drops frames, streams go on in %s", video.NAMES[codec])
        self.stream_quality_drop = 0
        self._leave(s)
        self._join(s)
        self._notify()
        return True

    def _drop_video(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None
        self._leave_shared()
        self._solo = False
        create = self._stream_create
        if create is not None and create.codec != video.MJPEG:
            self._pipeline._release_inter_frame(create.rect.width * create.rect.height)
        self._stream_create = None

    def _leave(self, s: VideoStream) -> None:
        create = self._stream_create
        if create is not None and create in self._ctrl:  # never taken: forget it (a stalled client's backlog)
            self._ctrl.remove(create)
        else:
            self._ctrl.append(StreamDestroy(s.id))
        self._drop_video()
        self._stream = None
        self._maybe_dirty = True
        self._dirty[s.cells] = True  # lossless refresh of the area
        if self.jpeg_allowed:
            self._refresh[s.cells] = True

    def _refresh_lossy(self, now: float) -> bool:
        """Schedule a lossless redraw of JPEG areas that stayed unchanged; True if some remain lossy."""
        if not self._lossy_since or not marked(self._lossy):
            return False
        if now - self._lossy_since < self._pipeline.refresh_delay:
            return True
        self._refresh |= self._lossy
        self._maybe_dirty = True
        self._dirty |= self._lossy
        self._lossy[:] = False
        self._notify()
        return False

    def _degrade(self) -> None:
        grid = self._pipeline.grid
        if self._cmds:
            self._maybe_dirty = True
        for cmd in self._cmds:
            for r in cmd.clip_rects if isinstance(cmd, DrawFill) and cmd.clip else (cmd.rect,):
                self._dirty[grid.outer(r)] = True
        self._cmds.clear()

    def _absorb(self, events: list[tuple]) -> None:
        if self._full:
            return
        p = self._pipeline
        grid = p.grid
        dirty_any = self._dirty_marked()  # no dirty / lossy cells (a client that keeps up): skip mask work
        lossy_any = self._lossy_since > 0.0 and marked(self._lossy)  # (no JPEG sent yet: none)
        self._exact_ok = (not self._frames_pending and not self._cmds and not self._ctrl
                          and not dirty_any and events[-1][0] == "mask"
                          and all(ev[0] in ("fills", "copy") for ev in events[:-1]))
        self._frames_pending += 1
        passthrough = self._frames_pending <= p.max_passthrough_frames
        if not passthrough and self._cmds:
            self._degrade()
            dirty_any = True
        dirty = self._dirty
        lossy = self._lossy
        stream = self._stream
        for ev in events:
            kind = ev[0]
            if kind == "mask":
                dirty |= ev[1]
                dirty_any = True
            elif kind == "damage":
                dirty[grid.outer(ev[1])] = True
                dirty_any = True
            elif kind == "fills":  # a run of fills (fills.FillRun)
                run = ev[1]
                if passthrough:
                    if dirty_any:
                        dirty &= run.uncovered
                    if lossy_any:
                        lossy &= run.uncovered
                    self._cmds.extend(run.plain if self.caps.profile == "spice-html5" else run.batched)
                else:
                    dirty |= run.touched
                    dirty_any = True
            else:  # copy
                src, dest = ev[1], ev[2]
                if not passthrough or (stream is not None and not src.intersect(stream.rect).is_empty()):
                    dirty[grid.outer(dest)] = True
                    dirty_any = True
                    continue
                moved = None
                if dirty_any:
                    src_cells = dirty[grid.outer(src)]
                    if src_cells.all():
                        dirty[grid.outer(dest)] = True
                        continue
                    if src_cells.any():
                        moved = grid.new_mask()
                        grid.mark_translated(dirty, src, dest.left - src.left, dest.top - src.top, moved)
                    dirty[grid.inner(dest)] = False
                    if moved is not None:
                        dirty |= moved
                if lossy_any and lossy[grid.outer(src)].any():  # JPEG pixels move along: refresh them later
                    lossy[grid.outer(dest)] = True
                elif lossy_any:
                    lossy[grid.inner(dest)] = False
                self._cmds.append(CopyBits(src.left, src.top, dest))
        self._maybe_dirty = dirty_any  # (an upper bound: dirty_any is set by every write that marks)
        if len(self._cmds) > p.max_passthrough_cmds:
            self._degrade()
        if stream is not None:
            dirty[stream.cells] = False  # the next stream frame covers the area
        if self._exact_ok and len(events) > 1 and not np.array_equal(dirty, events[-1][1]):
            self._exact_ok = False  # a copy or fill left more to send than the frame's exact boxes


class DisplayPipeline:
    """Subscribes to a guest's frames and serves any number of :class:`DisplayClient`.

    ``max_fps`` caps how often a client is woken (frames in between are merged); ``streams``
    enables MJPEG video streams for clients whose caps allow lossy content.
    """

    def __init__(self, guest: Guest, *, cell: int = 8, max_band_pixels: int = MAX_BAND_PIXELS,
                 max_passthrough_frames: int = 4, max_passthrough_cmds: int = 1024,
                 refine: bool = True, max_fps: float | None = None, streams: bool = True,
                 stream_idle: float = 0.5, refresh_delay: float = REFRESH_DELAY,
                 image_cache: bool = True) -> None:
        self.guest = guest
        self.cell = cell
        self.max_band_pixels = max_band_pixels
        self.max_passthrough_frames = max_passthrough_frames
        self.max_passthrough_cmds = max_passthrough_cmds
        self.refine = refine
        self.max_fps = max_fps
        self.streams = streams
        self.stream_idle = stream_idle
        self.refresh_delay = refresh_delay
        self.image_cache = image_cache
        #: when set, every image is encoded with this type (tests, benchmarks), whatever the caps say
        self.force_type: ImageType | None = None
        #: when not None, overrides every client's ``caps.lossy`` (server policy: allow video streams
        #: and, with ``jpeg_stills``, JPEG for photographic still pieces)
        self.lossy: bool | None = None
        self.jpeg_stills = True
        self._video_codecs: tuple[int, ...] = video.DEFAULT_ORDER
        #: pixels of the VP8 / H.264 streams all clients may have encoded at once (one encoder per client
        #: and stream, 5x MJPEG's CPU): about two 1080p streams; past it, clients get MJPEG, so that codec
        #: choices (a client's own PREFERRED_VIDEO_CODEC_TYPE too) cannot starve the other sessions
        self.max_inter_frame_pixels = MAX_INTER_FRAME_PIXELS
        self._inter_frame_pixels = 0
        #: VP8 / H.264 encoders shared by the clients of a stream, by how they opened it (id, rect, codec)
        self._shared_encoders: dict[StreamCreate, video.SharedEncoder] = {}
        self.stats = PipelineStats()
        self._clients: list[DisplayClient] = []
        self._encoded: dict[tuple, DrawCommand] = {}
        self._ids = itertools.count(1)
        self._stream_ids = itertools.count(0)
        self._stream: VideoStream | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_frame = False
        self._after: list[Callable[[], None]] = []
        self.serial = guest.frame_serial
        self._set_geometry()
        self._listener = GuestListener(on_frame=self._on_frame, on_resize=self._on_resize)
        guest.add_listener(self._listener)

    # -- public
    @property
    def video_codecs(self) -> tuple[int, ...]:
        """Stream codecs in the server's order of preference (a client's PREFERRED_VIDEO_CODEC_TYPE reorders
        them for that client); each client gets the first it decodes."""
        return self._video_codecs

    @video_codecs.setter
    def video_codecs(self, codecs: tuple[int, ...]) -> None:
        self._video_codecs = tuple(codecs)
        for c in self._clients:
            c.codecs_changed()

    def attach(self, caps: ImageCaps, wakeup: Callable[[], None]) -> DisplayClient:
        """A new client; its first :meth:`DisplayClient.take` returns the whole screen."""
        client = DisplayClient(self, caps, wakeup)
        self._clients.append(client)
        return client

    def close(self) -> None:
        self.guest.remove_listener(self._listener)
        for c in list(self._clients):
            c.detach()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def clients(self) -> tuple[DisplayClient, ...]:
        return tuple(self._clients)

    @property
    def snapshot(self) -> np.ndarray:
        """The framebuffer as of the latest frame (what the clients are brought to)."""
        return self._shot

    @property
    def active_stream(self) -> VideoStream | None:
        return self._stream

    # -- guest events
    def _set_geometry(self) -> None:
        fb = self.guest.framebuffer
        # a guest whose framebuffer only changes while it makes a frame is its own snapshot
        self._stable = bool(getattr(self.guest, "stable_framebuffer", False))
        self._shot = fb if self._stable else np.array(fb, dtype=np.uint8, copy=True)
        h, w = fb.shape[:2]
        self.grid = CellGrid(w, h, self.cell)
        self._detector = VideoDetector(self.grid)
        self._not_video: tuple[Rect, float] | None = None
        self._stream = None
        self._stream_frames = 0  # frames that drew inside the running stream only (_stream_own_frame)
        self._stream_box: Rect | None = None  # what they drew since the last look
        self._exact = None
        self._drawn: np.ndarray | None = self.grid.new_mask()  # cells drawn by the latest frame
        self._encoded.clear()

    def _on_resize(self, width: int, height: int) -> None:
        self._set_geometry()
        for c in self._clients:
            c._reset()
            c._notify()

    def after_frame(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` as soon as the frame being handled is absorbed by every client (a consumer that
        wants to take at once, without re-entering the pipeline); False when no frame is being handled."""
        if not self._in_frame:
            return False
        self._after.append(fn)
        return True

    def _on_frame(self, frame: Frame) -> None:
        self._in_frame = True
        try:
            video = self._handle_frame(frame)
        finally:
            self._in_frame = False
            after, self._after = self._after, []
            for fn in after:
                fn()
        if video is not None:  # a small drawing: video detection after the consumers wrote it (key-to-pixel)
            before = self._stream
            self._video(*video)
            s = self._stream
            if s is not None and s is not before:
                for c in self._clients:
                    if c._stream is s:
                        c._notify()

    def _handle_frame(self, frame: Frame) -> tuple[int, float] | None:
        """Absorb ``frame``; returns the arguments of a deferred :meth:`_video` call, if any."""
        fb = self.guest.framebuffer
        if self._stable and fb is not self._shot and fb.shape == self._shot.shape and fb.base is not None \
                and fb.base is self._shot.base:
            self._shot = fb  # the same pixels slid through their backing array (a tall copy, builtin RowSlider)
        if fb.shape != self._shot.shape or (self._stable and fb is not self._shot):
            self.serial = frame.serial
            self._on_resize(fb.shape[1], fb.shape[0])
            return None
        events, touched, changed = self._events(frame, fb)
        if not self._stable:
            for r in touched:
                self._shot[r.top:r.bottom, r.left:r.right] = fb[r.top:r.bottom, r.left:r.right]
        self.serial = frame.serial
        self.stats.frames += 1
        self._encoded.clear()
        if not events:
            return None
        deferred = None
        if self.streams and any(c.streams_allowed for c in self._clients):
            now = time.monotonic()
            s = self._stream
            if s is not None and (changed[s.cells].any() if changed is not None
                                  else any(not r.intersect(s.rect).is_empty() for r in touched)):
                s.frame_serial, s.frame_time, s.last_change = frame.serial, now, now
            if self._drawn is None:
                pass  # pixels only moved: nothing for the video detector
            elif s is not None and all(s.rect.left <= r.left and r.right <= s.rect.right and s.rect.top <= r.top
                                       and r.bottom <= s.rect.bottom for r in touched):
                self._stream_own_frame(s, touched)
            elif sum(r.area for r in touched) <= SMALL_FRAME_PIXELS:
                deferred = (frame.serial, now)
            else:
                self._video(frame.serial, now)
        for c in list(self._clients):
            c._absorb(events)
            if c.pending:
                c._notify()
        return deferred

    def _events(self, frame: Frame, fb: np.ndarray) -> tuple[list[tuple], list[Rect], np.ndarray | None]:
        """Normalise a frame's ops (clipped) into absorb events, the rectangles it touched and the
        mask of cells it changed (None for a frame of copies alone: no cell masks for a typed key's echo)."""
        grid = self.grid
        touched: list[Rect] = []
        events: list[tuple] = []
        self._exact = None
        if all(isinstance(op, CopyRect) for op in frame.ops):
            for op in frame.ops:
                src, dest = self._clip_copy(op)
                if not src.is_empty():
                    events.append(("copy", src, dest))
                    touched.append(dest)
            self._drawn = None  # nothing drawn: moved pixels are no video
            return events, touched, None
        changed = grid.new_mask()
        damage_only = all(isinstance(op, Damage) for op in frame.ops)
        self._drawn = changed  # cells drawn (not just moved by a copy) in this frame
        if damage_only and self._stable:  # exact damage already (and no old pixels to refine against)
            exact = []
            for op in frame.ops:
                r = grid.clip(op.rect)
                if not r.is_empty():
                    changed[grid.outer(r)] = True
                    exact.append(r)
                    touched.append(r)
            if exact:
                events.append(("mask", changed))
                if len(exact) <= MAX_EXACT_RECTS:
                    self._exact = exact
            return events, touched, changed
        if damage_only and self.refine:
            exact = []
            for op in frame.ops:
                r = grid.clip(op.rect)
                if r.is_empty():
                    continue
                if r.area <= SMALL_FRAME_PIXELS:  # a small change (a typed key): its box's cells
                    box = self._changed_box(fb, r)
                    if box is not None:
                        changed[grid.outer(box)] = True
                else:
                    ys, xs = grid.outer(r)
                    box = self._refine_into(changed, fb, ys, xs)
                if box is not None:
                    exact.append(box)
                touched.append(r)
            if changed.any():
                events.append(("mask", changed))
                if len(exact) <= MAX_EXACT_RECTS:
                    self._exact = exact
            return events, touched, changed
        # damage after every fill and copy (as the guest's Surface orders them): refined like a
        # damage-only frame where no fill or copy of this frame lands in it (see _refine_after)
        first_damage = next((i for i, op in enumerate(frame.ops) if isinstance(op, Damage)), len(frame.ops))
        late = self.refine and all(isinstance(op, Damage) for op in frame.ops[first_damage:])
        fills: list[Fill] = []
        for op in itertools.chain(frame.ops, (None,)):
            if isinstance(op, Fill):
                fills.append(op)
                continue
            if fills:
                self._fill_run(fills, fb, events, changed)
                fills = []
            if late and isinstance(op, Damage):
                continue
            if isinstance(op, Damage):
                r = grid.clip(op.rect)
                if not r.is_empty():
                    events.append(("damage", r))
                    touched.append(r)
            elif isinstance(op, CopyRect):
                src, dest = self._clip_copy(op)
                if not src.is_empty():
                    events.append(("copy", src, dest))
                    touched.append(dest)
        copied = []
        for ev, r in zip((ev for ev in events if ev[0] != "fills"), touched, strict=True):  # fills: in _fill_run
            if ev[0] == "copy":
                copied.append(r)
            else:
                changed[grid.outer(r)] = True
        if late and first_damage < len(frame.ops):
            self._refine_after(frame.ops[first_damage:], fb, events, touched, changed)
        self._drawn = changed.copy() if copied else changed  # moved pixels are no video
        for r in copied:
            changed[grid.outer(r)] = True
        return events, touched, changed

    def _refine_after(self, damage: list[Damage], fb: np.ndarray, events: list[tuple], touched: list[Rect],
                      changed: np.ndarray) -> None:
        """The damage of a frame that also fills and copies, as one final mask event plus exact boxes.

        A stable guest's damage is exact already.  Otherwise a damage rect where none of the frame's
        fills or copies landed still shows the previous frame on the client until its pixels come:
        refined against the snapshot as in a damage-only frame; one that overlaps them is sent whole."""
        grid = self.grid
        landed = [ev[2] for ev in events if ev[0] == "copy"]
        fill_cells = np.zeros_like(changed)
        for ev in events:
            if ev[0] == "fills":
                fill_cells |= ev[1].touched
        mask = grid.new_mask()
        exact: list[Rect] = []
        for op in damage:
            r = grid.clip(op.rect)
            if r.is_empty():
                continue
            ys, xs = grid.outer(r)
            if self._stable or fill_cells[ys, xs].any() or any(not d.intersect(r).is_empty() for d in landed):
                mask[ys, xs] = True
                exact.append(r)
            else:
                box = self._refine_into(mask, fb, ys, xs)
                if box is not None:
                    exact.append(box)
            touched.append(r)
        if mask.any():
            events.append(("mask", mask))
            changed |= mask
            if len(exact) <= MAX_EXACT_RECTS:
                self._exact = exact

    def _fill_run(self, fills: list[Fill], fb: np.ndarray, events: list[tuple], changed: np.ndarray) -> None:
        """Consecutive fills: clipped, copied into the snapshot, one event for all (see fills.py)."""
        grid = self.grid
        ops = np.array([(op.rect.left, op.rect.top, op.rect.right, op.rect.bottom, op.color) for op in fills],
                       np.int64)
        rects = ops[:, :4]
        np.clip(rects[:, 0::2], 0, grid.width, out=rects[:, 0::2])
        np.clip(rects[:, 1::2], 0, grid.height, out=rects[:, 1::2])
        live = (rects[:, 0] < rects[:, 2]) & (rects[:, 1] < rects[:, 3])
        rects, colors = rects[live], ops[live, 4]
        if not len(rects):
            return
        if not self._stable:  # (a stable framebuffer is the snapshot itself)
            for x0, y0, x1, y1 in rects.tolist():
                self._shot[y0:y1, x0:x1] = fb[y0:y1, x0:x1]
        run = FillRun(grid, rects, colors)
        changed |= run.touched
        events.append(("fills", run))

    def _refine_into(self, mask: np.ndarray, fb: np.ndarray, ys: slice, xs: slice) -> Rect | None:
        """Mark only the cells in the given cell range whose pixels really changed since the last frame;
        return the bounding box of the changed pixels."""
        c = self.cell
        y0, y1 = ys.start * c, min(ys.stop * c, self.grid.height)
        x0, x1 = xs.start * c, min(xs.stop * c, self.grid.width)
        new = fb[y0:y1, x0:x1].view(np.uint32)[..., 0]
        old = self._shot[y0:y1, x0:x1].view(np.uint32)[..., 0]
        diff = new != old
        gh, gw = ys.stop - ys.start, xs.stop - xs.start
        padded = np.zeros((gh * c, gw * c), bool)
        padded[:diff.shape[0], :diff.shape[1]] = diff
        mask[ys, xs] |= padded.reshape(gh, c, gw, c).any(axis=(1, 3))
        rows = np.flatnonzero(diff.any(axis=1))
        if not len(rows):
            return None
        cols = np.flatnonzero(diff.any(axis=0))
        return Rect(x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)

    def _changed_box(self, fb: np.ndarray, r: Rect) -> Rect | None:
        """Bounding box of the pixels of ``r`` that changed since the last frame (None if none did)."""
        diff = (fb[r.top:r.bottom, r.left:r.right].view(np.uint32)[..., 0]
                != self._shot[r.top:r.bottom, r.left:r.right].view(np.uint32)[..., 0])
        rows = diff.any(axis=1).nonzero()[0]
        if not len(rows):
            return None
        cols = diff.any(axis=0).nonzero()[0]
        return Rect(r.left + int(cols[0]), r.top + int(rows[0]), r.left + int(cols[-1]) + 1, r.top + int(rows[-1]) + 1)

    def _clip_copy(self, op: CopyRect) -> tuple[Rect, Rect]:
        grid = self.grid
        s, x, y = op.src, op.dest_x, op.dest_y
        if (s.left >= 0 and s.top >= 0 and s.right <= grid.width and s.bottom <= grid.height and x >= 0 and y >= 0
                and x + s.right - s.left <= grid.width and y + s.bottom - s.top <= grid.height):
            return s, Rect(x, y, x + s.right - s.left, y + s.bottom - s.top)  # on the screen already
        src = grid.clip(op.src)
        dx, dy = op.dest_x - op.src.left, op.dest_y - op.src.top
        dest = grid.clip(src.translate(dx, dy))
        src = dest.translate(-dx, -dy)
        return src, dest

    def _reserve_inter_frame(self, pixels: int) -> bool:
        if self._inter_frame_pixels + pixels > self.max_inter_frame_pixels:
            return False
        self._inter_frame_pixels += pixels
        return True

    def _release_inter_frame(self, pixels: int) -> None:
        self._inter_frame_pixels = max(0, self._inter_frame_pixels - pixels)

    def _detach(self, client: DisplayClient) -> None:
        if client in self._clients:
            self._clients.remove(client)
        client._drop_video()

    # -- video streams
    def _video(self, serial: int, now: float) -> None:
        """Feed the cells drawn by this frame to the video detector; start or end the stream."""
        hot = self._detector.update(self._drawn, now)
        s = self._stream
        if s is not None:
            if hot is not None and overlap(hot, s.rect) < 0.6:
                self._end_stream()
                s = None
        if s is None and hot is not None:
            rejected = self._not_video
            if rejected is not None and rejected[0] == hot and now < rejected[1]:
                return  # judged not photographic a moment ago (scrolling text): do not look again
            if looks_photographic(self._shot[hot.top:hot.bottom, hot.left:hot.right]):
                self._start_stream(hot, serial, now)
            else:
                self._not_video = (hot, now + NOT_VIDEO_RECHECK)

    def _stream_own_frame(self, s: VideoStream, touched: list[Rect]) -> None:
        """A frame that drew inside the running stream only: no detector work (its cell counts are for
        finding a video).  Every :data:`STREAM_LOOK_EVERY` such frames, a stream whose drawing shrank
        to under 60% of its area ends; the detector then finds the smaller video afresh."""
        box = self._stream_box
        for r in touched:
            box = r if box is None else box.union(r)
        self._stream_frames += 1
        if self._stream_frames % STREAM_LOOK_EVERY:
            self._stream_box = box
            return
        self._stream_box = None
        if box is not None and overlap(box, s.rect) < 0.6:
            self._end_stream()

    def _start_stream(self, rect: Rect, serial: int, now: float) -> None:
        s = VideoStream(next(self._stream_ids) % MAX_STREAMS, rect, self.grid.outer(rect), serial, now, now)
        self._stream = s
        self._stream_frames, self._stream_box = 0, None
        self.stats.streams += 1
        for c in self._clients:
            if c.streams_allowed and not c._full:
                c._join(s)
        self._arm_timer()

    def _end_stream(self) -> None:
        s, self._stream = self._stream, None
        if s is None:
            return
        for c in self._clients:
            if c._stream is s:
                c._leave(s)
                c._notify()

    def _arm_timer(self) -> None:
        """Run :meth:`tick` periodically while a stream is open or some client shows JPEG areas."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(min(self.stream_idle, self.refresh_delay) / 2, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.tick(time.monotonic()):
            self._arm_timer()

    def tick(self, now: float) -> bool:
        """End a still video stream, schedule lossless refreshes; True while there is more to watch."""
        self.check_stream(now)
        lossy = [c._refresh_lossy(now) for c in list(self._clients)]
        return self._stream is not None or any(lossy)

    def check_stream(self, now: float) -> None:
        """End the video stream if its area has been still for ``stream_idle`` seconds."""
        s = self._stream
        if s is not None and now - s.last_change > self.stream_idle:
            self._end_stream()

    def stream_frame(self, s: VideoStream, quality: int | None = None) -> StreamData:
        """The latest frame of ``s`` as one JPEG (encoded once per frame and quality, shared)."""
        quality = stream_quality(s.rect) if quality is None else quality
        key = ("stream", s.id, s.frame_serial, quality)
        cmd = self._encoded.get(key)
        if cmd is None:
            cmd = self._encoded[key] = self._encode_stream_frame(s, lambda px: images.jpeg_bytes(px, quality))
        else:
            self.stats.shared += 1
        return cmd  # type: ignore[return-value]

    def shared_encoder(self, create: StreamCreate) -> video.SharedEncoder:
        """The VP8 / H.264 encoder shared by the clients whose stream ``create`` opened (made for the first)."""
        enc = self._shared_encoders.get(create)
        if enc is None:
            r = create.rect
            enc = self._shared_encoders[create] = video.SharedEncoder(create.codec, r.width, r.height,
                                                                      stream_quality(r))
        return enc

    def _leave_shared(self, create: StreamCreate) -> None:
        if self._shared_encoders[create].leave():
            del self._shared_encoders[create]

    def shared_stream_frame(self, s: VideoStream, enc: video.SharedEncoder) -> None:
        """Encode the latest picture of ``s`` as ``enc``'s next frame (once, for all its members)."""
        self._encode_latest(s, lambda px: enc.encode(s.frame_serial, px))

    def own_stream_frame(self, s: VideoStream, encoder: video.InterFrameEncoder) -> StreamData:
        """The latest frame of ``s`` from a client's own VP8 / H.264 ``encoder`` (for that client only)."""
        return self._encode_stream_frame(s, encoder.encode)

    def _encode_stream_frame(self, s: VideoStream, encode: Callable[[np.ndarray], bytes]) -> StreamData:
        return StreamData(s.id, s.rect, self._encode_latest(s, encode), s.frame_time)

    def _encode_latest(self, s: VideoStream, encode: Callable[[np.ndarray], bytes]) -> bytes:
        """``encode`` of the latest picture of ``s``, counted (and its CPU time) in the stats."""
        t0 = time.process_time()
        r = s.rect
        data = encode(self._shot[r.top:r.bottom, r.left:r.right])
        self.stats.encode_seconds += time.process_time() - t0
        self.stats.stream_frames += 1
        return data

    # -- encoding
    @staticmethod
    def _content_id(px: np.ndarray) -> int:
        """A 64-bit id naming these pixels (size included): the pixmap-cache key."""
        h = _CONTENT_HASH(struct.pack("<II", px.shape[1], px.shape[0]))
        h.update(np.ascontiguousarray(px).data)
        return int.from_bytes(h.digest()[:8], "little") | 1

    def content_id(self, rect: Rect) -> int:
        """:meth:`_content_id` of ``rect`` in the current snapshot (computed once per frame)."""
        key = (rect, "id")
        hit = self._encoded.get(key)
        if hit is None:
            hit = self._encoded[key] = self._content_id(self._shot[rect.top:rect.bottom, rect.left:rect.right])
        return hit  # type: ignore[return-value]

    def cache_me(self, cmd: DrawCopy) -> DrawCopy:
        """``cmd`` with the CACHE_ME descriptor flag (shared between clients)."""
        key = (cmd.rect, "cache_me", cmd.image[:9])
        hit = self._encoded.get(key)
        if hit is None:
            hit = self._encoded[key] = DrawCopy(cmd.rect, images.with_cache_me(cmd.image))
        return hit  # type: ignore[return-value]

    def from_cache(self, rect: Rect, image_id: int) -> DrawCopy:
        return DrawCopy(rect, images.from_cache(image_id, rect.width, rect.height, lossless=False))

    def _photographic(self, rect: Rect, px: np.ndarray) -> bool:
        key = (rect, "photo")
        hit = self._encoded.get(key)
        if hit is None:
            hit = self._encoded[key] = looks_photographic(px)  # type: ignore[assignment]
        return bool(hit)

    def bands(self, r: Rect) -> list[Rect]:
        """Split ``r`` into pieces of at most ``max_band_pixels``, with cell-aligned row cuts."""
        out = []
        c = self.cell
        for x in range(r.left, r.right, MAX_BAND_WIDTH):
            x1 = min(r.right, x + MAX_BAND_WIDTH)
            rows = max(c, (self.max_band_pixels // (x1 - x)) // c * c)
            for y in range(r.top, r.bottom, rows):
                out.append(Rect(x, y, x1, min(r.bottom, y + rows)))
        return out

    def glz_picture(self, rect: Rect, history: glzref.GlzHistory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`glzref.picture` of ``rect`` (once per frame, shared); nothing to keep without a window."""
        if not history.limit:
            return np.empty((1, rect.area), np.uint32), np.empty(0, np.uint64), np.empty(0, np.int64)
        key = (rect, "glz picture")
        hit = self._encoded.get(key)
        if hit is None:
            hit = self._encoded[key] = glzref.picture(self._shot[rect.top:rect.bottom, rect.left:rect.right])
        return hit  # type: ignore[return-value]

    def encode_glz_refs(self, rect: Rect, caps: ImageCaps, history: glzref.GlzHistory) -> DrawCopy | None:
        """ZLIB_GLZ_RGB with matches into the images ``history``'s client holds (for that client alone), or
        None when the search finds too little (or the client takes no GLZ)."""
        if (not history.limit or not history.held or self.force_type is not None or caps.force is not None
                or rect.area <= SMALL_BAND_PIXELS or ImageType.ZLIB_GLZ_RGB not in caps.types):
            return None
        t0 = time.process_time()
        dist = history.make_room(rect.area)
        found = history.search(rect.top, rect.left, self.glz_picture(rect, history)[0])
        if found is None:
            self.stats.encode_seconds += time.process_time() - t0
            return None
        refs, ref_map = found
        image_id = self.content_id(rect) if rect.area >= CACHE_MIN_PIXELS else next(self._ids)
        data = glz.encode_image(self._shot[rect.top:rect.bottom, rect.left:rect.right], image_id, refs=refs,
                                ref_map=ref_map, glz_id=history.next_id, win_head_dist=dist)
        self.stats.encode_seconds += time.process_time() - t0
        self.stats.encodes += 1
        self.stats.glz_refs += 1
        self.stats.encoded_bytes += len(data)
        self.stats.by_type[ImageType.ZLIB_GLZ_RGB] = self.stats.by_type.get(ImageType.ZLIB_GLZ_RGB, 0) + 1
        return DrawCopy(rect, data)

    def choose_type(self, caps: ImageCaps, pixels: np.ndarray) -> ImageType:
        return self.force_type if self.force_type is not None else caps.lossless_type

    def encode(self, rect: Rect, caps: ImageCaps, lossy: bool = False) -> DrawCommand:
        """The command drawing ``rect`` of the current snapshot for a client with ``caps`` (shared);
        ``lossy``: photographic pieces may be sent as JPEG."""
        px = self._shot[rect.top:rect.bottom, rect.left:rect.right]
        solid_key = (rect, None)
        cmd = self._encoded.get(solid_key)
        if cmd is None:
            t0 = time.process_time()
            flat = px.view(np.uint32)
            first = flat[0, 0, 0]
            if (flat == first).all():
                cmd = DrawFill(rect, int(first) & 0xFFFFFF)
                self.stats.fills += 1
            else:
                cmd = DrawCopy(rect, b"")  # marker: not solid
            self.stats.encode_seconds += time.process_time() - t0
            self._encoded[solid_key] = cmd
        if isinstance(cmd, DrawFill):
            return cmd
        image_type = self.choose_type(caps, px)
        candidates: tuple[ImageType, ...] = (image_type,)
        auto = self.force_type is None
        if auto and lossy and rect.area >= JPEG_MIN_PIXELS and self._photographic(rect, px):
            candidates = (ImageType.JPEG,)
        elif (auto and caps.force is None and rect.area > SMALL_BAND_PIXELS
                and ImageType.ZLIB_GLZ_RGB in caps.types):
            candidates = (image_type, ImageType.ZLIB_GLZ_RGB)
        key = (rect, candidates)
        cmd = self._encoded.get(key)
        if cmd is not None:
            self.stats.shared += 1
            return cmd
        t0 = time.process_time()
        image_id = self.content_id(rect) if rect.area >= CACHE_MIN_PIXELS else next(self._ids)
        if candidates == (ImageType.JPEG,):
            data = images.encode_jpeg(px, image_id, quality=JPEG_QUALITY)
        elif candidates[-1] == ImageType.ZLIB_GLZ_RGB:
            # photographs: GLZ alone (-33% vs LZ4 at about its CPU with ISA-L; LZ4 alone without); else LZ4,
            # and GLZ too if that is big (text: -30% for +0.3 ms; small UI pieces gain ~25 bytes for 0.3 ms)
            photo = glz.literal_heavy(px)
            data = b"" if photo and glz.FAST_DEFLATE else images.encode(image_type, px, image_id)
            if not data or (len(data) > GLZ_AFTER_BYTES and not photo):
                data = min((d for d in (data, images.encode(ImageType.ZLIB_GLZ_RGB, px, image_id)) if d), key=len)
        else:
            data = min((images.encode(t, px, image_id) for t in candidates), key=len)
            if (auto and data[8] == ImageType.LZ4 and len(data) > 0.8 * 4 * rect.area
                    and ImageType.LZ_RGB in caps.types):  # incompressible for LZ4: LZ_RGB drops X
                data = min(data, images.encode_lz_rgb(px, image_id), key=len)
        image_type = ImageType(data[8])
        self.stats.encode_seconds += time.process_time() - t0
        self.stats.encodes += 1
        self.stats.encoded_bytes += len(data)
        self.stats.by_type[image_type] = self.stats.by_type.get(image_type, 0) + 1
        cmd = DrawCopy(rect, data)
        self._encoded[key] = cmd
        return cmd
