// VP8 and H.264 video streams through WebCodecs (secure contexts only: https, or http on localhost).
// The server sends one compressed frame per STREAM_DATA; H.264 comes as an Annex-B byte stream with its
// parameter sets in band, so the decoder needs no `description`.
import { drawnPixels, readbackContext } from "./image.js";

export const CODEC = { MJPEG: 1, VP8: 2, H264: 3 };
export const CODEC_NAMES = { 1: "MJPEG", 2: "VP8", 3: "H264" };
const CONFIG = { [CODEC.VP8]: "vp8", [CODEC.H264]: "avc1.640028" };
// A frame the decoder has not returned after this long no longer holds back the messages behind it; it
// is still drawn when it comes, unless its stream has ended by then.
const OUTPUT_WAIT_MS = 250;

let support = null;

// The inter-frame codecs this browser decodes (a Set of CODEC values), worked out once.
export function videoCodecs() {
  if (!support) support = probe();
  return support;
}

async function probe() {
  const found = new Set();
  if (typeof VideoDecoder === "undefined") return found;
  for (const [codec, name] of Object.entries(CONFIG)) {
    try {
      const { supported } = await VideoDecoder.isConfigSupported({ codec: name, optimizeForLatency: true });
      if (supported) found.add(Number(codec));
    } catch (err) { /* not this one */ }
  }
  return found;
}

// Whether `data` (one compressed frame) can start a decode: a VP8 key frame (bit 0 of the frame tag
// clear) or an H.264 access unit with an IDR slice or a sequence parameter set.  Parameter sets and SEI
// come before an access unit's slices, so the scan stops at the first slice.
export function isKeyFrame(codec, data) {
  if (codec === CODEC.VP8) return data.length > 0 && (data[0] & 1) === 0;
  for (let i = data.indexOf(1, 2); i >= 0 && i + 1 < data.length; i = data.indexOf(1, i + 1)) {
    if (data[i - 1] !== 0 || data[i - 2] !== 0) continue; // not a start code
    const type = data[i + 1] & 0x1f;
    if (type === 5 || type === 7) return true;
    if (type === 1) return false; // a non-IDR slice
  }
  return false;
}

// One stream's decoder: decode(bytes) -> Promise of {width, height, pixels} (RGBA words, as the surfaces
// hold them) or null when the frame was skipped (no key frame yet) or is still in the decoder.
export class VideoStreamDecoder {
  constructor(codec, width, height, onError) {
    this.codec = codec;
    this.width = width;
    this.height = height;
    this.onError = onError;
    this.pending = [];
    this.started = false;
    this.closed = false;
    this.count = 0;
    this.ctx = readbackContext(width, height);
    this.decoder = new VideoDecoder({ output: (frame) => this.output(frame), error: (err) => this.fail(err) });
    this.decoder.configure({ codec: CONFIG[codec], optimizeForLatency: true });
  }

  decode(data) {
    if (this.closed) return Promise.resolve(null);
    const key = isKeyFrame(this.codec, data);
    if (!this.started && !key) return Promise.resolve(null);
    this.started = true;
    return new Promise((resolve) => {
      const timestamp = this.count++ * 1000; // (microseconds; the output frame carries it back)
      const entry = { timestamp, resolve, late: false };
      this.pending.push(entry);
      entry.timer = setTimeout(() => { entry.late = true; resolve(null); }, OUTPUT_WAIT_MS);
      try {
        this.decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp, data }));
      } catch (err) {
        this.fail(err);
      }
    });
  }

  // A decoded frame: its chunk's promise gets the pixels (or, past its wait, onLate); chunks before it
  // that gave no picture are settled with null.
  output(frame) {
    try {
      if (this.closed) return;
      let entry = null;
      while (this.pending.length && this.pending[0].timestamp <= frame.timestamp) {
        entry = this.pending.shift();
        clearTimeout(entry.timer);
        if (entry.timestamp < frame.timestamp) { entry.resolve(null); entry = null; }
      }
      if (!entry) return;
      const image = drawnPixels(this.ctx, frame, this.width, this.height);
      if (entry.late) { if (this.onLate) this.onLate(image); } else entry.resolve(image);
    } finally {
      frame.close();
    }
  }

  fail(err) {
    if (this.closed) return;
    this.close();
    for (const entry of this.pending.splice(0)) { clearTimeout(entry.timer); entry.resolve(null); }
    this.onError(err);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    try { this.decoder.close(); } catch (err) { /* already closed by an error */ }
  }
}
