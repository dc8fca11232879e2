// Cursor channel (type 4): guest pointer shape as a CSS cursor (or an overlay when too big).
import { Channel, CHANNEL } from "../channel.js";

const M = { INIT: 101, RESET: 102, SET: 103, MOVE: 104, HIDE: 105, TRAIL: 106, INVAL_ONE: 107, INVAL_ALL: 108 };
const FLAG_NONE = 1, FLAG_CACHE_ME = 2, FLAG_FROM_CACHE = 4;
const TYPE_ALPHA = 0, TYPE_MONO = 1;

export class CursorChannel extends Channel {
  constructor(client) {
    super(client, CHANNEL.CURSOR, 0, 0);
    this.cache = new Map();
  }

  handle(type, r) {
    switch (type) {
      case M.INIT: {
        r.i16(); r.i16(); r.u16(); r.u16();
        const visible = r.u8();
        this.readCursor(r, visible);
        return;
      }
      case M.SET: {
        r.i16(); r.i16();
        const visible = r.u8();
        this.readCursor(r, visible);
        return;
      }
      case M.HIDE:
        this.client.setCursor(null);
        return;
      case M.RESET:
      case M.INVAL_ALL:
        this.cache.clear();
        return;
      case M.INVAL_ONE:
        this.cache.delete(r.u64key());
        return;
      default:
        return;
    }
  }

  readCursor(r, visible) {
    const flags = r.u16();
    if (flags & FLAG_NONE) { this.client.setCursor(null); return; }
    const unique = r.u64key();
    const type = r.u8(), w = r.u16(), h = r.u16(), hx = r.u16(), hy = r.u16();
    let shape;
    if (flags & FLAG_FROM_CACHE) {
      shape = this.cache.get(unique);
      if (!shape) return;
    } else {
      const rgba = this.decode(type, w, h, r);
      if (!rgba) return;
      shape = { width: w, height: h, hotX: hx, hotY: hy, rgba, unique };
      if (flags & FLAG_CACHE_ME) this.cache.set(unique, shape);
    }
    this.client.setCursor(visible ? shape : null);
  }

  // -> Uint8ClampedArray RGBA, or null for types we do not draw.
  decode(type, w, h, r) {
    const n = w * h;
    const out = new Uint8ClampedArray(n * 4);
    if (type === TYPE_ALPHA) {
      const d = r.bytes(n * 4);
      for (let i = 0; i < n * 4; i += 4) {
        out[i] = d[i + 2]; out[i + 1] = d[i + 1]; out[i + 2] = d[i]; out[i + 3] = d[i + 3];
      }
      return out;
    }
    if (type === TYPE_MONO) {
      const rowBytes = (w + 7) >> 3;
      const and = r.bytes(rowBytes * h), xor = r.bytes(rowBytes * h);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const byte = y * rowBytes + (x >> 3), bit = 0x80 >> (x & 7);
          const a = and[byte] & bit, xo = xor[byte] & bit, i = 4 * (y * w + x);
          if (!a) { const v = xo ? 255 : 0; out[i] = out[i + 1] = out[i + 2] = v; out[i + 3] = 255; }
          else if (xo) { out[i] = out[i + 1] = out[i + 2] = 0; out[i + 3] = 255; } // "invert": black
        }
      }
      return out;
    }
    console.debug(`cursor type ${type} not drawn`);
    return null;
  }
}
