// Byte plumbing: a FIFO of received chunks and little-endian builders/readers.

export class ByteQueue {
  constructor() {
    this.chunks = [];
    this.length = 0;
  }

  push(buffer) {
    const u8 = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
    if (u8.length) {
      this.chunks.push(u8);
      this.length += u8.length;
    }
  }

  // Remove and return the first n bytes as one Uint8Array (n <= length).
  take(n) {
    if (n > this.length) throw new RangeError("not enough bytes");
    this.length -= n;
    const first = this.chunks[0];
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }

  // Peek at a little-endian u16/u32 at offset without consuming (offset+size <= length).
  peekBytes(n) {
    if (this.chunks[0].length >= n) return this.chunks[0];
    const out = new Uint8Array(n);
    let off = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (off === n) break;
    }
    return out;
  }
}

// Sequential little-endian writer into a growing buffer.
export class Writer {
  constructor(size = 64) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  ensure(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const nb = new Uint8Array(size);
    nb.set(this.buf);
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }

  u8(v) { this.ensure(1); this.view.setUint8(this.pos, v); this.pos += 1; return this; }
  u16(v) { this.ensure(2); this.view.setUint16(this.pos, v, true); this.pos += 2; return this; }
  u32(v) { this.ensure(4); this.view.setUint32(this.pos, v >>> 0, true); this.pos += 4; return this; }
  i32(v) { this.ensure(4); this.view.setInt32(this.pos, v, true); this.pos += 4; return this; }
  u64(v) { this.ensure(8); this.view.setBigUint64(this.pos, BigInt(v), true); this.pos += 8; return this; }
  bytes(b) { this.ensure(b.length); this.buf.set(b, this.pos); this.pos += b.length; return this; }
  done() { return this.buf.slice(0, this.pos); }
}

// Little-endian reader over a Uint8Array with bounds checks.
export class Reader {
  constructor(buf, pos = 0) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = pos;
  }

  need(n) {
    if (this.pos + n > this.buf.length) throw new RangeError(`message too short (need ${n} at ${this.pos})`);
  }

  u8() { this.need(1); return this.view.getUint8(this.pos++); }
  u16() { this.need(2); const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16() { this.need(2); const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32() { this.need(4); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  // u64 as a string key (exact; ids are only compared, never computed with).
  u64key() { const lo = this.u32(); const hi = this.u32(); return `${hi}:${lo}`; }
  u64num() { const lo = this.u32(); const hi = this.u32(); return hi * 4294967296 + lo; }
  bytes(n) { this.need(n); const b = this.buf.subarray(this.pos, this.pos + n); this.pos += n; return b; }
  at(pos) { return new Reader(this.buf, pos); }
  get remaining() { return this.buf.length - this.pos; }
}
