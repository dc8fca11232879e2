// LZ4 block decoder and the SPICE LZ4 image container (quic-lz.md §4).

// Decode one raw LZ4 block src[sp, end) into dst at dp (earlier dst bytes may be referenced).
export function lz4Block(src, sp, end, dst, dp) {
  while (sp < end) {
    const token = src[sp++];
    let lit = token >> 4;
    if (lit === 15) {
      let b;
      do { b = src[sp++]; lit += b; } while (b === 255 && sp < end);
    }
    if (sp + lit > end || dp + lit > dst.length) throw new Error("LZ4 literal out of range");
    dst.set(src.subarray(sp, sp + lit), dp);
    sp += lit;
    dp += lit;
    if (sp >= end) break; // the last sequence has literals only
    const off = src[sp] | (src[sp + 1] << 8);
    sp += 2;
    let ml = token & 15;
    if (ml === 15) {
      let b;
      do { b = src[sp++]; ml += b; } while (b === 255 && sp < end);
    }
    ml += 4;
    let m = dp - off;
    if (off === 0 || m < 0 || dp + ml > dst.length) throw new Error("LZ4 match out of range");
    if (off >= ml) {
      dst.copyWithin(dp, m, m + ml);
      dp += ml;
    } else {
      while (ml--) dst[dp++] = dst[m++];
    }
  }
  return dp;
}

const BPP = { 6: 2, 7: 3, 8: 4, 9: 4 };

// SPICE LZ4 image data (after the u32 data_size): top_down u8, format u8, blocks of BE u32 size + block.
export function decodeLz4Image(d, width, height) {
  const topDown = d[0], fmt = d[1];
  const bpp = BPP[fmt];
  if (!bpp) throw new Error(`LZ4 bitmap format ${fmt} not supported`);
  const raw = new Uint8Array(width * height * bpp);
  let sp = 2, dp = 0;
  while (sp + 4 <= d.length) {
    const size = ((d[sp] << 24) | (d[sp + 1] << 16) | (d[sp + 2] << 8) | d[sp + 3]) >>> 0;
    sp += 4;
    if (sp + size > d.length) throw new Error("LZ4 block truncated");
    dp = lz4Block(d, sp, sp + size, raw, dp);
    sp += size;
  }
  if (dp !== raw.length) throw new Error(`LZ4 image short (${dp} of ${raw.length} bytes)`);
  return { width, height, pixels: toCanvasPixels(raw, width, height, fmt, width * bpp, topDown) };
}

// Convert SPICE bitmap rows (B,G,R[,X|A]) to canvas pixels (u32 0xAABBGGRR), flipping if bottom-up.
export function toCanvasPixels(raw, width, height, fmt, stride, topDown) {
  const out = new Uint32Array(width * height);
  // 32-bit rows are read as u32 words: one copy makes an unaligned buffer (BITMAP data at an odd
  // offset inside a message) aligned.
  if ((fmt === 8 || fmt === 9) && stride % 4 === 0 && raw.byteOffset % 4 !== 0) raw = raw.slice();
  for (let y = 0; y < height; y++) {
    const srcRow = (topDown ? y : height - 1 - y) * stride;
    let o = y * width;
    if ((fmt === 8 || fmt === 9) && (raw.byteOffset + srcRow) % 4 === 0) {
      const row = new Uint32Array(raw.buffer, raw.byteOffset + srcRow, width);
      const alpha = fmt === 9 ? 0 : 0xff000000;
      for (let x = 0; x < width; x++) {
        const p = row[x];
        out[o++] = ((alpha | p) & 0xff000000) | ((p & 0xff) << 16) | (p & 0xff00) | ((p >>> 16) & 0xff);
      }
      continue;
    }
    let s = srcRow;
    if (fmt === 8 || fmt === 9) {
      for (let x = 0; x < width; x++, s += 4) {
        const a = fmt === 9 ? raw[s + 3] : 255;
        out[o++] = ((a << 24) | (raw[s] << 16) | (raw[s + 1] << 8) | raw[s + 2]) >>> 0;
      }
    } else if (fmt === 7) {
      for (let x = 0; x < width; x++, s += 3) out[o++] = (0xff000000 | (raw[s] << 16) | (raw[s + 1] << 8) | raw[s + 2]) >>> 0;
    } else if (fmt === 6) {
      for (let x = 0; x < width; x++, s += 2) {
        const v = raw[s] | (raw[s + 1] << 8);
        const r = (v >> 10) & 31, g = (v >> 5) & 31, b = v & 31;
        out[o++] = (0xff000000 | (((b << 3) | (b >> 2)) << 16) | (((g << 3) | (g >> 2)) << 8) | ((r << 3) | (r >> 2))) >>> 0;
      }
    } else {
      throw new Error(`bitmap format ${fmt} not supported`);
    }
  }
  return out;
}
