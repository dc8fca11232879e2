// SPICE Image (descriptor + type-specific body, spice.md §6.7) -> canvas pixels.
import { decodeLz } from "./lz.js";
import { decodeLz4Image, toCanvasPixels } from "./lz4.js";

export const IMAGE = { BITMAP: 0, QUIC: 1, LZ_RGB: 101, FROM_CACHE: 103, SURFACE: 104, JPEG: 105,
  FROM_CACHE_LOSSLESS: 106, JPEG_ALPHA: 108, LZ4: 109 };
export const IMAGE_FLAG_CACHE_ME = 1;
export const MAX_PIXELS = 64 * 1024 * 1024;

export const IMAGE_NAMES = Object.fromEntries(Object.entries(IMAGE).map(([k, v]) => [v, k]));

// A `width` x `height` 2D context to read decoded pictures back from.
export function readbackContext(width, height) {
  return new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
}

// `source` (an ImageBitmap, a VideoFrame) drawn into `ctx` and read back as canvas pixels.
export function drawnPixels(ctx, source, width, height) {
  ctx.drawImage(source, 0, 0, width, height);
  const data = ctx.getImageData(0, 0, width, height).data;
  return { width, height, pixels: new Uint32Array(data.buffer, data.byteOffset, width * height) };
}

// JPEG through the browser's decoder (async); result as canvas pixels.
export async function decodeJpeg(bytes, width, height) {
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/jpeg" }), {
    colorSpaceConversion: "none", premultiplyAlpha: "none" });
  try {
    return drawnPixels(readbackContext(width, height), bitmap, width, height);
  } finally {
    bitmap.close();
  }
}

// Parse the image at reader position; `lookup` = {cache: Map, surfaces: Map}.  Returns
// {desc, image} or a Promise of it (JPEG).  image = {width, height, pixels}.
export function decodeImage(r, lookup) {
  const id = r.u64key();
  const type = r.u8(), flags = r.u8(), width = r.u32(), height = r.u32();
  const desc = { id, type, flags, width, height };
  if (width * height > MAX_PIXELS) throw new Error("image too large");
  switch (type) {
    case IMAGE.BITMAP: {
      const fmt = r.u8(), bflags = r.u8(), w = r.u32(), h = r.u32(), stride = r.u32();
      if (bflags & 2) r.u64key(); else r.u32(); // palette id / pointer (palettes unsupported)
      if (w !== width || h !== height) throw new Error("bitmap size mismatch");
      const data = r.bytes(stride * h);
      return { desc, image: { width, height, pixels: toCanvasPixels(data, w, h, fmt, stride, bflags & 4) } };
    }
    case IMAGE.LZ_RGB: {
      const size = r.u32();
      const img = decodeLz(r.bytes(size));
      if (img.width !== width || img.height !== height) throw new Error("LZ size mismatch");
      return { desc, image: img };
    }
    case IMAGE.LZ4: {
      const size = r.u32();
      return { desc, image: decodeLz4Image(r.bytes(size), width, height) };
    }
    case IMAGE.JPEG: {
      const size = r.u32();
      const bytes = r.bytes(size).slice();
      return decodeJpeg(bytes, width, height).then((image) => ({ desc, image }));
    }
    case IMAGE.FROM_CACHE:
    case IMAGE.FROM_CACHE_LOSSLESS: {
      const image = lookup.cache.get(id);
      if (!image) throw new Error(`image ${id} not in cache`);
      return { desc, image };
    }
    case IMAGE.SURFACE: {
      const sid = r.u32();
      const s = lookup.surfaces.get(sid);
      if (!s) throw new Error(`surface ${sid} unknown`);
      return { desc, image: { width: s.width, height: s.height, pixels: s.pixels.slice() } };
    }
    default:
      throw new Error(`image type ${IMAGE_NAMES[type] || type} not supported`);
  }
}
