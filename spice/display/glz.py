"""ZLIB_GLZ_RGB images for spice-gtk: a GLZ RGB32 stream, deflated.

GLZ stream (spice-common lz_common.h, spice-gtk decode-glz-tmpl.c): a 33-byte big-endian header
(magic, version, ``type | top_down << 4``, width, height, stride, 64-bit image id, ``win_head_dist``),
then operations.  A control byte ``c < 32`` starts a literal run of ``c + 1`` pixels (B, G, R each);
``c >= 32`` is a match of ``L = c >> 5`` pixels (``L == 7``: plus extension bytes while 255), then a
byte with bits 4..11 of the offset ``o`` (bits 0..3 are ``c & 15``) and a byte ``0`` (this image,
``o < 4096``): the match copies from ``o + 1`` pixels back.  Here matches are "same as the pixel to the left"
and "same as the pixel above", found with numpy (as :mod:`spice.display.lz`), and, given a reference
map (:mod:`spice.display.glzref`), matches into earlier images the client holds (:class:`Ref`: an
``image_dist`` and an unbiased offset from that image's first pixel, decode-glz-tmpl.c's other forms).

The client keeps every GLZ image in a window, by id, and frees the ones before ``id -
win_head_dist`` of the newest image that closes its run of ids; ids must therefore start at 0 on each
connection and go up by one per image, in the order the client decodes them (as libspice-server's
dictionary does; a spice-gtk session object that reconnects keeps its old ``oldest`` and so holds the new
connection's images until their ids pass it, with either server).  With ``win_head_dist = 0`` the
window holds the newest image alone.  The id is inside the deflated data,
so :func:`encode_image` deflates the operations once (shared by every client) and keeps the GLZ
header in a stored block in front of them; :func:`stamp` writes one client's id and ``win_head_dist``
there and corrects the Adler-32 in place of deflating again.

Wire body (spice.proto ZlibGlzRGBData): ``u32 glz_data_size, u32 data_size`` + a zlib stream.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from spice.display.caps import ImageType
from spice.display.lz import _LIT, class_tokens

try:  # ISA-L's deflate: 4x faster than zlib's level 1 on photographs (1.28 MB per 1024x768 frame vs 1.23)
    from isal import isal_zlib as _fast_lib

    FAST_LEVEL = 3  # isal levels are 0-3
    FAST_MEM_LEVEL = 2  # ISA-L's buffer sizes: 0.5% smaller than its default on photographs, same speed
    FAST_DEFLATE = True
except ImportError:  # pragma: no cover - depends on the installed packages
    _fast_lib = zlib  # type: ignore[assignment]
    FAST_LEVEL = 1
    FAST_MEM_LEVEL = 8
    FAST_DEFLATE = False  # photographs cost 3x LZ4's CPU: the pipeline keeps LZ4 for them
#: operations of images with few matches (photographs: ~99% literal bytes) are deflated with the fast
#: compressor; the others (text, UI: a tenth of the raw size once matched) with zlib at this level
LITERAL_HEAVY = 0.5
ZLIB_LEVEL = 6
#: images with references whose operations are at most this share of the raw pixel bytes (a moved picture's
#: new strip) are deflated by zlib at REF_ZLIB_LEVEL: its match search gets a photograph's literals 12-15%
#: smaller than ISA-L's level 3 (117 KB vs 136 KB for a 1024x768 picture moved by 24 x 59) for ~8 ms more
REF_ZLIB_SHARE = 0.25
REF_ZLIB_LEVEL = 3

LZ_MAGIC = 0x20205A4C
LZ_VERSION = 0x00010001
LZ_TYPE_RGB32 = 8
TOP_DOWN_BIT = 1 << 4
GLZ_HEADER = struct.Struct(">IIBIIIQI")  # magic, version, type, width, height, stride, id, win_head_dist
ID_OFFSET = 21  # of the image id inside the GLZ header
DESCRIPTOR = struct.Struct("<QBBII")  # as images.DESCRIPTOR (no import cycle)
SIZES = struct.Struct("<II")  # glz_data_size, data_size
ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, no dictionary
STORED_HEADER = struct.pack("<BHH", 0, GLZ_HEADER.size, GLZ_HEADER.size ^ 0xFFFF)  # not last, stored
#: where the GLZ header starts in a marshalled ZLIB_GLZ_RGB image
HEADER_AT = DESCRIPTOR.size + SIZES.size + len(ZLIB_HEADER) + len(STORED_HEADER)
ADLER_BASE = 65521

MAX_LITERAL = 32
MAX_MATCH = 7 + 254  # one extension byte
MAX_REF_MATCH = 8192  # matches into other images: a whole row is one token (extension bytes of 255 as needed)
FEW_MATCHES = 0.5  # photographs (9-15% here; text 84% and more): literal runs alone deflate 5% smaller
MAX_SHORT_OFFSET = 4095  # offset - 1 below 4096: the two-byte form
_LEFT, _ABOVE = 1, 2  # pixel classes, as in spice.display.lz


class GlzError(ValueError):
    """Malformed or unsupported GLZ data."""


def _literals_only(px: np.ndarray, w: int, h: int) -> np.ndarray:
    """Operations for contiguous ``(n, 4)`` BGRX pixels as literal runs of 32 (photographs)."""
    n = w * h
    bgr = np.frombuffer(Image.frombuffer("RGBX", (w, h), px, "raw", "RGBX", 0, 1).convert("RGB").tobytes(),
                        np.uint8)  # X dropped by Pillow: 2.5x faster than a strided numpy copy
    full, rest = divmod(n, MAX_LITERAL)
    run = 1 + 3 * MAX_LITERAL
    out = np.empty(full * run + (1 + 3 * rest if rest else 0), np.uint8)
    body = out[:full * run].reshape(full, run)
    body[:, 0] = MAX_LITERAL - 1
    body[:, 1:] = bgr[:full * 3 * MAX_LITERAL].reshape(full, 3 * MAX_LITERAL)
    if rest:
        out[full * run] = rest - 1
        out[full * run + 1:] = bgr[full * 3 * MAX_LITERAL:]
    return out


def _match_share(rows: np.ndarray) -> float:
    """About which share of the pixels equal their left or upper neighbour (every 4th row looked at)."""
    h = rows.shape[0]
    if h < 2:
        same = rows[:, 1:] == rows[:, :-1]
        return float(same.mean()) if same.size else 0.0
    cur = rows[1::4]
    same = cur == rows[0:h - 1:4]
    same[:, 1:] |= cur[:, 1:] == cur[:, :-1]
    return float(same.mean())


def literal_heavy(pixels: np.ndarray) -> bool:
    """Whether ``pixels`` would be sent as literal runs alone (a photograph: few pixels equal a neighbour)."""
    h, w = pixels.shape[:2]
    if not h * w:
        return False
    return _match_share(np.ascontiguousarray(pixels).view(np.uint32)[..., 0] & np.uint32(0x00FFFFFF)) < FEW_MATCHES


@dataclass(frozen=True)
class Ref:
    """Pixel ``(y, x)`` of the image being encoded equals pixel ``(y + dy, x + dx)`` of the image ``dist``
    GLZ ids back, ``width`` pixels wide (the client holds it in its GLZ window)."""

    dist: int
    dy: int
    dx: int
    width: int


def _classes(flat: np.ndarray, w: int, h: int, matches: bool | None) -> np.ndarray:
    cls = np.zeros(h * w, np.int16)
    if matches is not False:
        cls[1:][flat[1:] == flat[:-1]] = _LEFT
        if h > 1 and w - 1 <= MAX_SHORT_OFFSET:
            cls[w:][flat[w:] == flat[:-w]] = _ABOVE  # preferred: long runs across repeated rows
    return cls


def _pieces(starts: np.ndarray, seg_len: np.ndarray, seg_cls: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs (first pixel, length, class) cut into tokens of at most MAX_LITERAL / MAX_REF_MATCH pixels."""
    cap = np.where(seg_cls == _LIT, MAX_LITERAL, MAX_REF_MATCH)
    npieces = (seg_len + cap - 1) // cap
    piece_seg = np.repeat(np.arange(len(starts)), npieces)
    j = np.arange(len(piece_seg)) - (np.cumsum(npieces) - npieces)[piece_seg]
    pcap = cap[piece_seg]
    pstart = starts[piece_seg] + j * pcap
    return pstart, np.minimum(pcap, starts[piece_seg] + seg_len[piece_seg] - pstart), seg_cls[piece_seg]


def _ref_headers(pstart: np.ndarray, plen: np.ndarray, k: np.ndarray, w: int,
                 refs: Sequence[Ref]) -> tuple[np.ndarray, np.ndarray]:
    """Header bytes ``(n, 9)`` and sizes of match tokens into earlier images (spice-gtk decode-glz-tmpl.c:
    ``pixel_flag`` 0: 12-bit offset, ``image_dist`` in 6 bits + ``image_flag`` bytes; ``pixel_flag`` 1:
    17-bit offset (25 with the second flag), ``image_dist`` in ``image_flag`` bytes; offsets into another
    image are not biased by 1 and count from its first pixel)."""
    dist = np.array([r.dist for r in refs], np.int64)[k]
    dy = np.array([r.dy for r in refs], np.int64)[k]
    dx = np.array([r.dx for r in refs], np.int64)[k]
    rw = np.array([r.width for r in refs], np.int64)[k]
    y, x = np.divmod(pstart, w)
    ofs = (y + dy) * rw + x + dx
    n = len(pstart)
    ext = np.where(plen >= 7, (plen - 7) // 255 + 1, 0)  # length extension bytes: 255 while more follows
    n_ext = int(ext.max()) if n else 0
    hdr = np.zeros((n, 8 + n_ext), np.int64)
    col = np.zeros(n, np.int64)  # next free header byte of each token
    rows = np.arange(n)
    short = ofs <= MAX_SHORT_OFFSET
    far2 = ofs >= 1 << 17
    hdr[:, 0] = (np.minimum(plen, 7) << 5) | np.where(short, 0, 16) | (ofs & 15)
    col += 1
    for j in range(n_ext):
        has = ext > j
        hdr[rows[has], 1 + j] = np.where(j < ext[has] - 1, 255, plen[has] - 7 - 255 * j)
    col += ext
    hdr[rows, col] = (ofs >> 4) & 255
    col += 1
    # image_flag: extra bytes of image_dist
    nd_short = np.where(dist < 1 << 6, 0, np.where(dist < 1 << 14, 1, np.where(dist < 1 << 22, 2, 3)))
    nd_long = np.where(dist < 1 << 8, 1, np.where(dist < 1 << 16, 2, 3))
    nd = np.where(short, nd_short, nd_long)
    hdr[rows, col] = np.where(short, (nd << 6) | (dist & 63), (nd << 6) | (far2 << 5) | ((ofs >> 12) & 31))
    col += 1
    for i in range(3):
        has = nd > i
        shift = np.where(short, 6 + 8 * i, 8 * i)
        hdr[rows[has], col[has]] = (dist[has] >> shift[has]) & 255
        col += has
    lf = ~short & far2
    hdr[rows[lf], col[lf]] = (ofs[lf] >> 17) & 255
    col += lf
    return hdr, col


def encode_ops(pixels: np.ndarray, matches: bool | None = None, refs: Sequence[Ref] = (),
               ref_map: np.ndarray | None = None) -> np.ndarray:
    """The GLZ RGB32 operations (no header) for ``(h, w, 4)`` uint8 B, G, R, X pixels: literal runs
    and left/above matches; ``matches=None``: literal runs alone where matches would cover under
    :data:`FEW_MATCHES` of the pixels (photographs).  With ``ref_map`` (``(h, w)``, an index into ``refs``
    or -1 per pixel) the pixels it marks are matches into earlier images (one token never spans rows)."""
    h, w = pixels.shape[:2]
    n = h * w
    if n == 0:
        raise GlzError("a GLZ image has at least one pixel")
    px = np.ascontiguousarray(pixels).reshape(n, 4)
    flat = px.view(np.uint32).reshape(n) & np.uint32(0x00FFFFFF)
    has_refs = ref_map is not None and bool(refs)
    if not has_refs and matches is None and _match_share(flat.reshape(h, w)) < FEW_MATCHES:
        return _literals_only(px, w, h)  # photographs: deflate does better
    if has_refs and matches is None:
        matches = _match_share(flat.reshape(h, w)) >= FEW_MATCHES
    if has_refs and not matches:  # (photographs) literal runs and references: the runs of ref_map, row by row
        rm = ref_map.reshape(h, w)
        cut = np.empty((h, w), bool)
        cut[:, 0] = True
        np.not_equal(rm[:, 1:], rm[:, :-1], out=cut[:, 1:])
        starts = np.flatnonzero(cut)
        seg = rm.reshape(n)[starts]
        pstart, plen, pcls = _pieces(starts, np.diff(np.append(starts, n)),
                                     np.where(seg >= 0, seg * 2 + 3 + (starts // w & 1), _LIT))
        cls = None
    else:
        cls = _classes(flat, w, h, matches)
        if has_refs:  # ref k on row y: class 3 + 2k + (y & 1), so runs (and tokens) end with the row
            parity = (np.arange(h, dtype=np.int16) & 1)[:, None]
            cls = np.where(ref_map >= 0, ref_map * 2 + parity + 3, cls.reshape(h, w)).reshape(n)
        if not cls.any():
            return _literals_only(px, w, h)
        pstart, plen, pcls = class_tokens(cls, MAX_LITERAL, MAX_MATCH)
    lit = pcls == _LIT
    m = ~lit
    near = m & (pcls < 3)
    far = pcls >= 3
    hsize = np.where(lit, 1, np.where(plen < 7, 3, 4))  # header bytes of each token
    if far.any():
        rhdr, rsize = _ref_headers(pstart[far], plen[far], (pcls[far] - 3) // 2, w, refs)
        hsize[far] = rsize
    size = hsize + np.where(lit, 3 * plen, 0)
    off = np.cumsum(size) - size
    out = np.zeros(int(size.sum()), np.uint8)

    # literal tokens: control byte, then B, G, R of each pixel (every byte no token header claims)
    out[off[lit]] = plen[lit] - 1
    payload = np.ones(len(out), bool)
    mh = hsize[m]
    hpos = np.repeat(off[m], mh) + (np.arange(int(mh.sum())) - np.repeat(np.cumsum(mh) - mh, mh))
    payload[hpos] = False
    payload[off[lit]] = False
    if cls is None:  # the literal pixels: those of the literal tokens
        lit_px = np.repeat(pstart[lit] - np.cumsum(plen[lit]) + plen[lit], plen[lit]) + np.arange(int(plen[lit].sum()))
        is_lit = px.view(np.uint32).reshape(n)[lit_px]
    else:
        is_lit = px.view(np.uint32).reshape(n)[cls == _LIT]
    out[payload] = is_lit.view(np.uint8).reshape(-1, 4)[:, :3].reshape(-1)

    # match tokens in this image: ctrl, [length extension], offset bits 4..11, 0 (this image, short offset)
    noff = off[near]
    mlen = plen[near]
    ofs = np.where(pcls[near] == _LEFT, 0, w - 1)
    out[noff] = (np.minimum(mlen, 7) << 5) | (ofs & 15)
    long_ = mlen >= 7
    out[noff[long_] + 1] = mlen[long_] - 7
    out[noff + 1 + long_] = ofs >> 4
    out[noff + 2 + long_] = 0
    if far.any():
        foff = off[far]
        cols = np.arange(rhdr.shape[1])
        inside = cols[None, :] < rsize[:, None]
        out[(foff[:, None] + cols[None, :])[inside]] = rhdr[inside]
    return out


def glz_header(width: int, height: int, image_id: int = 0, win_head_dist: int = 0) -> bytes:
    return GLZ_HEADER.pack(LZ_MAGIC, LZ_VERSION, LZ_TYPE_RGB32 | TOP_DOWN_BIT, width, height, 4 * width,
                           image_id, win_head_dist)


def encode_rgb32(pixels: np.ndarray, image_id: int = 0, win_head_dist: int = 0,
                 matches: bool | None = None, refs: Sequence[Ref] = (), ref_map: np.ndarray | None = None) -> bytes:
    """A whole GLZ stream (header + operations)."""
    h, w = pixels.shape[:2]
    return glz_header(w, h, image_id, win_head_dist) + encode_ops(pixels, matches, refs, ref_map).tobytes()


def encode_image(pixels: np.ndarray, image_id: int = 0, flags: int = 0, matches: bool | None = None,
                 level: int | None = None, refs: Sequence[Ref] = (), ref_map: np.ndarray | None = None,
                 glz_id: int = 0, win_head_dist: int = 0) -> bytes:
    """A marshalled ZLIB_GLZ_RGB SpiceImage (GLZ id ``glz_id``: :func:`stamp` changes it per client;
    images with ``refs`` are for one client only)."""
    h, w = pixels.shape[:2]
    head = glz_header(w, h, glz_id, win_head_dist)
    ops = encode_ops(pixels, matches, refs, ref_map)
    # photographs' literal runs go to the fast deflate, and so do images with references (what they leave
    # is mostly a photograph's strip: zlib's level 6 costs 3x more for a few percent), but for small strips
    if refs and level is None and len(ops) <= REF_ZLIB_SHARE * 3 * w * h:
        body = zlib.compress(ops, REF_ZLIB_LEVEL, -15)
    elif refs or len(ops) > LITERAL_HEAVY * 3 * w * h:
        deflate = _fast_lib.compressobj(FAST_LEVEL if level is None else level, zlib.DEFLATED, -15, FAST_MEM_LEVEL)
        body = deflate.compress(ops) + deflate.flush()
    else:
        body = zlib.compress(ops, ZLIB_LEVEL if level is None else level, -15)
    glz_size = len(head) + len(ops)
    adler = _fast_lib.adler32(ops, _fast_lib.adler32(head))  # ISA-L's: 6x faster than zlib's
    data_size = len(ZLIB_HEADER) + len(STORED_HEADER) + len(head) + len(body) + 4
    return b"".join((DESCRIPTOR.pack(image_id, ImageType.ZLIB_GLZ_RGB, flags, w, h),
                     SIZES.pack(glz_size, data_size), ZLIB_HEADER, STORED_HEADER, head, body,
                     adler.to_bytes(4, "big")))


def stamp(image: bytes, glz_id: int, win_head_dist: int = 0) -> bytes:
    """``image`` (from :func:`encode_image`) with GLZ image id ``glz_id`` and ``win_head_dist``; the zlib
    checksum follows."""
    at = HEADER_AT + ID_OFFSET
    old, new = image[at:at + 12], glz_id.to_bytes(8, "big") + win_head_dist.to_bytes(4, "big")
    if old == new:
        return image
    (glz_size, _) = SIZES.unpack_from(image, DESCRIPTOR.size)
    adler = int.from_bytes(image[-4:], "big")
    a, b = adler & 0xFFFF, adler >> 16
    for i in range(12):  # Adler-32: A = 1 + sum(d), B = sum((n - p) * d_p) + n
        delta = new[i] - old[i]
        a += delta
        b += (glz_size - ID_OFFSET - i) * delta
    adler = (b % ADLER_BASE) << 16 | (a % ADLER_BASE)
    return b"".join((image[:at], new, image[at + 12:-4], adler.to_bytes(4, "big")))


def glz_id_of(image: bytes) -> int:
    return int.from_bytes(image[HEADER_AT + ID_OFFSET:HEADER_AT + ID_OFFSET + 8], "big")


# -- reference decoder (tests, benchmark self-checks)

def decode_rgb32(stream: bytes, window: Mapping[int, np.ndarray] | None = None) -> tuple[np.ndarray, int, int]:
    """Decode a GLZ RGB32 stream: ``((h, w, 4) uint8 with X = 0, image id, win_head_dist)``; references to
    other images read ``window`` (GLZ id -> that image's decoded ``(h, w, 4)`` pixels, top-down)."""
    if len(stream) < GLZ_HEADER.size:
        raise GlzError("short GLZ header")
    magic, version, typ, w, h, stride, image_id, dist = GLZ_HEADER.unpack_from(stream)
    if magic != LZ_MAGIC or version != LZ_VERSION or typ & 15 != LZ_TYPE_RGB32 or stride != 4 * w:
        raise GlzError(f"bad GLZ header {magic:#x} {version:#x} type {typ} stride {stride}")
    n = w * h
    out = np.zeros((n, 4), np.uint8)
    data = memoryview(stream)[GLZ_HEADER.size:]
    pos = op = 0
    try:
        while op < n:
            c = data[pos]
            pos += 1
            if c < 32:
                k = c + 1
                if op + k > n or pos + 3 * k > len(data):
                    raise GlzError("literal run past the end")
                out[op:op + k, :3] = np.frombuffer(data[pos:pos + 3 * k], np.uint8).reshape(k, 3)
                pos += 3 * k
                op += k
                continue
            length, far, ofs = c >> 5, (c >> 4) & 1, c & 15
            if length == 7:
                while True:
                    e = data[pos]
                    pos += 1
                    length += e
                    if e != 255:
                        break
            ofs += data[pos] << 4
            code = data[pos + 1]
            pos += 2
            image_flag = code >> 6
            if not far:
                image_dist = code & 0x3F
                for i in range(image_flag):
                    image_dist += data[pos] << (6 + 8 * i)
                    pos += 1
            else:
                far2 = (code >> 5) & 1
                ofs += (code & 0x1F) << 12
                image_dist = 0
                for i in range(image_flag):
                    image_dist += data[pos] << (8 * i)
                    pos += 1
                if far2:
                    ofs += data[pos] << 17
                    pos += 1
            if image_dist:  # another image, from its first pixel (decode-glz.c glz_decoder_window_bits)
                ref = None if window is None else window.get(image_id - image_dist)
                if ref is None:
                    raise GlzError(f"reference to image {image_id - image_dist}, not in the window")
                src = ref.reshape(-1, 4)
                if ofs + length > len(src) or op + length > n:
                    raise GlzError("match outside the referenced image")
                out[op:op + length, :3] = src[ofs:ofs + length, :3]
                op += length
                continue
            back = ofs + 1
            if back > op or op + length > n:
                raise GlzError("match outside the image")
            if back >= length:
                out[op:op + length] = out[op - back:op - back + length]
            else:  # overlapping: repeat the period
                reps = -(-length // back)
                out[op:op + length] = np.tile(out[op - back:op], (reps, 1))[:length]
            op += length
    except IndexError as exc:
        raise GlzError("truncated GLZ stream") from exc
    img = out.reshape(h, w, 4)
    return (img if typ & TOP_DOWN_BIT else img[::-1].copy()), image_id, dist


def decode_body(body: bytes | memoryview,
                window: Mapping[int, np.ndarray] | None = None) -> tuple[np.ndarray, int, int]:
    """Decode a ZlibGlzRGBData body (after the image descriptor); ``window`` as in :func:`decode_rgb32`."""
    glz_size, data_size = SIZES.unpack_from(body)
    data = bytes(body[SIZES.size:SIZES.size + data_size])
    if len(data) != data_size:
        raise GlzError("truncated zlib data")
    stream = zlib.decompress(data)  # checks the Adler-32
    if len(stream) != glz_size:
        raise GlzError(f"GLZ size {len(stream)} != glz_data_size {glz_size}")
    return decode_rgb32(stream, window)
