"""SPICE LZ, RGB32 variant (image type LZ_RGB): a numpy-vectorised encoder and a reference decoder.

Stream layout (quic-lz.md §2): a 28-byte big-endian header, then operations.  A control byte
``c < 32`` starts a literal run of ``c + 1`` pixels (3 bytes B, G, R each); ``c >= 32`` is a copy of
``L = c >> 5`` pixels (``L == 7``: plus extension bytes while 255) from ``d + 1`` pixels back, with
``d = (c & 31) << 8 | next byte`` (``31, 255`` escapes to a 16-bit far distance + 8191).

The encoder classifies every pixel as literal, "same as the pixel to the left" (distance 1) or
"same as the pixel above" (distance ``width``), cuts the class runs into tokens (literals of at
most 32 pixels, copies of at most 261 so a copy is 2 or 3 bytes) and writes all tokens with numpy
scatter operations: no Python loop over pixels or tokens.
"""

from __future__ import annotations

import struct

import numpy as np

LZ_MAGIC = 0x20205A4C
LZ_VERSION = 0x00010001
LZ_TYPE_RGB32 = 8
LZ_HEADER = struct.Struct(">IIIIIII")  # magic, version, type, width, height, stride, top_down

MAX_LITERAL = 32
MAX_COPY = 7 + 254  # longest copy with a single extension byte
NEAR_MAX_DISTANCE_CODE = 8190  # codes 0..8190 are near (31,255 escapes to far)
_LIT, _LEFT, _ABOVE = 0, 1, 2


def class_tokens(cls: np.ndarray, max_literal: int, max_copy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut the runs of equal pixel classes (``_LIT``/``_LEFT``/``_ABOVE`` per pixel) into tokens of at most
    ``max_literal`` / ``max_copy`` pixels: each token's first pixel, length and class (LZ and GLZ)."""
    n = len(cls)
    starts = np.concatenate(([0], np.flatnonzero(cls[1:] != cls[:-1]) + 1))
    seg_len = np.diff(np.append(starts, n))
    seg_cls = cls[starts]
    cap = np.where(seg_cls == _LIT, max_literal, max_copy)
    npieces = (seg_len + cap - 1) // cap
    piece_seg = np.repeat(np.arange(len(starts)), npieces)
    first_piece = np.cumsum(npieces) - npieces
    j = np.arange(len(piece_seg)) - first_piece[piece_seg]
    pcap = cap[piece_seg]
    pstart = starts[piece_seg] + j * pcap
    plen = np.minimum(pcap, starts[piece_seg] + seg_len[piece_seg] - pstart)
    return pstart, plen, seg_cls[piece_seg]


def encode_rgb32(pixels: np.ndarray) -> bytes:
    """LZ stream (header + body) for ``pixels``: ``(h, w, 4)`` uint8 B, G, R, X; X is not sent."""
    h, w = pixels.shape[:2]
    n = h * w
    header = LZ_HEADER.pack(LZ_MAGIC, LZ_VERSION, LZ_TYPE_RGB32, w, h, w * 4, 1)
    if n == 0:
        return header
    px = np.ascontiguousarray(pixels)
    flat = px.view(np.uint32).reshape(n) & np.uint32(0x00FFFFFF)
    cls = np.zeros(n, np.int8)
    cls[1:][flat[1:] == flat[:-1]] = _LEFT
    if h > 1 and w - 1 <= NEAR_MAX_DISTANCE_CODE:
        cls[w:][flat[w:] == flat[:-w]] = _ABOVE  # preferred: long runs across repeated rows

    pstart, plen, pcls = class_tokens(cls, MAX_LITERAL, MAX_COPY)
    lit = pcls == _LIT
    size = np.where(lit, 1 + 3 * plen, np.where(plen < 7, 2, 3))
    off = np.cumsum(size) - size
    out = np.empty(int(size.sum()), np.uint8)

    # literal tokens: control byte, then B, G, R of each pixel
    out[off[lit]] = plen[lit] - 1
    lit_mask = cls == _LIT
    n_lit = int(np.count_nonzero(lit_mask))
    if n_lit * 3 > n:  # literal-heavy (photos): payload = every byte not in a control/copy token
        payload = np.ones(len(out), bool)
        payload[off] = False
        payload[off[~lit] + 1] = False
        payload[off[~lit & (plen >= 7)] + 2] = False
        out[payload] = px.view(np.uint32).reshape(n)[lit_mask].view(np.uint8).reshape(-1, 4)[:, :3].reshape(-1)
    elif n_lit:  # few literals (UI): scatter them
        lit_pix = np.flatnonzero(lit_mask)
        base = np.repeat(off[lit] + 1 - 3 * pstart[lit], plen[lit]) + 3 * lit_pix
        bgr = px.view(np.uint32).reshape(n)[lit_pix].view(np.uint8).reshape(-1, 4)
        out[base] = bgr[:, 0]
        out[base + 1] = bgr[:, 1]
        out[base + 2] = bgr[:, 2]

    # copy tokens
    m = ~lit
    mlen = plen[m]
    moff = off[m]
    dist_code = np.where(pcls[m] == _LEFT, 0, w - 1)
    out[moff] = (np.minimum(mlen, 7) << 5) | (dist_code >> 8)
    short = mlen < 7
    out[moff[short] + 1] = dist_code[short] & 0xFF
    long_ = ~short
    out[moff[long_] + 1] = mlen[long_] - 7
    out[moff[long_] + 2] = dist_code[long_] & 0xFF
    return header + out.tobytes()


class LzError(ValueError):
    """Malformed LZ stream."""


def decode_rgb32(stream: bytes) -> np.ndarray:
    """Decode an RGB32 LZ stream (header + body) into ``(h, w, 4)`` uint8 with X = 0 (tests, checks)."""
    if len(stream) < LZ_HEADER.size:
        raise LzError("short LZ header")
    magic, version, typ, w, h, stride, top_down = LZ_HEADER.unpack_from(stream)
    if magic != LZ_MAGIC or version != LZ_VERSION or typ != LZ_TYPE_RGB32 or stride != 4 * w:
        raise LzError(f"bad LZ header {magic:#x} {version:#x} type {typ} stride {stride}")
    n = w * h
    out = np.zeros((n, 4), np.uint8)
    data = memoryview(stream)[LZ_HEADER.size:]
    pos = op = 0
    try:
        while op < n:
            c = data[pos]
            pos += 1
            if c < 32:
                k = c + 1
                if op + k > n:
                    raise LzError("literal run past the end of the image")
                if pos + 3 * k > len(data):
                    raise LzError("truncated LZ stream")
                out[op:op + k, :3] = np.frombuffer(data[pos:pos + 3 * k], np.uint8).reshape(k, 3)
                pos += 3 * k
                op += k
                continue
            length = c >> 5
            if length == 7:
                while True:
                    e = data[pos]
                    pos += 1
                    length += e
                    if e != 255:
                        break
            lo = data[pos]
            pos += 1
            dist = ((c & 31) << 8) + lo
            if lo == 255 and (c & 31) == 31:
                dist = (data[pos] << 8) + data[pos + 1] + 8191
                pos += 2
            dist += 1
            if dist > op or op + length > n:
                raise LzError("copy outside the image")
            if dist >= length:
                out[op:op + length] = out[op - dist:op - dist + length]
            else:  # overlapping: repeat the period
                reps = -(-length // dist)
                out[op:op + length] = np.tile(out[op - dist:op], (reps, 1))[:length]
            op += length
    except IndexError as exc:
        raise LzError("truncated LZ stream") from exc
    img = out.reshape(h, w, 4)
    return img if top_down else img[::-1].copy()
