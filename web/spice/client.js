// A SPICE session in the browser: main channel first, then display, inputs and cursor; reconnects with
// backoff after a drop.  The UI (ui.js) supplies the canvas and callbacks.
import { CHANNEL, LinkError } from "./channel.js";
import { PERMISSION_DENIED } from "./link.js";
import { MainChannel, MOUSE_CLIENT } from "./channels/main.js";
import { DisplayChannel } from "./channels/display.js";
import { InputsChannel } from "./channels/inputs.js";
import { CursorChannel } from "./channels/cursor.js";
import { videoCodecs } from "./decoders/video.js";

const BACKOFF_MIN_MS = 500, BACKOFF_MAX_MS = 15000;

export class SpiceClient {
  // `videoPreference`: stream codec types to ask the server for, preferred first ([]: the server's order).
  constructor({ url, canvas, ui, videoPreference = [] }) {
    this.url = url;
    this.videoPreference = videoPreference;
    this.videoCodecs = new Set(); // the VP8 / H.264 this browser decodes (WebCodecs), found at connect
    this.mmOffset = null; // server multimedia time - performance.now(), from the main channel
    this.canvas = canvas;
    this.ui = ui;
    this.password = "";
    this.channels = [];
    this.main = null;
    this.display = null;
    this.inputs = null;
    this.cursor = null;
    this.ctx = null;
    this.bytes = 0;
    this.state = "idle";
    this.backoff = BACKOFF_MIN_MS;
    this.reconnectTimer = null;
    this.generation = 0;
    this.reconnects = 0;
    this.lastLatency = null;
  }

  setState(state, detail = "") {
    this.state = state;
    this.ui.status(state, detail);
  }

  async connect(password = this.password) {
    this.password = password;
    clearTimeout(this.reconnectTimer);
    this.teardown();
    const gen = ++this.generation;
    this.setState("connecting");
    this.videoCodecs = await videoCodecs();
    if (gen !== this.generation) return;
    const main = new MainChannel(this);
    this.main = main;
    this.channels = [main];
    try {
      await main.connect(this.url, 0, password);
    } catch (err) {
      if (gen !== this.generation) return;
      if (err instanceof LinkError && err.code === PERMISSION_DENIED) {
        this.teardown();
        this.setState("password", "wrong password");
        this.ui.askPassword(true);
        return;
      }
      this.dropped(`${err.message}`);
    }
  }

  sessionStarted(id) {
    this.sessionId = id;
  }

  channelsListed(list) {
    const gen = this.generation;
    const links = [];
    for (const [type, id] of list) {
      let ch = null;
      if (type === CHANNEL.DISPLAY && id === 0 && !this.display) {
        ch = this.display = new DisplayChannel(this, 0, { videoCodecs: this.videoCodecs, preference: this.videoPreference });
      }
      else if (type === CHANNEL.INPUTS && !this.inputs) ch = this.inputs = new InputsChannel(this);
      else if (type === CHANNEL.CURSOR && id === 0 && !this.cursor) ch = this.cursor = new CursorChannel(this);
      if (!ch) continue;
      this.channels.push(ch);
      links.push(ch.connect(this.url, this.sessionId, this.password).catch((err) => {
        if (gen === this.generation) this.dropped(`${ch.constructor.name}: ${err.message}`);
        throw err;
      }));
    }
    // "connected" once every channel we use is linked (input sent earlier would be lost).
    Promise.all(links).then(() => {
      if (gen !== this.generation) return;
      this.backoff = BACKOFF_MIN_MS;
      this.setState("connected");
    }, () => {});
  }

  channelClosed(ch) {
    if (ch === this.main || ch === this.display || ch === this.inputs) this.dropped("connection lost");
  }

  dropped(reason) {
    if (this.state === "reconnecting") return;
    this.teardown();
    this.reconnects++;
    const delay = this.backoff;
    this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
    this.setState("reconnecting", `${reason}; retry in ${(delay / 1000).toFixed(1)} s`);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  teardown() {
    if (this.inputs) this.inputs.releaseAll();
    for (const ch of this.channels) ch.close();
    this.channels = [];
    this.main = this.display = this.inputs = this.cursor = null;
  }

  disconnect() {
    clearTimeout(this.reconnectTimer);
    this.generation++;
    this.teardown();
    this.setState("disconnected");
  }

  // -- callbacks from channels ---------------------------------------------------------------------
  countBytes(n) { this.bytes += n; }
  setMmTime(mm) { this.mmOffset = mm - performance.now(); }
  mmTime() { return this.mmOffset === null ? null : performance.now() + this.mmOffset; }
  latency(ms) { this.lastLatency = ms; }
  named(name) { this.ui.named(name); }
  marked() {}
  presented() { this.ui.presented(); }

  primaryCreated(width, height) {
    this.canvas.width = width;
    this.canvas.height = height;
    this.ctx = this.canvas.getContext("2d", { alpha: false, willReadFrequently: false, desynchronized: true });
    this.ui.resized(width, height);
  }

  context() { return this.ctx; }
  setCursor(shape) { this.ui.cursor(shape); }

  // -- input from the UI -------------------------------------------------------------------------------
  get clientMouse() { return this.main && this.main.mouseMode === MOUSE_CLIENT; }
  key(scancode, down) { if (this.inputs && this.inputs.state === "open") this.inputs.key(scancode, down); }
  releaseAll() { if (this.inputs) { this.inputs.releaseAll(); this.inputs.releaseButtons(); } }
  pointer(x, y, dx, dy) {
    if (!this.inputs || this.inputs.state !== "open") return;
    if (this.clientMouse) this.inputs.position(x, y); else this.inputs.motion(dx, dy);
  }
  button(b, down) { if (this.inputs && this.inputs.state === "open") this.inputs.button(b, down); }

  stats() {
    const d = this.display ? this.display.stats : null;
    return { state: this.state, bytes: this.bytes, latency: this.lastLatency, reconnects: this.reconnects,
      display: d, channels: this.channels.map((c) => ({ type: c.type, state: c.state, bytesIn: c.bytesIn })) };
  }
}
