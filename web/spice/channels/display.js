// Display channel (type 2): surfaces, draw operations, image cache; presents at the end of each message
// batch, with requestAnimationFrame as the coalescing fallback when batches come faster than the display.
import { Channel, CHANNEL } from "../channel.js";
import { Writer } from "../wire.js";
import { decodeImage, decodeJpeg, IMAGE_FLAG_CACHE_ME, IMAGE_NAMES } from "../decoders/image.js";
import { CODEC, CODEC_NAMES, VideoStreamDecoder } from "../decoders/video.js";

const M = { MODE: 101, MARK: 102, RESET: 103, COPY_BITS: 104, INVAL_LIST: 105, INVAL_ALL_PIXMAPS: 106,
  INVAL_PALETTE: 107, INVAL_ALL_PALETTES: 108, STREAM_CREATE: 122, STREAM_DATA: 123, STREAM_CLIP: 124,
  STREAM_DESTROY: 125, STREAM_DESTROY_ALL: 126, DRAW_FILL: 302, DRAW_OPAQUE: 303, DRAW_COPY: 304,
  DRAW_BLEND: 305, DRAW_BLACKNESS: 306, DRAW_WHITENESS: 307, SURFACE_CREATE: 314, SURFACE_DESTROY: 315,
  STREAM_DATA_SIZED: 316, MONITORS_CONFIG: 317, STREAM_ACTIVATE_REPORT: 319 };
const MSGC_INIT = 101, MSGC_STREAM_REPORT = 102, MSGC_PREFERRED_VIDEO_CODEC_TYPE = 105;
const CAP_PREF_VIDEO_CODEC_TYPE = 12;
// A batch whose dirty rectangles cover at most this many pixels (a typed key's echo, the clock) is
// presented at once even when this display frame already had a present: putting it costs microseconds,
// while waiting for the next animation frame would add up to a refresh interval to its latency.
export const SMALL_PRESENT_PIXELS = 16384;

// Display caps we announce: STREAM_REPORT (4), LZ4_COMPRESSION (5), MULTI_CODEC (8), CODEC_MJPEG (9),
// and CODEC_VP8 (10) / CODEC_H264 (11) where this browser's WebCodecs decodes them: a server whose policy
// allows lossy video sends video areas as streams, everything else lossless.
export const DISPLAY_CAPS = (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9);
const CODEC_CAPS = { [CODEC.VP8]: 1 << 10, [CODEC.H264]: 1 << 11 };

// The display caps for a browser that decodes `videoCodecs` (a Set of CODEC values).
export function displayCaps(videoCodecs) {
  let caps = DISPLAY_CAPS;
  for (const c of videoCodecs) caps |= CODEC_CAPS[c] || 0;
  return caps;
}
const CACHE_PIXELS = 4 * 1024 * 1024;

function readRect(r) {
  const top = r.i32(), left = r.i32(), bottom = r.i32(), right = r.i32();
  return { x: left, y: top, w: right - left, h: bottom - top };
}

function intersect(a, b) {
  const x = Math.max(a.x, b.x), y = Math.max(a.y, b.y);
  const w = Math.min(a.x + a.w, b.x + b.w) - x, h = Math.min(a.y + a.h, b.y + b.h) - y;
  return w > 0 && h > 0 ? { x, y, w, h } : null;
}

export class DisplayChannel extends Channel {
  // `videoCodecs`: the inter-frame codecs to announce; `preference`: codec types to ask the server for,
  // preferred first (PREFERRED_VIDEO_CODEC_TYPE), or none.
  constructor(client, id = 0, { videoCodecs = new Set(), preference = [] } = {}) {
    super(client, CHANNEL.DISPLAY, id, displayCaps(videoCodecs));
    this.videoCodecs = videoCodecs;
    this.preference = preference;
    this.surfaces = new Map();
    this.cache = new Map();
    this.streams = new Map();
    this.primary = null;
    this.dirty = null;
    this.rafPending = false; // a frame tick is scheduled: presents in this display frame wait for it
    this.stats = { draws: 0, decodeMs: 0, drawMs: 0, presents: 0, presentMs: 0, reports: 0, byType: {} };
  }

  onOpen() {
    const w = new Writer(14);
    w.u8(1).u64(CACHE_PIXELS).u8(0).i32(0);
    this.send(MSGC_INIT, w.done());
    if (this.preference.length && (this.serverCaps.channel & (1 << CAP_PREF_VIDEO_CODEC_TYPE))) {
      const p = new Writer(1 + this.preference.length).u8(this.preference.length);
      for (const c of this.preference) p.u8(c);
      this.send(MSGC_PREFERRED_VIDEO_CODEC_TYPE, p.done());
    }
  }

  close() {
    this.streamDestroyAll();
    super.close();
  }

  // -- surfaces and presentation ---------------------------------------------------------------
  createSurface(id, width, height, primary) {
    if (width <= 0 || height <= 0 || width * height > 64 * 1024 * 1024) throw new Error("bad surface size");
    const pixels = new Uint32Array(width * height);
    pixels.fill(0xff000000);
    const s = { id, width, height, pixels, primary };
    this.surfaces.set(id, s);
    if (primary) {
      this.primary = s;
      s.imageData = new ImageData(new Uint8ClampedArray(pixels.buffer), width, height);
      this.client.primaryCreated(width, height);
      this.markDirty(s, { x: 0, y: 0, w: width, h: height });
    }
  }

  // Dirty rectangles of the primary surface, presented at the end of the message batch.  Few small
  // rectangles are put one by one; many (or large overlapping ones) become their bounding box.
  markDirty(s, rect) {
    if (!s.primary) return;
    const list = this.dirty || (this.dirty = []);
    list.push({ x: rect.x, y: rect.y, w: rect.w, h: rect.h });
    if (list.length > 64) { // too many: keep only their bounding box
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const d of list) {
        x0 = Math.min(x0, d.x); y0 = Math.min(y0, d.y);
        x1 = Math.max(x1, d.x + d.w); y1 = Math.max(y1, d.y + d.h);
      }
      list.length = 0;
      list.push({ x: x0, y: y0, w: x1 - x0, h: y1 - y0 });
      list.overflow = true;
    }
  }

  // End of a batch of messages (server frames end with their last message, JS runs them to the end
  // before any paint, so the canvas never shows half a frame): present now, unless this display frame
  // already had a present and this batch is not small — then the next animation frame presents
  // everything drawn until then.
  onBatchEnd() {
    const list = this.dirty;
    if (!list) return;
    if (this.rafPending) {
      let area = 0;
      for (const d of list) area += d.w * d.h;
      if (list.overflow || area > SMALL_PRESENT_PIXELS) return;
      this.present();
      return;
    }
    this.present();
    this._armFrame();
  }

  _armFrame() {
    this.rafPending = true;
    requestAnimationFrame(() => {
      this.rafPending = false;
      if (this.dirty) { // batches arrived faster than the refresh: coalesced into this frame
        this.present();
        this._armFrame();
      }
    });
  }

  present() {
    const s = this.primary, list = this.dirty;
    this.dirty = null;
    if (!s || !list || !list.length) return;
    const t0 = performance.now();
    const ctx = this.client.context();
    if (ctx) {
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity, area = 0;
      for (const d of list) {
        x0 = Math.min(x0, d.x); y0 = Math.min(y0, d.y);
        x1 = Math.max(x1, d.x + d.w); y1 = Math.max(y1, d.y + d.h);
        area += d.w * d.h;
      }
      if (list.overflow || area * 2 > (x1 - x0) * (y1 - y0)) {
        ctx.putImageData(s.imageData, 0, 0, x0, y0, x1 - x0, y1 - y0);
      } else {
        for (const d of list) ctx.putImageData(s.imageData, 0, 0, d.x, d.y, d.w, d.h);
      }
    }
    const dt = performance.now() - t0;
    this.stats.presents++;
    this.stats.presentMs += dt;
    performance.measure("spice-present", { start: t0, duration: dt }); // (for DevTools traces)
    if (this.stats.presents % 1024 === 0) performance.clearMeasures("spice-present"); // kept forever otherwise
    this.client.presented();
  }

  // -- message handling --------------------------------------------------------------------------
  handle(type, r) {
    switch (type) {
      case M.SURFACE_CREATE: {
        const id = r.u32(), w = r.u32(), h = r.u32(), fmt = r.u32(), flags = r.u32();
        if (fmt !== 32 && fmt !== 96) console.warn(`surface format ${fmt} treated as 32-bit`);
        this.createSurface(id, w, h, (flags & 1) !== 0);
        return undefined;
      }
      case M.SURFACE_DESTROY: {
        const id = r.u32();
        this.surfaces.delete(id);
        if (this.primary && this.primary.id === id) this.primary = null;
        return undefined;
      }
      case M.MODE: {
        const w = r.u32(), h = r.u32();
        this.createSurface(0, w, h, true);
        return undefined;
      }
      case M.MARK:
        this.client.marked();
        return undefined;
      case M.RESET:
        this.cache.clear();
        return undefined;
      case M.INVAL_LIST: {
        const n = r.u16();
        for (let i = 0; i < n; i++) { r.u8(); this.cache.delete(r.u64key()); }
        return undefined;
      }
      case M.INVAL_ALL_PIXMAPS:
        this.cache.clear();
        return undefined;
      case M.DRAW_FILL:
        return this.timed(() => this.drawFill(r));
      case M.DRAW_COPY:
      case M.DRAW_BLEND:
      case M.DRAW_OPAQUE:
        return this.timed(() => this.drawCopy(r, type));
      case M.DRAW_BLACKNESS:
      case M.DRAW_WHITENESS: {
        const base = this.readBase(r);
        if (base) this.fill(base, type === M.DRAW_BLACKNESS ? 0xff000000 : 0xffffffff);
        return undefined;
      }
      case M.COPY_BITS:
        return this.timed(() => this.copyBits(r));
      case M.STREAM_CREATE: return this.streamCreate(r);
      case M.STREAM_DATA: return this.streamData(r, false);
      case M.STREAM_DATA_SIZED: return this.streamData(r, true);
      case M.STREAM_CLIP: return undefined;
      case M.STREAM_DESTROY: this.streamDestroy(r.u32()); return undefined;
      case M.STREAM_DESTROY_ALL: this.streamDestroyAll(); return undefined;
      case M.STREAM_ACTIVATE_REPORT: this.activateReport(r); return undefined;
      case M.MONITORS_CONFIG:
      case M.INVAL_PALETTE:
      case M.INVAL_ALL_PALETTES:
        return undefined;
      default:
        console.debug(`display: unhandled message ${type}`);
        return undefined;
    }
  }

  timed(fn) {
    const t0 = performance.now();
    const done = (res) => {
      const dt = performance.now() - t0;
      this.stats.draws++;
      this.stats.drawMs += dt;
      return res;
    };
    const r = fn();
    return r && typeof r.then === "function" ? r.then(done) : done(r);
  }

  // DisplayBase: surface, box, clip -> {surface, box, clips} (clips = list of rects within box).
  readBase(r) {
    const sid = r.u32();
    const box = readRect(r);
    const clipType = r.u8();
    let rects = [box];
    if (clipType === 1) {
      const n = r.u32();
      rects = [];
      for (let i = 0; i < n; i++) {
        const c = intersect(readRect(r), box);
        if (c) rects.push(c);
      }
    }
    const surface = this.surfaces.get(sid);
    if (!surface) return null;
    const bounds = { x: 0, y: 0, w: surface.width, h: surface.height };
    const clips = rects.map((c) => intersect(c, bounds)).filter(Boolean);
    return { surface, box, clips };
  }

  fill(base, color) {
    const { surface: s, clips } = base;
    for (const c of clips) {
      for (let y = c.y; y < c.y + c.h; y++) s.pixels.fill(color, y * s.width + c.x, y * s.width + c.x + c.w);
      this.markDirty(s, c);
    }
  }

  drawFill(r) {
    const base = this.readBase(r);
    const brushType = r.u8();
    if (brushType !== 1) { console.debug("display: only solid fills"); return; }
    const c = r.u32();
    const color = (0xff000000 | ((c & 0xff) << 16) | (c & 0xff00) | ((c >>> 16) & 0xff)) >>> 0;
    if (base) this.fill(base, color);
  }

  drawCopy(r, type) {
    const base = this.readBase(r);
    const srcPtr = r.u32();
    if (type === M.DRAW_OPAQUE) { /* brush follows src_area; ignored */ }
    const area = readRect(r);
    if (!srcPtr) return undefined;
    const decoded = decodeImage(r.at(srcPtr), this);
    const finish = ({ desc, image }) => {
      this.countImage(desc.type);
      if (desc.flags & IMAGE_FLAG_CACHE_ME) this.cache.set(desc.id, image);
      if (base) this.blit(base, image, area);
    };
    if (decoded && typeof decoded.then === "function") return decoded.then(finish);
    finish(decoded);
    return undefined;
  }

  countImage(type) {
    const name = IMAGE_NAMES[type] || String(type);
    this.stats.byType[name] = (this.stats.byType[name] || 0) + 1;
  }

  // Copy `area` of `image` onto base.box (nearest-neighbour scaling if sizes differ), clipped.
  blit(base, image, area) {
    const { surface: s, box, clips } = base;
    const sx0 = Math.max(0, area.x), sy0 = Math.max(0, area.y);
    const scaleX = area.w / box.w, scaleY = area.h / box.h;
    const same = area.w === box.w && area.h === box.h;
    const src = image.pixels, sw = image.width;
    for (const c of clips) {
      for (let y = c.y; y < c.y + c.h; y++) {
        const dy = y - box.y;
        const srcY = same ? sy0 + dy : sy0 + Math.floor(dy * scaleY);
        if (srcY >= image.height) break;
        const dstOff = y * s.width;
        if (same) {
          const sx = sx0 + (c.x - box.x);
          const n = Math.min(c.w, sw - sx);
          if (n > 0) s.pixels.set(src.subarray(srcY * sw + sx, srcY * sw + sx + n), dstOff + c.x);
        } else {
          for (let x = c.x; x < c.x + c.w; x++) {
            const srcX = sx0 + Math.floor((x - box.x) * scaleX);
            if (srcX < sw) s.pixels[dstOff + x] = src[srcY * sw + srcX];
          }
        }
      }
      this.markDirty(s, c);
    }
  }

  copyBits(r) {
    const base = this.readBase(r);
    const sx = r.i32(), sy = r.i32();
    if (!base) return;
    const { surface: s, box, clips } = base;
    const px = s.pixels, w = s.width;
    for (const c of clips) {
      const srcX = sx + (c.x - box.x), srcY = sy + (c.y - box.y);
      if (srcX < 0 || srcY < 0 || srcX + c.w > s.width || srcY + c.h > s.height) continue;
      const down = srcY < c.y; // copy bottom-up when moving content down (overlap)
      for (let i = 0; i < c.h; i++) {
        const row = down ? c.h - 1 - i : i;
        const from = (srcY + row) * w + srcX;
        px.copyWithin((c.y + row) * w + c.x, from, from + c.w);
      }
      this.markDirty(s, c);
    }
  }

  // -- video streams ------------------------------------------------------------------------------
  // MJPEG frames decode with createImageBitmap, VP8 / H.264 frames with WebCodecs (one VideoDecoder per
  // stream); a frame holds back the messages behind it until it is drawn, so a later lossless redraw is
  // never overwritten.  With STREAM_REPORT the server's report window is answered as spice-gtk does.
  streamCreate(r) {
    const surfaceId = r.u32(), id = r.u32(), flags = r.u8(), codec = r.u8();
    r.u64key();
    const sw = r.u32(), sh = r.u32(), srcW = r.u32(), srcH = r.u32();
    const dest = readRect(r);
    this.streamDestroy(id);
    const st = { id, surfaceId, flags, codec, width: sw, height: sh, srcW, srcH, dest, decoder: null, report: null };
    this.streams.set(id, st);
    if (codec === CODEC.MJPEG) return;
    if (!this.videoCodecs.has(codec)) { this.refuseStream(st, "not announced"); return; }
    try {
      st.decoder = new VideoStreamDecoder(codec, sw, sh, (err) => this.refuseStream(st, err.message));
      st.decoder.onLate = (image) => { if (this.streams.get(id) === st) this.drawFrame(st, image, sw, sh, st.dest); };
    } catch (err) {
      this.refuseStream(st, err.message);
    }
  }

  // This client cannot decode the stream: STREAM_REPORT with no frames and 0xffffffff drops (spice-gtk's
  // way); the server goes on with its next codec.
  refuseStream(st, why) {
    if (st.refused) return;
    st.refused = true;
    console.warn(`stream ${st.id}: ${CODEC_NAMES[st.codec] || st.codec} cannot be decoded here (${why})`);
    if (st.decoder) st.decoder.close();
    this.sendStreamReport(st.id, st.report ? st.report.uid : 0, 0, 0, 0, 0xffffffff, 0);
  }

  // STREAM_REPORT: stream id, unique id, first and last frame's mm time, frames, drops, last frame's
  // delay (ms, negative: late), audio delay (none).
  sendStreamReport(id, uid, start, end, frames, drops, delay) {
    const w = new Writer(32);
    w.u32(id).u32(uid).u32(start >>> 0).u32(end >>> 0).u32(frames).u32(drops).i32(delay).u32(0xffffffff);
    this.send(MSGC_STREAM_REPORT, w.done());
  }

  streamDestroy(id) {
    const st = this.streams.get(id);
    if (!st) return;
    this.streams.delete(id);
    if (st.decoder) st.decoder.close();
    if (st.report) clearTimeout(st.report.timer);
  }

  streamDestroyAll() {
    for (const id of [...this.streams.keys()]) this.streamDestroy(id);
  }

  activateReport(r) {
    const id = r.u32(), uid = r.u32(), windowSize = r.u32(), timeoutMs = r.u32();
    const st = this.streams.get(id);
    if (!st) return;
    if (st.report) clearTimeout(st.report.timer);
    st.report = { uid, window: Math.max(1, windowSize), timeoutMs, frames: 0, drops: 0, start: 0, end: 0,
      delay: 0, timer: 0 };
  }

  // Count one frame of `st` (stamped `mm`) that was drawn, or dropped; send the report when the window is
  // full or its time is up.
  reportFrame(st, mm, drawn) {
    const rep = st.report;
    if (!rep || this.streams.get(st.id) !== st) return;
    if (!rep.frames && !rep.drops) {
      rep.start = mm;
      if (rep.timeoutMs) rep.timer = setTimeout(() => this.sendReport(st), rep.timeoutMs);
    }
    if (drawn) rep.frames++; else rep.drops++;
    rep.end = mm;
    const now = this.client.mmTime();
    rep.delay = now === null ? 0 : (mm - now) | 0;
    if (rep.frames + rep.drops >= rep.window) this.sendReport(st);
  }

  sendReport(st) {
    const rep = st.report;
    if (!rep || (!rep.frames && !rep.drops) || this.streams.get(st.id) !== st) return;
    clearTimeout(rep.timer);
    this.sendStreamReport(st.id, rep.uid, rep.start, rep.end, rep.frames, rep.drops, rep.delay);
    this.stats.reports++;
    rep.frames = rep.drops = 0;
  }

  streamData(r, sized) {
    const id = r.u32();
    const mm = r.u32(); // drawn as soon as decoded; the stamp only goes into the reports
    const st = this.streams.get(id);
    let width = st ? st.width : 0, height = st ? st.height : 0, dest = st ? st.dest : null;
    if (sized) { width = r.u32(); height = r.u32(); dest = readRect(r); }
    const size = r.u32();
    const data = r.bytes(size).slice();
    if (!st || st.refused) return undefined;
    if (!this.surfaces.get(st.surfaceId)) return undefined;
    const decoding = st.codec === CODEC.MJPEG ? decodeJpeg(data, width, height) : st.decoder.decode(data);
    return this.timed(() => decoding.then((image) => {
      if (image) this.drawFrame(st, image, width, height, dest);
      this.reportFrame(st, mm, Boolean(image));
    }, (err) => {
      this.reportFrame(st, mm, false);
      throw err;
    }));
  }

  drawFrame(st, image, width, height, dest) {
    const surface = this.surfaces.get(st.surfaceId);
    if (!surface) return;
    this.countImage(CODEC_NAMES[st.codec] || String(st.codec));
    if (!(st.flags & 1)) { // bottom-up frame
      const flipped = new Uint32Array(image.pixels.length);
      for (let y = 0; y < height; y++) flipped.set(image.pixels.subarray(y * width, (y + 1) * width), (height - 1 - y) * width);
      image = { width, height, pixels: flipped };
    }
    const bounds = { x: 0, y: 0, w: surface.width, h: surface.height };
    const clip = intersect(dest, bounds);
    if (clip) this.blit({ surface, box: dest, clips: [clip] }, image, { x: 0, y: 0, w: width, h: height });
  }
}
