// Page glue: status bar, scaling, fullscreen, password prompt, keyboard/mouse/touch -> SpiceClient.
import { SpiceClient } from "./spice/client.js";
import { CODEC } from "./spice/decoders/video.js";
import { scancodeOf, CTRL_ALT_DEL } from "./spice/input/keymap.js";

const $ = (id) => document.getElementById(id);
const canvas = $("display"), screen = $("screen"), overlay = $("cursor-overlay");
const CSS_CURSOR_MAX = 128;
let fit = true;
let cursorShape = null;
let lastPointer = { x: 0, y: 0 };

function formatRate(bps) {
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} MB/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(1)} kB/s`;
  return `${bps} B/s`;
}

const ui = {
  status(state, detail) {
    $("status").dataset.state = state;
    $("status-text").textContent = detail ? `${state}: ${detail}` : state;
  },
  named(name) { document.title = `${name} – aiospice`; },
  presented() {},
  resized() { layout(); },
  askPassword(wrong) {
    $("password-error").hidden = !wrong;
    const dlg = $("password-dialog");
    if (!dlg.open) dlg.showModal();
    $("password").focus();
  },
  cursor(shape) { cursorShape = shape; applyCursor(); },
};

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
// ?video=h264,vp8,mjpeg: the stream codecs to ask the server for, preferred first (default: the server's order)
const videoPreference = (new URLSearchParams(location.search).get("video") || "").split(",")
  .map((name) => CODEC[name.trim().toUpperCase()]).filter(Boolean);
const client = new SpiceClient({ url: `${scheme}//${location.host}/spice`, canvas, ui, videoPreference });
window.aiospice = client;

// -- scaling ---------------------------------------------------------------------------------------------
function scale() {
  if (!fit) return 1;
  const w = canvas.width, h = canvas.height;
  return Math.min(screen.clientWidth / w, screen.clientHeight / h) || 1;
}

function layout() {
  const s = scale();
  canvas.style.width = `${Math.round(canvas.width * s)}px`;
  canvas.style.height = `${Math.round(canvas.height * s)}px`;
  screen.classList.toggle("one-to-one", !fit);
  $("btn-scale").textContent = fit ? "1:1" : "Fit";
  applyCursor();
}
window.addEventListener("resize", layout);
$("btn-scale").addEventListener("click", () => { fit = !fit; layout(); canvas.focus(); });
$("btn-full").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else screen.requestFullscreen().catch(() => {});
  canvas.focus();
});
document.addEventListener("fullscreenchange", layout);

// -- cursor --------------------------------------------------------------------------------------------------
function applyCursor() {
  const shape = cursorShape;
  if (!shape) { canvas.style.cursor = "none"; overlay.hidden = true; return; }
  if (!shape.url) {
    const c = document.createElement("canvas");
    c.width = shape.width;
    c.height = shape.height;
    c.getContext("2d").putImageData(new ImageData(shape.rgba, shape.width, shape.height), 0, 0);
    shape.url = c.toDataURL("image/png");
    shape.canvas = c;
  }
  if (shape.width <= CSS_CURSOR_MAX && shape.height <= CSS_CURSOR_MAX) {
    overlay.hidden = true;
    canvas.style.cursor = `url(${shape.url}) ${shape.hotX} ${shape.hotY}, default`;
    canvas.dataset.cursor = shape.unique;
    return;
  }
  canvas.style.cursor = "none"; // too big for a CSS cursor: draw it as an overlay at the pointer
  const s = scale();
  overlay.width = shape.width;
  overlay.height = shape.height;
  overlay.getContext("2d").drawImage(shape.canvas, 0, 0);
  overlay.style.width = `${shape.width * s}px`;
  overlay.style.height = `${shape.height * s}px`;
  overlay.hidden = false;
  canvas.dataset.cursor = shape.unique;
  moveOverlay();
}

function moveOverlay() {
  if (overlay.hidden || !cursorShape) return;
  const s = scale();
  const rect = canvas.getBoundingClientRect(), host = screen.getBoundingClientRect();
  overlay.style.left = `${rect.left - host.left + (lastPointer.x - cursorShape.hotX) * s}px`;
  overlay.style.top = `${rect.top - host.top + (lastPointer.y - cursorShape.hotY) * s}px`;
}

// -- keyboard ------------------------------------------------------------------------------------------------
function dialogOpen() { return $("password-dialog").open; }

canvas.addEventListener("keydown", (ev) => {
  if (dialogOpen()) return;
  const sc = scancodeOf(ev.code);
  if (sc === undefined) return;
  ev.preventDefault();
  client.key(sc, true);
});
canvas.addEventListener("keyup", (ev) => {
  if (dialogOpen()) return;
  const sc = scancodeOf(ev.code);
  if (sc === undefined) return;
  ev.preventDefault();
  client.key(sc, false);
});
canvas.addEventListener("blur", () => client.releaseAll());
window.addEventListener("blur", () => client.releaseAll());
document.addEventListener("visibilitychange", () => { if (document.hidden) client.releaseAll(); });

$("btn-cad").addEventListener("click", () => {
  for (const sc of CTRL_ALT_DEL) client.key(sc, true);
  for (const sc of [...CTRL_ALT_DEL].reverse()) client.key(sc, false);
  canvas.focus();
});

// -- mouse, touch (pointer events) -------------------------------------------------------------------------------
function surfacePos(ev) {
  const rect = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - rect.left) * canvas.width) / rect.width);
  const y = Math.floor(((ev.clientY - rect.top) * canvas.height) / rect.height);
  return { x: Math.min(Math.max(x, 0), canvas.width - 1), y: Math.min(Math.max(y, 0), canvas.height - 1) };
}

function movePointer(ev) {
  const p = surfacePos(ev);
  const dx = p.x - lastPointer.x, dy = p.y - lastPointer.y;
  lastPointer = p;
  client.pointer(p.x, p.y, dx, dy);
  moveOverlay();
}

canvas.addEventListener("pointermove", (ev) => {
  const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
  movePointer(events.length ? events[events.length - 1] : ev);
});
canvas.addEventListener("pointerdown", (ev) => {
  canvas.focus();
  canvas.setPointerCapture(ev.pointerId);
  movePointer(ev);
  client.button(ev.button + 1, true); // DOM 0/1/2 = left/middle/right -> SPICE 1/2/3
  ev.preventDefault();
});
canvas.addEventListener("pointerup", (ev) => {
  movePointer(ev);
  client.button(ev.button + 1, false);
  ev.preventDefault();
});
canvas.addEventListener("pointercancel", () => client.releaseAll());
canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
canvas.addEventListener("wheel", (ev) => {
  ev.preventDefault();
  if (!ev.deltaY) return;
  const b = ev.deltaY < 0 ? 4 : 5;
  client.button(b, true);
  client.button(b, false);
}, { passive: false });

// -- password, status ----------------------------------------------------------------------------------------------
$("password-form").addEventListener("submit", () => {
  const pw = $("password").value;
  $("password").value = "";
  client.connect(pw).then(() => canvas.focus());
});

// -- status figures --------------------------------------------------------------------------------------------
// The round trip is probed once a second, but the figures are shown only after QUIET_MS without input:
// new text in the bar makes the browser lay out, paint and composite a frame, milliseconds of CPU across
// its processes on a small machine, and a key's echo that arrives meanwhile waits for it (one update a
// second raised this client's p99 key-to-pixel latency from 2.4 to 3.7 ms).
const QUIET_MS = 1000;
let lastInput = -Infinity, shownBytes = 0, shownAt = performance.now();
for (const type of ["keydown", "keyup", "pointerdown", "pointerup", "pointermove", "wheel", "touchstart"]) {
  window.addEventListener(type, () => { lastInput = performance.now(); }, { capture: true, passive: true });
}
setInterval(() => {
  if (client.main) client.main.probeLatency();
  const now = performance.now();
  if (now - lastInput < QUIET_MS || document.hidden) return;
  $("rate").textContent = formatRate(Math.round((client.bytes - shownBytes) * 1000 / (now - shownAt)));
  shownBytes = client.bytes;
  shownAt = now;
  if (client.lastLatency != null) $("latency").textContent = `${client.lastLatency.toFixed(1)} ms`;
}, 1000);

async function start() {
  let needPassword = false;
  try {
    const info = await (await fetch("api/info", { cache: "no-store" })).json();
    needPassword = !!info.password;
    if (info.name) document.title = `${info.name} – aiospice`;
  } catch (e) { /* not our server: try without a password; a refusal opens the prompt */ }
  layout();
  if (needPassword) { ui.status("password", "password required"); ui.askPassword(false); }
  else client.connect("").then(() => canvas.focus());
}
start();
