"""Marshalled SpiceImage encoders (spice.md §6.7, quic-lz.md): descriptor + type-specific body.

Every encoder takes ``pixels`` = ``(h, w, 4)`` uint8 B, G, R, X (a view into the framebuffer is fine)
and returns the complete image bytes, ready to sit at DRAW_COPY's ``src_bitmap`` offset.
"""

from __future__ import annotations

import struct

import lz4.block
import numpy as np
import simplejpeg

from spice.display import glz, lz
from spice.display.caps import ImageType

DESCRIPTOR = struct.Struct("<QBBII")  # id, type, flags, width, height (18 bytes)
BITMAP_HEAD = struct.Struct("<BBIIII")  # format, flags, x, y, stride, palette_ptr (18 bytes)
U32 = struct.Struct("<I")
BE_U32 = struct.Struct(">I")

BITMAP_FMT_32BIT = 8
BITMAP_TOP_DOWN = 4
CACHE_ME = 1
HIGH_BITS_SET = 2
CACHE_REPLACE_ME = 4


def descriptor(image_id: int, image_type: int, width: int, height: int, flags: int = 0) -> bytes:
    return DESCRIPTOR.pack(image_id, image_type, flags, width, height)


def encode_bitmap(pixels: np.ndarray, image_id: int = 0, flags: int = 0) -> bytes:
    """BITMAP, 32BIT, TOP_DOWN, stride 4w, no palette (the layout spice-html5 also accepts)."""
    h, w = pixels.shape[:2]
    return b"".join((descriptor(image_id, ImageType.BITMAP, w, h, flags),
                     BITMAP_HEAD.pack(BITMAP_FMT_32BIT, BITMAP_TOP_DOWN, w, h, 4 * w, 0),
                     np.ascontiguousarray(pixels).tobytes()))


LZ4_HC_MAX_PIXELS = 16 * 1024  # images up to this size use LZ4-HC level 4 (-23% bytes on text, <= 0.6 ms)
LZ4_HC_LEVEL = 4


def encode_lz4(pixels: np.ndarray, image_id: int = 0, flags: int = 0) -> bytes:
    """LZ4: ``u32 size`` + top_down 1, format 32BIT, one ``BE u32 size`` + raw LZ4 block (a plain LZ4
    block whichever compressor made it: small images get the high-compression one)."""
    h, w = pixels.shape[:2]
    px = np.ascontiguousarray(pixels)
    if not h * w:
        block = b""
    elif h * w <= LZ4_HC_MAX_PIXELS:
        block = lz4.block.compress(px, store_size=False, mode="high_compression", compression=LZ4_HC_LEVEL)
    else:
        block = lz4.block.compress(px, store_size=False)
    data_size = 2 + 4 + len(block)
    return b"".join((descriptor(image_id, ImageType.LZ4, w, h, flags), U32.pack(data_size),
                     b"\x01\x08", BE_U32.pack(len(block)), block))


def encode_lz_rgb(pixels: np.ndarray, image_id: int = 0, flags: int = 0) -> bytes:
    """LZ_RGB with LZ type RGB32 (the X byte is not transmitted; decoders write 0)."""
    h, w = pixels.shape[:2]
    stream = lz.encode_rgb32(pixels)
    return b"".join((descriptor(image_id, ImageType.LZ_RGB, w, h, flags), U32.pack(len(stream)), stream))


def jpeg_bytes(pixels: np.ndarray, quality: int = 80) -> bytes:
    """A baseline 4:2:0 JPEG file of BGRX ``pixels`` (also one MJPEG stream frame)."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=quality, colorspace="BGRX",
                                  colorsubsampling="420")


def encode_jpeg(pixels: np.ndarray, image_id: int = 0, flags: int = 0, quality: int = 80) -> bytes:
    """JPEG (lossy) image."""
    h, w = pixels.shape[:2]
    jpg = jpeg_bytes(pixels, quality)
    return b"".join((descriptor(image_id, ImageType.JPEG, w, h, flags), U32.pack(len(jpg)), jpg))


ENCODERS = {
    ImageType.BITMAP: encode_bitmap,
    ImageType.LZ4: encode_lz4,
    ImageType.LZ_RGB: encode_lz_rgb,
    ImageType.JPEG: encode_jpeg,
    ImageType.ZLIB_GLZ_RGB: glz.encode_image,  # GLZ id 0: the client's DisplayClient stamps its own ids
}


def encode(image_type: ImageType, pixels: np.ndarray, image_id: int = 0, flags: int = 0) -> bytes:
    return ENCODERS[image_type](pixels, image_id, flags)


def with_cache_me(image: bytes) -> bytes:
    """``image`` (descriptor first) with the CACHE_ME flag set: the client keeps it in its pixmap cache."""
    return image[:9] + bytes((image[9] | CACHE_ME,)) + image[10:]


def from_cache(image_id: int, width: int, height: int, lossless: bool = True) -> bytes:
    """A FROM_CACHE(_LOSSLESS) image: the descriptor alone."""
    t = ImageType.FROM_CACHE_LOSSLESS if lossless else ImageType.FROM_CACHE
    return descriptor(image_id, t, width, height)
