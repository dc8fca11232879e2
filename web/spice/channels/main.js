// Main channel (type 1): session id, channel list, mouse mode; latency probe via MOUSE_MODE_REQUEST.
import { Channel, CHANNEL } from "../channel.js";
import { Writer } from "../wire.js";

const M = { INIT: 103, CHANNELS_LIST: 104, MOUSE_MODE: 105, MULTI_MEDIA_TIME: 106, AGENT_CONNECTED: 107, AGENT_DATA: 109, NAME: 113,
  AGENT_CONNECTED_TOKENS: 115 };
const MSGC = { ATTACH_CHANNELS: 104, MOUSE_MODE_REQUEST: 105, AGENT_START: 106, AGENT_TOKEN: 108 };
export const MOUSE_SERVER = 1, MOUSE_CLIENT = 2;
const MAIN_CAPS = (1 << 1) | (1 << 2); // NAME_AND_UUID, AGENT_CONNECTED_TOKENS

export class MainChannel extends Channel {
  constructor(client) {
    super(client, CHANNEL.MAIN, 0, MAIN_CAPS);
    this.sessionId = 0;
    this.mouseMode = MOUSE_SERVER;
    this.supportedModes = MOUSE_SERVER;
    this.probeSent = 0;
  }

  handle(type, r) {
    switch (type) {
      case M.INIT: {
        this.sessionId = r.u32();
        r.u32();
        this.supportedModes = r.u32();
        this.mouseMode = r.u32();
        const agent = r.u32();
        r.u32(); // agent tokens
        this.client.setMmTime(r.u32());
        if (agent) this.send(MSGC.AGENT_START, new Writer(4).u32(0xffffffff).done());
        if ((this.supportedModes & MOUSE_CLIENT) && this.mouseMode !== MOUSE_CLIENT) this.requestMode(MOUSE_CLIENT);
        this.client.sessionStarted(this.sessionId);
        this.send(MSGC.ATTACH_CHANNELS, new Uint8Array(0));
        return;
      }
      case M.CHANNELS_LIST: {
        const n = r.u32();
        const list = [];
        for (let i = 0; i < n; i++) list.push([r.u8(), r.u8()]);
        this.client.channelsListed(list);
        return;
      }
      case M.MOUSE_MODE: {
        this.supportedModes = r.u16();
        this.mouseMode = r.u16();
        if (this.probeSent) {
          this.client.latency(performance.now() - this.probeSent);
          this.probeSent = 0;
        }
        return;
      }
      case M.MULTI_MEDIA_TIME:
        this.client.setMmTime(r.u32());
        return;
      case M.NAME: {
        const len = r.u32();
        const name = new TextDecoder().decode(r.bytes(Math.min(len, r.remaining))).replace(/\0.*$/, "");
        this.client.named(name);
        return;
      }
      case M.AGENT_DATA:
        // No agent features yet: return the credit so the server can keep sending.
        this.send(MSGC.AGENT_TOKEN, new Writer(4).u32(1).done());
        return;
      default:
        return;
    }
  }

  requestMode(mode) {
    this.send(MSGC.MOUSE_MODE_REQUEST, new Writer(2).u16(mode).done());
  }

  // Round trip of a request every server answers at once (MOUSE_MODE_REQUEST -> MOUSE_MODE).
  probeLatency() {
    if (this.state !== "open" || this.probeSent) return;
    this.probeSent = performance.now();
    this.requestMode(this.mouseMode);
  }
}
