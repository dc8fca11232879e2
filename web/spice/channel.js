// One SPICE channel over one WebSocket: link, mini-header framing, ACK window, PING/PONG (spice.md §2-4).
import { ByteQueue, Reader, Writer } from "./wire.js";
import { buildLinkMessage, buildTicket, parseLinkHeader, parseLinkReply, LINK_ERRORS } from "./link.js";

export const CHANNEL = { MAIN: 1, DISPLAY: 2, INPUTS: 3, CURSOR: 4 };
const MSG_SET_ACK = 3, MSG_PING = 4, MSG_DISCONNECTING = 6, MSG_NOTIFY = 7;
const MSGC_ACK_SYNC = 1, MSGC_ACK = 2, MSGC_PONG = 3;

export class LinkError extends Error {
  constructor(code) {
    super(`link refused: ${LINK_ERRORS[code] || code}`);
    this.code = code;
  }
}

export class Channel {
  constructor(client, type, id = 0, caps = 0) {
    this.client = client;
    this.type = type;
    this.id = id;
    this.caps = caps;
    this.queue = new ByteQueue();
    this.messages = [];
    this.processing = false;
    this.state = "closed";
    this.ackWindow = 0;
    this.ackLeft = 0;
    this.bytesIn = 0;
    this.bytesOut = 0;
    this.ws = null;
    this.serverCaps = { common: 0, channel: 0 };
  }

  // Open the socket and run the link; resolves when the server said OK.
  connect(url, connectionId, password) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, "binary");
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      this.state = "header";
      this._linked = { resolve, reject };
      this._password = password;
      ws.onopen = () => ws.send(buildLinkMessage(connectionId, this.type, this.id, this.caps));
      ws.onmessage = (ev) => {
        this.bytesIn += ev.data.byteLength;
        this.client.countBytes(ev.data.byteLength);
        this.queue.push(ev.data);
        this._pumpOrDrop();
      };
      ws.onerror = () => this._fail(new Error("websocket error"));
      ws.onclose = (ev) => {
        const wasOpen = this.state === "open";
        this._fail(new Error(`websocket closed (${ev.code})`));
        this.state = "closed";
        if (wasOpen) this.onClose(ev);
      };
    });
  }

  _fail(err) {
    if (this._linked) {
      const { reject } = this._linked;
      this._linked = null;
      reject(err);
    }
  }

  // Parse what arrived and handle it in this task (no promise hop between a message and its drawing).
  _pumpOrDrop() {
    try {
      this._pump();
    } catch (err) {
      console.error(`channel ${this.type}: ${err.message}`);
      this._fail(err);
      if (this.ws) this.ws.close(); // protocol error: drop the socket (the client reconnects)
    }
  }

  _pump() {
    const q = this.queue;
    for (;;) {
      if (this.state === "header") {
        if (q.length < 16) return;
        this._replySize = parseLinkHeader(q.take(16));
        this.state = "reply";
      } else if (this.state === "reply") {
        if (q.length < this._replySize) return;
        const reply = parseLinkReply(q.take(this._replySize));
        if (reply.error) throw new LinkError(reply.error);
        this.serverCaps = { common: reply.commonCaps, channel: reply.channelCaps };
        this.state = "ticket";
        const ws = this.ws;
        buildTicket(reply.pubKey, this._password).then((ticket) => {
          if (this.ws !== ws || this.state !== "ticket") return;
          ws.send(ticket);
          this.state = "result";
          this._pumpOrDrop(); // the result may have arrived meanwhile
        }, (err) => { this._fail(err); ws.close(); });
        return;
      } else if (this.state === "ticket") {
        return; // waiting for the encryption above
      } else if (this.state === "result") {
        if (q.length < 4) return;
        const code = new Reader(q.take(4)).u32();
        if (code !== 0) {
          this.state = "failed";
          const err = new LinkError(code);
          this._fail(err);
          this.ws.close();
          return;
        }
        this.state = "open";
        const linked = this._linked;
        this._linked = null;
        this.onOpen();
        if (linked) linked.resolve(this);
      } else if (this.state === "open") {
        // every whole message first, then handle them as one batch (one present for all of them)
        while (q.length >= 6) {
          const h = q.peekBytes(6);
          const type = h[0] | (h[1] << 8), size = (h[2] | (h[3] << 8) | (h[4] << 16) | (h[5] << 24)) >>> 0;
          if (size > 64 * 1024 * 1024) throw new Error(`message too large (${size})`);
          if (q.length < 6 + size) break;
          q.take(6);
          this.messages.push([type, size ? q.take(size) : new Uint8Array(0)]);
        }
        this._process();
        return;
      } else {
        return;
      }
    }
  }

  // Handle queued messages in order, synchronously; a handler that returns a promise (a JPEG decode)
  // holds the rest back until it settles.  The batch ends (onBatchEnd: present) when the queue is empty.
  _process() {
    if (this.processing) return;
    this.processing = true;
    while (this.messages.length && this.state === "open") {
      const [type, body] = this.messages.shift();
      let r;
      try {
        r = this._dispatch(type, body);
      } catch (err) {
        console.error(`channel ${this.type}: message ${type}:`, err);
      }
      if (r && typeof r.then === "function") {
        r.catch((err) => console.error(`channel ${this.type}: message ${type}:`, err)).then(() => {
          this._acknowledge(type);
          this.processing = false;
          this._process();
        });
        return;
      }
      this._acknowledge(type);
    }
    this.processing = false;
    if (this.state !== "open") return;
    try {
      this.onBatchEnd();
    } catch (err) {
      console.error(`channel ${this.type}: end of batch:`, err);
    }
  }

  _acknowledge(type) {
    if (type !== MSG_SET_ACK && this.ackWindow && --this.ackLeft <= 0) {
      this.ackLeft = this.ackWindow;
      this.send(MSGC_ACK, new Uint8Array(0));
    }
  }

  _dispatch(type, body) {
    const r = new Reader(body);
    switch (type) {
      case MSG_SET_ACK: {
        const gen = r.u32();
        this.ackWindow = r.u32();
        this.ackLeft = this.ackWindow;
        this.send(MSGC_ACK_SYNC, new Writer(4).u32(gen).done());
        return undefined;
      }
      case MSG_PING:
        this.send(MSGC_PONG, body.slice(0, 12));
        return undefined;
      case MSG_NOTIFY: {
        r.pos = 20;
        const len = r.u32();
        const text = new TextDecoder().decode(r.bytes(Math.min(len, r.remaining)));
        console.info(`SPICE notify: ${text}`);
        return undefined;
      }
      case MSG_DISCONNECTING:
        return undefined;
      default:
        return this.handle(type, r, body);
    }
  }

  send(type, body) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    const msg = new Uint8Array(6 + body.length);
    const dv = new DataView(msg.buffer);
    dv.setUint16(0, type, true);
    dv.setUint32(2, body.length, true);
    msg.set(body, 6);
    this.bytesOut += msg.length;
    this.ws.send(msg);
  }

  close() {
    this.state = "closed";
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.onmessage = null;
      try { this.ws.close(); } catch (e) { /* already closed */ }
    }
    this._fail(new Error("closed"));
  }

  // Subclass hooks.
  onOpen() {}
  // Called when every received message has been handled (the end of a WebSocket message batch).
  onBatchEnd() {}
  onClose(_ev) { this.client.channelClosed(this); }
  handle(type, _reader, _body) { console.debug(`channel ${this.type}: unhandled message ${type}`); }
}
