"""Decoders for the images we emit (tests, benchmark self-checks): bytes -> ``(h, w, 4)`` BGRX."""

from __future__ import annotations

from dataclasses import dataclass

import lz4.block
import numpy as np
import simplejpeg

from spice.display import glz, lz
from spice.display.caps import ImageType
from spice.display.images import BE_U32, BITMAP_FMT_32BIT, BITMAP_HEAD, BITMAP_TOP_DOWN, DESCRIPTOR, U32


@dataclass(frozen=True, slots=True)
class Descriptor:
    id: int
    type: int
    flags: int
    width: int
    height: int


def parse_descriptor(image: bytes) -> Descriptor:
    return Descriptor(*DESCRIPTOR.unpack_from(image))


def decode_image(image: bytes, glz_window: dict[int, np.ndarray] | None = None) -> tuple[Descriptor, np.ndarray | None]:
    """Decode a marshalled SpiceImage; FROM_CACHE types return ``None`` pixels.  ``glz_window``: the GLZ
    images held (id -> pixels), updated as spice-gtk does (keeps the new one, frees those before
    ``id - win_head_dist``); without it GLZ images must not refer to others."""
    d = parse_descriptor(image)
    body = memoryview(image)[DESCRIPTOR.size:]
    w, h = d.width, d.height
    if d.type == ImageType.BITMAP:
        fmt, flags, x, y, stride, pal = BITMAP_HEAD.unpack_from(body)
        if fmt != BITMAP_FMT_32BIT or (x, y) != (w, h) or stride < 4 * w or pal:
            raise ValueError("unsupported bitmap")
        raw = np.frombuffer(body[BITMAP_HEAD.size:BITMAP_HEAD.size + stride * h], np.uint8)
        img = raw.reshape(h, stride)[:, :4 * w].reshape(h, w, 4)
        return d, (img if flags & BITMAP_TOP_DOWN else img[::-1]).copy()
    if d.type in (ImageType.FROM_CACHE, ImageType.FROM_CACHE_LOSSLESS):
        return d, None
    if d.type == ImageType.ZLIB_GLZ_RGB:
        img, gid, dist = glz.decode_body(body, glz_window)
        if glz_window is not None:
            glz_window[gid] = img
            for old in [k for k in glz_window if k < gid - dist]:
                del glz_window[old]
        if img.shape[:2] != (h, w):
            raise ValueError("GLZ size differs from the descriptor")
        return d, img
    (size,) = U32.unpack_from(body)
    data = bytes(body[4:4 + size])
    if len(data) != size:
        raise ValueError("truncated image data")
    if d.type == ImageType.LZ_RGB:
        img = lz.decode_rgb32(data)
        if img.shape[:2] != (h, w):
            raise ValueError("LZ size differs from the descriptor")
        return d, img
    if d.type == ImageType.LZ4:
        top_down, fmt = data[0], data[1]
        if fmt != BITMAP_FMT_32BIT:
            raise ValueError("unsupported LZ4 format")
        pos, parts = 2, []
        while pos < len(data):
            (n,) = BE_U32.unpack_from(data, pos)
            parts.append(data[pos + 4:pos + 4 + n])
            pos += 4 + n
        raw = lz4.block.decompress(b"".join(parts), uncompressed_size=4 * w * h) if len(parts) == 1 else None
        if raw is None:  # several blocks may reference each other: decode as one dictionary chain
            out = b""
            for p in parts:
                out += lz4.block.decompress(p, uncompressed_size=4 * w * h, dict=out[-65536:])
            raw = out
        img = np.frombuffer(raw, np.uint8).reshape(h, w, 4)
        return d, (img if top_down else img[::-1]).copy()
    if d.type == ImageType.JPEG:
        return d, simplejpeg.decode_jpeg(data, colorspace="BGRX")
    raise ValueError(f"cannot decode image type {d.type}")
