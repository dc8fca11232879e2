// SPICE link handshake messages (spice.md §2): link message, reply, ticket.
import { Writer, Reader } from "./wire.js";
import { oaepEncrypt } from "./rsa.js";

export const MAGIC = 0x51444552; // "REDQ"
export const LINK_ERRORS = ["OK", "ERROR", "INVALID_MAGIC", "INVALID_DATA", "VERSION_MISMATCH", "NEED_SECURED",
  "NEED_UNSECURED", "PERMISSION_DENIED", "BAD_CONNECTION_ID", "CHANNEL_NOT_AVAILABLE"];
export const PERMISSION_DENIED = 7;

// Common caps: AUTH_SELECTION | AUTH_SPICE | MINI_HEADER.
export const COMMON_CAPS = (1 << 0) | (1 << 1) | (1 << 3);

export function buildLinkMessage(connectionId, type, id, channelCaps) {
  const nch = channelCaps ? 1 : 0;
  const size = 18 + 4 * (1 + nch);
  const w = new Writer(16 + size);
  w.u32(MAGIC).u32(2).u32(2).u32(size);
  w.u32(connectionId).u8(type).u8(id).u32(1).u32(nch).u32(18);
  w.u32(COMMON_CAPS);
  if (nch) w.u32(channelCaps);
  return w.done();
}

// Parse header(16) + reply; returns {error, pubKey, commonCaps, channelCaps}.
export function parseLinkHeader(u8) {
  const r = new Reader(u8);
  const magic = r.u32(), major = r.u32();
  r.u32();
  const size = r.u32();
  if (magic !== MAGIC || major !== 2) throw new Error("not a SPICE server (bad link reply)");
  if (size < 178 || size > 65536) throw new Error("bad link reply size");
  return size;
}

export function parseLinkReply(u8) {
  const r = new Reader(u8);
  const error = r.u32();
  const pubKey = u8.slice(4, 166);
  r.pos = 166;
  const nc = r.u32(), nch = r.u32(), off = r.u32();
  const caps = r.at(off);
  const words = [];
  for (let i = 0; i < nc + nch && caps.remaining >= 4; i++) words.push(caps.u32());
  return { error, pubKey, commonCaps: words[0] || 0, channelCaps: nch ? words[nc] || 0 : 0 };
}

// Mechanism word (AUTH_SPICE) + 128-byte RSA-OAEP-SHA1 ticket of password + NUL.
export async function buildTicket(pubKey, password) {
  const plain = new TextEncoder().encode((password || "") + "\0");
  let cipher;
  if (globalThis.crypto && crypto.subtle) {
    const key = await crypto.subtle.importKey("spki", pubKey, { name: "RSA-OAEP", hash: "SHA-1" }, false,
      ["encrypt"]);
    cipher = new Uint8Array(await crypto.subtle.encrypt({ name: "RSA-OAEP" }, key, plain));
  } else {
    cipher = oaepEncrypt(pubKey, plain);
  }
  const w = new Writer(132);
  w.u32(1).bytes(cipher);
  return w.done();
}
