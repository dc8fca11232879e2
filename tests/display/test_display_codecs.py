"""Every encoder round-trips exactly through our decoders (JPEG: closely) on random, UI-like and
photographic content; the LZ stream obeys the format's limits."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spice.display import images, lz
from spice.display.caps import ImageType
from spice.display.decode import decode_image, parse_descriptor

LOSSLESS = [ImageType.BITMAP, ImageType.LZ_RGB, ImageType.LZ4]


def ui_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 4), np.uint8)
    img[..., :3] = (230, 230, 230)
    img[: max(1, h // 10)] = (160, 90, 40, 0)  # title bar
    for _ in range(max(1, h * w // 400)):  # "glyphs": small dark strokes
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        img[y:y + 2, x:x + int(rng.integers(1, 5)), :3] = 20
    img[h // 2:, : w // 3] = np.arange(w // 3, dtype=np.uint8)[None, :, None]  # a gradient panel
    return img


def photographic(h: int, w: int, seed: int = 0) -> np.ndarray:
    try:
        from spice.guests.builtin.workloads import photo
    except ImportError:  # pragma: no cover - built-in guest absent
        rng = np.random.default_rng(seed)
        base = np.cumsum(rng.integers(-3, 4, (h, w, 4)), axis=1)
        return (base % 256).astype(np.uint8)
    return photo(w, h, seed)


def contents():
    rng = np.random.default_rng(5)
    yield "random", rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    yield "ui", ui_like(120, 200)
    yield "photo", photographic(96, 128)
    yield "flat", np.full((50, 70, 4), 9, np.uint8)
    yield "one-pixel", rng.integers(0, 256, (1, 1, 4), dtype=np.uint8)
    yield "one-row", ui_like(1, 300)
    yield "one-column", ui_like(300, 1)
    yield "wide-runs", np.repeat(rng.integers(0, 256, (3, 1, 4), dtype=np.uint8), 2000, axis=1)


@pytest.mark.parametrize("image_type", LOSSLESS)
@pytest.mark.parametrize("name,pixels", list(contents()))
def test_lossless_round_trip(image_type, name, pixels):
    data = images.encode(image_type, pixels, image_id=0x1234, flags=images.CACHE_ME)
    d, out = decode_image(data)
    assert (d.id, d.type, d.flags, d.width, d.height) == (0x1234, image_type, 1, pixels.shape[1], pixels.shape[0])
    expect = pixels.copy()
    if image_type == ImageType.LZ_RGB:
        expect[..., 3] = 0  # the X byte is not transmitted
    assert np.array_equal(out, expect), name


@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.integers(1, 6))
@settings(max_examples=150, deadline=None)
def test_lz_round_trip_property(h, w, seed, colours):
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
    pixels = palette[rng.integers(0, colours, (h, w))]  # few colours: runs, repeats of the row above
    if seed % 3 == 0:
        pixels[::2] = pixels[0:1]
    out = lz.decode_rgb32(lz.encode_rgb32(pixels))
    assert np.array_equal(out[..., :3], pixels[..., :3])


def test_lz_header_and_token_limits():
    pixels = ui_like(64, 300)
    stream = lz.encode_rgb32(pixels)
    magic, version, typ, w, h, stride, top_down = struct.unpack_from(">7I", stream)
    assert (magic, version, typ, w, h, stride, top_down) == (0x20205A4C, 0x00010001, 8, 300, 64, 1200, 1)
    assert stream[:4] == b"  ZL"  # 0x20205A4C big-endian on the wire
    # walk the tokens: literal runs <= 32 pixels, copies within the image, lengths add up exactly
    pos, produced = 28, 0
    while produced < 300 * 64:
        c = stream[pos]
        pos += 1
        if c < 32:
            produced += c + 1
            pos += 3 * (c + 1)
            continue
        length = c >> 5
        if length == 7:
            length += stream[pos]
            assert stream[pos] < 255
            pos += 1
        dist = ((c & 31) << 8 | stream[pos]) + 1
        pos += 1
        assert dist in (1, 300) and dist <= produced
        produced += length
    assert produced == 300 * 64 and pos == len(stream)


def test_lz_is_smaller_than_raw_on_ui_and_about_three_quarters_on_photos():
    ui, ph = ui_like(200, 320), photographic(200, 320)
    assert len(lz.encode_rgb32(ui)) < 0.2 * ui.nbytes
    assert len(lz.encode_rgb32(ph)) < 0.8 * ph.nbytes


def test_lz4_layout():
    pixels = ui_like(40, 60)
    data = images.encode_lz4(pixels, 7)
    d = parse_descriptor(data)
    assert (d.type, d.width, d.height) == (ImageType.LZ4, 60, 40)
    (size,) = struct.unpack_from("<I", data, 18)
    body = data[22:]
    assert size == len(body) and body[:2] == b"\x01\x08"
    (block,) = struct.unpack_from(">I", body, 2)
    assert block == len(body) - 6


def test_bitmap_layout_matches_spice_html5_needs():
    pixels = ui_like(3, 5)
    data = images.encode_bitmap(pixels, 1)
    fmt, flags, x, y, stride, pal = struct.unpack_from("<BBIIII", data, 18)
    assert (fmt, flags, x, y, stride, pal) == (8, 4, 5, 3, 20, 0)
    assert data[36:] == pixels.tobytes()


@pytest.mark.parametrize("name,pixels", [c for c in contents() if c[0] in ("ui", "photo")])
def test_jpeg_is_close(name, pixels):
    d, out = decode_image(images.encode_jpeg(pixels, 3, quality=90))
    assert d.type == ImageType.JPEG and out.shape == pixels.shape
    assert np.abs(out[..., :3].astype(int) - pixels[..., :3]).mean() < 6


def test_decoder_rejects_corrupt_streams():
    stream = bytearray(lz.encode_rgb32(ui_like(20, 20)))
    with pytest.raises(lz.LzError):
        lz.decode_rgb32(bytes(stream[:40]))  # truncated
    bad = bytearray(stream)
    bad[28] = 0x20  # a copy before any pixel exists
    with pytest.raises(lz.LzError):
        lz.decode_rgb32(bytes(bad))
    with pytest.raises(lz.LzError):
        lz.decode_rgb32(b"XXXX" + bytes(stream[4:]))
