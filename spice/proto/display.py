"""Display channel (type 2) messages, spice.md §6.

Draw messages are built with precompiled structs (they go out per dirty rectangle); the
construct declarations name the same layouts for readers and for tests.
"""

from __future__ import annotations

import enum
import struct

import construct as c
import numpy as np


class DisplayMsg(enum.IntEnum):
    MODE = 101
    MARK = 102
    RESET = 103
    COPY_BITS = 104
    INVAL_LIST = 105
    INVAL_ALL_PIXMAPS = 106
    INVAL_PALETTE = 107
    INVAL_ALL_PALETTES = 108
    STREAM_CREATE = 122
    STREAM_DATA = 123
    STREAM_CLIP = 124
    STREAM_DESTROY = 125
    STREAM_DESTROY_ALL = 126
    DRAW_FILL = 302
    DRAW_COPY = 304
    SURFACE_CREATE = 314
    SURFACE_DESTROY = 315
    MONITORS_CONFIG = 317


class DisplayMsgc(enum.IntEnum):
    INIT = 101
    STREAM_REPORT = 102
    PREFERRED_COMPRESSION = 103
    GL_DRAW_DONE = 104
    PREFERRED_VIDEO_CODEC_TYPE = 105


class DisplayCap(enum.IntEnum):
    SIZED_STREAM = 0
    MONITORS_CONFIG = 1
    COMPOSITE = 2
    A8_SURFACE = 3
    STREAM_REPORT = 4
    LZ4_COMPRESSION = 5
    PREF_COMPRESSION = 6
    GL_SCANOUT = 7
    MULTI_CODEC = 8
    CODEC_MJPEG = 9
    CODEC_VP8 = 10
    CODEC_H264 = 11
    PREF_VIDEO_CODEC_TYPE = 12
    CODEC_VP9 = 13
    CODEC_H265 = 14


class ImageType(enum.IntEnum):
    BITMAP = 0
    QUIC = 1
    LZ_PLT = 100
    LZ_RGB = 101
    GLZ_RGB = 102
    FROM_CACHE = 103
    SURFACE = 104
    JPEG = 105
    FROM_CACHE_LOSSLESS = 106
    ZLIB_GLZ_RGB = 107
    JPEG_ALPHA = 108
    LZ4 = 109


SURFACE_FMT_32_XRGB = 32
SURFACE_FLAG_PRIMARY = 1
ROP_OP_PUT = 0x0008
BITMAP_FMT_32BIT = 8
BITMAP_TOP_DOWN = 4
BRUSH_SOLID = 1

Rect = c.Struct("top" / c.Int32sl, "left" / c.Int32sl, "bottom" / c.Int32sl, "right" / c.Int32sl)
Point = c.Struct("x" / c.Int32sl, "y" / c.Int32sl)
DisplayInit = c.Struct("pixmap_cache_id" / c.Int8ul, "pixmap_cache_size" / c.Int64sl,
                       "glz_dictionary_id" / c.Int8ul, "glz_dictionary_window_size" / c.Int32sl)
SurfaceCreate = c.Struct("surface_id" / c.Int32ul, "width" / c.Int32ul, "height" / c.Int32ul,
                         "format" / c.Int32ul, "flags" / c.Int32ul)
Head = c.Struct("monitor_id" / c.Int32ul, "surface_id" / c.Int32ul, "width" / c.Int32ul, "height" / c.Int32ul,
                "x" / c.Int32ul, "y" / c.Int32ul, "flags" / c.Int32ul)
MonitorsConfig = c.Struct("count" / c.Int16ul, "max_allowed" / c.Int16ul, "heads" / c.Array(c.this.count, Head))
DisplayBase = c.Struct("surface_id" / c.Int32ul, "box" / Rect, "clip_type" / c.Const(0, c.Int8ul))
QMask = c.Struct("flags" / c.Int8ul, "pos" / Point, "bitmap" / c.Int32ul)
DrawCopy = c.Struct("base" / DisplayBase, "src_bitmap" / c.Int32ul, "src_area" / Rect,
                    "rop_descriptor" / c.Int16ul, "scale_mode" / c.Int8ul, "mask" / QMask)
DrawFill = c.Struct("base" / DisplayBase, "brush_type" / c.Const(BRUSH_SOLID, c.Int8ul), "color" / c.Int32ul,
                    "rop_descriptor" / c.Int16ul, "mask" / QMask)
CopyBits = c.Struct("base" / DisplayBase, "src_pos" / Point)
ImageDescriptor = c.Struct("id" / c.Int64ul, "type" / c.Int8ul, "flags" / c.Int8ul, "width" / c.Int32ul,
                           "height" / c.Int32ul)
BitmapData = c.Struct("format" / c.Int8ul, "flags" / c.Int8ul, "x" / c.Int32ul, "y" / c.Int32ul,
                      "stride" / c.Int32ul, "palette" / c.Int32ul)

StreamCreate = c.Struct("surface_id" / c.Int32ul, "id" / c.Int32ul, "flags" / c.Int8ul, "codec_type" / c.Int8ul,
                        "stamp" / c.Int64ul, "stream_width" / c.Int32ul, "stream_height" / c.Int32ul,
                        "src_width" / c.Int32ul, "src_height" / c.Int32ul, "dest" / Rect,
                        "clip_type" / c.Const(0, c.Int8ul))
StreamData = c.Struct("id" / c.Int32ul, "multi_media_time" / c.Int32ul,
                      "data" / c.Prefixed(c.Int32ul, c.GreedyBytes))

STREAM_TOP_DOWN = 1
CODEC_MJPEG = 1

# precompiled layouts (must match the declarations above; checked in the tests)
DRAW_COPY = struct.Struct("<IiiiiBIiiiiHBBiiI")
DRAW_FILL = struct.Struct("<IiiiiBBIHBiiI")
COPY_BITS = struct.Struct("<IiiiiBii")
IMAGE_DESCRIPTOR = struct.Struct("<QBBII")
BITMAP_DATA = struct.Struct("<BBIIII")
STREAM_CREATE = struct.Struct("<IIBBQIIIIiiiiB")
STREAM_DATA = struct.Struct("<III")
DRAW_COPY_IMAGE_OFFSET = DRAW_COPY.size  # 57: the image follows the fixed part


def build_draw_copy_head(left: int, top: int, right: int, bottom: int, surface_id: int = 0) -> bytes:
    """The fixed 57 bytes of a DRAW_COPY whose SpiceImage follows immediately (OP_PUT, no mask)."""
    return DRAW_COPY.pack(surface_id, top, left, bottom, right, 0, DRAW_COPY_IMAGE_OFFSET,
                          0, 0, bottom - top, right - left, ROP_OP_PUT, 0, 0, 0, 0, 0)


def build_draw_copy(left: int, top: int, right: int, bottom: int, image: bytes, surface_id: int = 0) -> bytes:
    """DRAW_COPY of a complete marshalled SpiceImage onto box (left, top, right, bottom), OP_PUT, no mask."""
    return build_draw_copy_head(left, top, right, bottom, surface_id) + image


def build_draw_fill(left: int, top: int, right: int, bottom: int, bgrx: int, surface_id: int = 0) -> bytes:
    """DRAW_FILL with a solid brush; ``bgrx`` is the framebuffer u32 (0xXXRRGGBB), sent as 0x00RRGGBB."""
    return DRAW_FILL.pack(surface_id, top, left, bottom, right, 0, BRUSH_SOLID, bgrx & 0xFFFFFF, ROP_OP_PUT,
                          0, 0, 0, 0)


def build_copy_bits(src_x: int, src_y: int, left: int, top: int, right: int, bottom: int,
                    surface_id: int = 0) -> bytes:
    return COPY_BITS.pack(surface_id, top, left, bottom, right, 0, src_x, src_y)


def build_stream_create(stream_id: int, left: int, top: int, right: int, bottom: int,
                        codec: int = CODEC_MJPEG) -> bytes:
    """STREAM_CREATE on surface 0: top-down frames of the dest size, clip NONE."""
    w, h = right - left, bottom - top
    return STREAM_CREATE.pack(0, stream_id, STREAM_TOP_DOWN, codec, 0, w, h, w, h, top, left, bottom, right, 0)


def build_stream_data(stream_id: int, mm_time: int, data: bytes) -> bytes:
    return STREAM_DATA.pack(stream_id, mm_time & 0xFFFFFFFF, len(data)) + data


def build_surface_create(width: int, height: int, surface_id: int = 0) -> bytes:
    return SurfaceCreate.build(dict(surface_id=surface_id, width=width, height=height,
                                    format=SURFACE_FMT_32_XRGB, flags=SURFACE_FLAG_PRIMARY))


def build_monitors_config(width: int, height: int) -> bytes:
    return MonitorsConfig.build(dict(count=1, max_allowed=1, heads=[dict(
        monitor_id=0, surface_id=0, width=width, height=height, x=0, y=0, flags=0)]))


def build_bitmap_image(pixels: np.ndarray, image_id: int = 0) -> bytes:
    """A 32-bit top-down BITMAP SpiceImage of a ``(h, w, 4)`` BGRX array (the plain lossless fallback)."""
    h, w = pixels.shape[:2]
    return (IMAGE_DESCRIPTOR.pack(image_id, ImageType.BITMAP, 0, w, h)
            + BITMAP_DATA.pack(BITMAP_FMT_32BIT, BITMAP_TOP_DOWN, w, h, w * 4, 0)
            + np.ascontiguousarray(pixels).tobytes())
