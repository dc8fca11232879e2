"""The web client's image decoders (web/spice/decoders/*.js) run in Chromium on images encoded by the
server's own encoders (spice.display.images: BITMAP, LZ_RGB, LZ4, JPEG) and on hand-built streams that
exercise the rarer paths (LZ far distances, RGBA alpha pass, bottom-up rows, LZ4 cross-block matches)."""

from __future__ import annotations

import base64
import struct
import sys
from pathlib import Path

import lz4.block
import numpy as np
import simplejpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import browser_marks, chromium, new_page  # noqa: E402

from spice.display import images  # noqa: E402
from spice.display.caps import ImageType  # noqa: E402

pytestmark = browser_marks()

DECODE_JS = """async (b64s) => {
  const { decodeImage } = await import('/spice/decoders/image.js');
  const { Reader } = await import('/spice/wire.js');
  const out = [];
  for (const b64 of b64s) {
    const bin = atob(b64);
    const u8 = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
    try {
      const { image } = await decodeImage(new Reader(u8), { cache: new Map(), surfaces: new Map() });
      const bytes = new Uint8Array(image.pixels.buffer, image.pixels.byteOffset, image.pixels.byteLength);
      let s = '';
      for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      out.push([image.width, image.height, btoa(s)]);
    } catch (e) {
      out.push(['error', String(e)]);
    }
  }
  return out;
}"""


def samples(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (97, 131, 4), np.uint8)
    ui = np.zeros((120, 333, 4), np.uint8)
    ui[...] = (0x30, 0x60, 0x90, 0)
    ui[20:60, 10:200] = (0xEC, 0xEC, 0xEC, 0)
    ui[30:32, 20:180] = rng.integers(0, 256, (2, 160, 4), np.uint8)  # text-like noise rows
    ui[80:] = ui[20:60]  # vertically repeated block
    grad = np.zeros((64, 256, 4), np.uint8)
    grad[..., 0] = np.arange(256)[None, :]
    grad[..., 1] = np.arange(64)[:, None] * 4
    wide = np.zeros((3, 9000, 4), np.uint8)  # rows repeat at distance 9000 > 8191: LZ far codes
    wide[0] = rng.integers(0, 256, (9000, 4), np.uint8)
    wide[1:] = wide[0]
    tiny = rng.integers(0, 256, (1, 1, 4), np.uint8)
    return {"noise": noise, "ui": ui, "grad": grad, "wide": wide, "tiny": tiny}


def rgb_of(bgrx: np.ndarray) -> np.ndarray:
    return bgrx[..., 2::-1]


def decoded(res) -> np.ndarray:
    assert res[0] != "error", res[1]
    w, h, b64 = res
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w, 4)


def lz_rgba_stream() -> tuple[bytes, np.ndarray]:
    """2x2 RGBA, bottom-up rows: RGB literals, then an alpha literal + a length-3 copy (bias +2)."""
    header = struct.pack(">IIIIIII", 0x20205A4C, 0x00010001, 9, 2, 2, 8, 0)
    bgr = [(1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12)]
    body = bytes([3]) + b"".join(bytes(p) for p in bgr)
    body += bytes([0, 0x80]) + bytes([1 << 5, 0])  # alpha literal 0x80, then copy L=1 (+2) at distance 1
    stream = header + body
    rows = np.array([[p + (0x80,) for p in bgr[0:2]], [p + (0x80,) for p in bgr[2:4]]], np.uint8)
    expect_bgra = rows[::-1]  # first encoded row is the bottom row
    image = images.descriptor(5, ImageType.LZ_RGB, 2, 2) + struct.pack("<I", len(stream)) + stream
    return image, expect_bgra


def lz4_two_blocks(px: np.ndarray) -> bytes:
    """LZ4 image whose second block is one match into the first block (streaming reference)."""
    h, w = px.shape[:2]
    raw = np.ascontiguousarray(px).tobytes()
    half = len(raw) // 2
    assert raw[:half] == raw[half:]
    block1 = lz4.block.compress(raw[:half], store_size=False)
    ml = half - 4
    ext = b""
    if ml >= 15:
        rest = ml - 15
        ext = b"\xff" * (rest // 255) + bytes([rest % 255])
    block2 = bytes([0x0F]) + struct.pack("<H", half) + ext + b"\x00"
    data = b"\x01\x08" + struct.pack(">I", len(block1)) + block1 + struct.pack(">I", len(block2)) + block2
    return images.descriptor(9, ImageType.LZ4, w, h) + struct.pack("<I", len(data)) + data


async def run_decoders(page, blobs: list[bytes]):
    return await page.evaluate(DECODE_JS, [base64.b64encode(b).decode() for b in blobs])


async def test_decoders_match_python_encoders(frontdoor):
    base = f"http://127.0.0.1:{frontdoor.port}"
    pics = samples()
    lossless = [ImageType.BITMAP, ImageType.LZ_RGB, ImageType.LZ4]
    blobs, expect = [], []
    for name, px in pics.items():
        for t in lossless:
            blobs.append(images.encode(t, px))
            expect.append((f"{name}/{t.name}", rgb_of(px)))
    rgba_img, rgba_expect = lz_rgba_stream()
    rep = np.tile(pics["noise"][:4], (2, 1, 1))  # two identical halves
    blobs += [rgba_img, lz4_two_blocks(rep)]
    async with chromium() as browser:
        page = await new_page(browser)
        # A blank page of our origin (no client running), so the modules load under our CSP rules.
        await page.route(
            f"{base}/blank.html",
            lambda r: r.fulfill(body="<!doctype html><p>x</p>", content_type="text/html"),
        )
        await page.goto(f"{base}/blank.html")
        results = await run_decoders(page, blobs)
        for (label, want), res in zip(expect, results, strict=False):
            got = decoded(res)
            assert got.shape[:2] == want.shape[:2], label
            assert np.array_equal(got[..., :3], want), label
            assert (got[..., 3] == 255).all(), label
        got = decoded(results[len(expect)])
        assert np.array_equal(got, rgba_expect[..., [2, 1, 0, 3]])
        got = decoded(results[len(expect) + 1])
        assert np.array_equal(got[..., :3], rgb_of(rep))

        # JPEG goes through the browser's decoder: close to libjpeg-turbo's own decode, not exact.
        px = pics["grad"]
        res = (await run_decoders(page, [images.encode_jpeg(px, quality=90)]))[0]
        got = decoded(res)[..., :3].astype(int)
        ref = simplejpeg.decode_jpeg(images.jpeg_bytes(px, 90), colorspace="RGB").astype(int)
        assert np.abs(got - ref).mean() < 2.0

        # Corrupt input raises a clear error instead of hanging or writing out of bounds.
        bad = bytearray(images.encode_lz_rgb(pics["noise"]))
        del bad[200:]
        bad[18:22] = struct.pack("<I", len(bad) - 22)
        res = await run_decoders(page, [bytes(bad), images.encode_lz4(pics["noise"])[:60]])
        assert [r[0] for r in res] == ["error", "error"], res


RSA_JS = """async ([spkiB64, texts]) => {
  const { oaepEncrypt, sha1 } = await import('/spice/rsa.js');
  const dec = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const enc = (u8) => btoa(String.fromCharCode.apply(null, u8));
  const spki = dec(spkiB64);
  const tickets = texts.map((t) => enc(oaepEncrypt(spki, new TextEncoder().encode(t + '\\0'))));
  const hashes = [0, 1, 55, 56, 63, 64, 65, 1000].map((n) => {
    const u8 = new Uint8Array(n);
    for (let i = 0; i < n; i++) u8[i] = (i * 7 + 3) & 255;
    return enc(sha1(u8));
  });
  return [tickets, hashes];
}"""


async def test_bigint_rsa_oaep_fallback_ticket(frontdoor):
    """The ticket path for pages without WebCrypto (plain http to a non-loopback host): the server's
    private key must decrypt what the BigInt RSA-OAEP-SHA1 code produced; SHA-1 matches hashlib."""
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert len(spki) == 162
    texts = ["", "pw", "x" * 60, "pässwörd"]
    async with chromium() as browser:
        page = await new_page(browser)
        base = f"http://127.0.0.1:{frontdoor.port}"
        await page.route(
            f"{base}/blank.html", lambda r: r.fulfill(body="<!doctype html>", content_type="text/html")
        )
        await page.goto(f"{base}/blank.html")
        tickets, digests = await page.evaluate(RSA_JS, [base64.b64encode(spki).decode(), texts])
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    for text, b64 in zip(texts, tickets, strict=True):
        cipher = base64.b64decode(b64)
        assert len(cipher) == 128
        assert key.decrypt(cipher, oaep) == text.encode() + b"\0"
    for n, b64 in zip([0, 1, 55, 56, 63, 64, 65, 1000], digests, strict=True):
        data = bytes((i * 7 + 3) & 255 for i in range(n))
        assert base64.b64decode(b64) == hashlib.sha1(data).digest()
