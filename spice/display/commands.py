"""Drawing commands a :class:`~spice.display.pipeline.DisplayClient` hands to the display channel.

Each command maps onto one SPICE display message on surface 0 (spice.md §6.7, §6.8):

* :class:`DrawFill`  -> DRAW_FILL with a solid brush, rop OP_PUT, no mask; clip NONE, or RECTS when
  ``clip`` holds marshalled rectangles (the fill then paints ``rect`` ∩ their union).
* :class:`DrawCopy`  -> DRAW_COPY: ``image`` is a complete marshalled SpiceImage (18-byte
  descriptor + type-specific body) to be placed at the ``src_bitmap`` offset; ``src_area`` is
  ``(0, 0, rect.height, rect.width)``, rop OP_PUT, scale mode 0, no mask.
* :class:`CopyBits`  -> COPY_BITS: box ``rect``, ``src_pos = (src_x, src_y)``.
* :class:`Resize`    -> the primary surface changed size: SURFACE_DESTROY(0), SURFACE_CREATE(0, w, h,
  32_xRGB, PRIMARY), (MONITORS_CONFIG), then the full redraw that follows in the same take, then MARK.
* :class:`InvalList` -> INVAL_LIST of pixmap ids (image cache eviction; sent before what follows).
* :class:`StreamCreate` -> STREAM_CREATE(surface 0, id, flags TOP_DOWN, codec MJPEG, stamp 0,
  stream size = src size = ``rect`` size, dest ``rect``, clip NONE).
* :class:`StreamData` -> STREAM_DATA(id, multi_media_time, JPEG): one complete JPEG of ``rect``;
  ``timestamp`` is the frame's ``time.monotonic()`` (map it onto the session's mm clock).
* :class:`StreamDestroy` -> STREAM_DESTROY(id); a lossless redraw of the area follows in the same or
  a later take.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from spice.guests.base import Rect


@dataclass(slots=True, unsafe_hash=True)  # a value (see the note above spice.guests.base.Rect)
class DrawFill:
    """Fill ``rect`` with ``color`` (0x00RRGGBB, the SPICE solid brush value).

    ``clip``: empty, or the rectangles actually painted (inside ``rect``) as consecutive SpiceRects
    (``<i4`` top, left, bottom, right each) — the body of a RECTS clip after its ``num_rects``.
    """

    rect: Rect
    color: int
    clip: bytes = b""

    @property
    def clip_rects(self) -> tuple[Rect, ...]:
        """The clip rectangles (empty: the whole ``rect`` is painted)."""
        c = self.clip
        return tuple(Rect(left, top, right, bottom)
                     for top, left, bottom, right in struct.iter_unpack("<iiii", c))


@dataclass(slots=True, unsafe_hash=True)  # a value (see the note above spice.guests.base.Rect)
class DrawCopy:
    """Copy the whole ``image`` (a marshalled SpiceImage of ``rect``'s size) to ``rect``."""

    rect: Rect
    image: bytes


@dataclass(slots=True, unsafe_hash=True)  # a value (see the note above spice.guests.base.Rect)
class CopyBits:
    """Copy the ``rect``-sized area whose top-left is ``(src_x, src_y)`` to ``rect`` (same surface)."""

    src_x: int
    src_y: int
    rect: Rect


@dataclass(slots=True, unsafe_hash=True)  # a value (see the note above spice.guests.base.Rect)
class Resize:
    """The guest screen is now ``width`` x ``height``: re-create the primary surface first."""

    width: int
    height: int


@dataclass(slots=True, unsafe_hash=True)  # a value (see the note above spice.guests.base.Rect)
class InvalList:
    """Tell the client to drop these pixmap-cache ids (INVAL_LIST, type 1 = pixmap each)."""

    ids: tuple[int, ...]


@dataclass(slots=True, unsafe_hash=True)  # a value (see the note above spice.guests.base.Rect)
class StreamCreate:
    """Open video stream ``stream_id`` (0..63) drawing into ``rect``, frames in ``codec``
    (SpiceVideoCodecType: 1 MJPEG, 2 VP8, 3 H.264)."""

    stream_id: int
    rect: Rect
    codec: int = 1


@dataclass(slots=True, unsafe_hash=True)  # a value (see the note above spice.guests.base.Rect)
class StreamData:
    """One frame of stream ``stream_id``: ``data`` is one compressed frame of ``rect``'s size (a complete
    JPEG for MJPEG)."""

    stream_id: int
    rect: Rect
    data: bytes
    timestamp: float


@dataclass(slots=True, unsafe_hash=True)  # a value (see the note above spice.guests.base.Rect)
class StreamDestroy:
    stream_id: int


DrawCommand = DrawFill | DrawCopy | CopyBits | Resize | InvalList | StreamCreate | StreamData | StreamDestroy
