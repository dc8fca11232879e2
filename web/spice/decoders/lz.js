// SPICE LZ (image type LZ_RGB) decoder for RGB32, RGBA and XXXA (quic-lz.md §2).
// Output: Uint32Array of canvas pixels (little-endian RGBA bytes, alpha 255 unless RGBA/XXXA).

export const LZ_RGB32 = 8, LZ_RGBA = 9, LZ_XXXA = 10;
const MAGIC = 0x20205a4c, VERSION = 0x00010001;

function be32(d, p) { return ((d[p] << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3]) >>> 0; }

export function parseLzHeader(d) {
  if (d.length < 28 || be32(d, 0) !== MAGIC || be32(d, 4) !== VERSION) throw new Error("bad LZ header");
  return { type: be32(d, 8), width: be32(d, 12), height: be32(d, 16), stride: be32(d, 20), topDown: be32(d, 24) };
}

// RGB pass: units are pixels, literals are B,G,R byte triples.
function decodeRgb(d, pos, out, n) {
  let o = 0;
  while (o < n) {
    const c = d[pos++];
    if (c === undefined) throw new Error("LZ stream truncated");
    if (c < 32) {
      let len = c + 1;
      if (o + len > n) throw new Error("LZ literal overruns image");
      while (len--) {
        out[o++] = 0xff000000 | (d[pos] << 16) | (d[pos + 1] << 8) | d[pos + 2];
        pos += 3;
      }
    } else {
      let len = c >> 5;
      const hi = c & 31;
      if (len === 7) {
        let e;
        do { e = d[pos++]; len += e; } while (e === 255);
      }
      const lo = d[pos++];
      let dist = (hi << 8) | lo;
      if (hi === 31 && lo === 255) { dist = ((d[pos] << 8) | d[pos + 1]) + 8191; pos += 2; }
      let src = o - dist - 1;
      if (src < 0 || o + len > n) throw new Error("LZ reference out of range");
      while (len--) out[o++] = out[src++];
    }
  }
  if (pos > d.length) throw new Error("LZ stream truncated");
  return pos;
}

// Alpha pass: 1-byte units written into byte 3 of every pixel; match lengths carry a +2 bias.
function decodeAlpha(d, pos, bytes, n) {
  let o = 0;
  while (o < n) {
    const c = d[pos++];
    if (c === undefined) throw new Error("LZ alpha stream truncated");
    if (c < 32) {
      let len = c + 1;
      if (o + len > n) throw new Error("LZ literal overruns image");
      while (len--) { bytes[4 * o++ + 3] = d[pos++]; }
    } else {
      let len = c >> 5;
      const hi = c & 31;
      if (len === 7) {
        let e;
        do { e = d[pos++]; len += e; } while (e === 255);
      }
      len += 2;
      const lo = d[pos++];
      let dist = (hi << 8) | lo;
      if (hi === 31 && lo === 255) { dist = ((d[pos] << 8) | d[pos + 1]) + 8191; pos += 2; }
      let src = o - dist - 1;
      if (src < 0 || o + len > n) throw new Error("LZ reference out of range");
      while (len--) bytes[4 * o++ + 3] = bytes[4 * src++ + 3];
    }
  }
  return pos;
}

function flipRows(px, w, h) {
  const row = new Uint32Array(w);
  for (let top = 0, bot = h - 1; top < bot; top++, bot--) {
    row.set(px.subarray(top * w, top * w + w));
    px.copyWithin(top * w, bot * w, bot * w + w);
    px.set(row, bot * w);
  }
}

// Decode a whole LZ stream (header + body). `into` (optional) supplies the RGB pixels for XXXA.
export function decodeLz(d, into = null) {
  const h = parseLzHeader(d);
  const n = h.width * h.height;
  if (n > 64 * 1024 * 1024) throw new Error("LZ image too large");
  const out = into || new Uint32Array(n);
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  let pos = 28;
  if (h.type === LZ_RGB32) {
    pos = decodeRgb(d, pos, out, n);
  } else if (h.type === LZ_RGBA) {
    pos = decodeRgb(d, pos, out, n);
    pos = decodeAlpha(d, pos, bytes, n);
  } else if (h.type === LZ_XXXA) {
    pos = decodeAlpha(d, pos, bytes, n);
  } else {
    throw new Error(`LZ image type ${h.type} not supported`);
  }
  if (!h.topDown) flipRows(out, h.width, h.height);
  return { width: h.width, height: h.height, pixels: out };
}
