// RSA-OAEP (SHA-1, MGF1-SHA-1, empty label) for the SPICE ticket when WebCrypto is unavailable
// (crypto.subtle exists only in secure contexts: https or loopback).  BigInt modular exponentiation.

function rotl(x, n) { return (x << n) | (x >>> (32 - n)); }

export function sha1(bytes) {
  const ml = bytes.length;
  const padded = new Uint8Array(((ml + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[ml] = 0x80;
  const dv = new DataView(padded.buffer);
  dv.setUint32(padded.length - 4, (ml * 8) >>> 0);
  dv.setUint32(padded.length - 8, Math.floor(ml / 0x20000000));
  let h0 = 0x67452301, h1 = 0xefcdab89, h2 = 0x98badcfe, h3 = 0x10325476, h4 = 0xc3d2e1f0;
  const w = new Uint32Array(80);
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + 4 * i);
    for (let i = 16; i < 80; i++) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    let a = h0, b = h1, c = h2, d = h3, e = h4;
    for (let i = 0; i < 80; i++) {
      let f, k;
      if (i < 20) { f = (b & c) | (~b & d); k = 0x5a827999; }
      else if (i < 40) { f = b ^ c ^ d; k = 0x6ed9eba1; }
      else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc; }
      else { f = b ^ c ^ d; k = 0xca62c1d6; }
      const t = (rotl(a, 5) + f + e + k + w[i]) >>> 0;
      e = d; d = c; c = rotl(b, 30) >>> 0; b = a; a = t;
    }
    h0 = (h0 + a) >>> 0; h1 = (h1 + b) >>> 0; h2 = (h2 + c) >>> 0; h3 = (h3 + d) >>> 0; h4 = (h4 + e) >>> 0;
  }
  const out = new Uint8Array(20);
  const ov = new DataView(out.buffer);
  [h0, h1, h2, h3, h4].forEach((h, i) => ov.setUint32(4 * i, h));
  return out;
}

function mgf1(seed, len) {
  const out = new Uint8Array(len);
  for (let counter = 0, off = 0; off < len; counter++) {
    const c = new Uint8Array(seed.length + 4);
    c.set(seed);
    new DataView(c.buffer).setUint32(seed.length, counter);
    const h = sha1(c);
    out.set(h.subarray(0, Math.min(20, len - off)), off);
    off += 20;
  }
  return out;
}

// Minimal DER walk of a SubjectPublicKeyInfo -> {n, e} as BigInt.
export function parseSpki(der) {
  let pos = 0;
  function header() {
    const tag = der[pos++];
    let len = der[pos++];
    if (len & 0x80) {
      const k = len & 0x7f;
      len = 0;
      for (let i = 0; i < k; i++) len = (len << 8) | der[pos++];
    }
    return { tag, len };
  }
  header(); // SEQUENCE
  const alg = header(); pos += alg.len; // AlgorithmIdentifier
  const bits = header(); if (bits.tag !== 0x03) throw new Error("bad key");
  pos += 1; // unused-bits byte
  header(); // SEQUENCE
  const ints = [];
  for (let i = 0; i < 2; i++) {
    const h = header();
    let v = 0n;
    for (let j = 0; j < h.len; j++) v = (v << 8n) | BigInt(der[pos++]);
    ints.push(v);
  }
  return { n: ints[0], e: ints[1] };
}

function modpow(b, e, m) {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

export function oaepEncrypt(spki, message) {
  const { n, e } = parseSpki(spki);
  const k = Math.ceil(n.toString(16).length / 2);
  const hLen = 20;
  if (message.length > k - 2 * hLen - 2) throw new Error("password too long");
  const db = new Uint8Array(k - hLen - 1);
  db.set(sha1(new Uint8Array(0)));
  db[db.length - message.length - 1] = 1;
  db.set(message, db.length - message.length);
  const seed = crypto.getRandomValues(new Uint8Array(hLen));
  const dbMask = mgf1(seed, db.length);
  for (let i = 0; i < db.length; i++) db[i] ^= dbMask[i];
  const seedMask = mgf1(db, hLen);
  for (let i = 0; i < hLen; i++) seed[i] ^= seedMask[i];
  const em = new Uint8Array(k);
  em.set(seed, 1);
  em.set(db, 1 + hLen);
  let m = 0n;
  for (const byte of em) m = (m << 8n) | BigInt(byte);
  let c = modpow(m, e, n);
  const out = new Uint8Array(k); // left-padded to the modulus size
  for (let i = k - 1; i >= 0; i--) { out[i] = Number(c & 0xffn); c >>= 8n; }
  return out;
}
