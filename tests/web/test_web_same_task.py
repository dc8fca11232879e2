"""The web client draws a message in the task that delivered it: when the WebSocket's message handler
returns, the canvas already shows the batch (no promise or animation-frame hop before the first
draw: key-to-pixel latency).  A JPEG decode (asynchronous) holds the later messages of its batch back,
so the canvas still ends up in message order."""

from __future__ import annotations

import base64
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import browser_marks, chromium, new_page  # noqa: E402

from spice.display import images  # noqa: E402
from spice.proto import display as pd  # noqa: E402

pytestmark = browser_marks()

W, H = 64, 48

# A DisplayChannel linked to a stand-in WebSocket (no link exchange): deliver() hands a batch to the
# socket's onmessage as one WebSocket message.
CHANNEL_JS = """
  const { DisplayChannel } = await import('/spice/channels/display.js');
  class FakeSocket { constructor() { this.readyState = 1; FakeSocket.last = this; } send() {} close() {} }
  FakeSocket.OPEN = 1;
  window.WebSocket = FakeSocket;
  const canvas = document.createElement('canvas');
  document.body.appendChild(canvas);
  let ctx = null;
  const client = { primaryCreated(w, h) { canvas.width = w; canvas.height = h; ctx = canvas.getContext('2d', { willReadFrequently: true }); },
    context() { return ctx; }, presented() {}, marked() {}, countBytes() {} };
  const d = new DisplayChannel(client, 0);
  d.connect('ws://unused/', 0, '');
  const ws = FakeSocket.last;
  d.state = 'open';
  const deliver = (b64) => { const bin = atob(b64); const u8 = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
    ws.onmessage({ data: u8.buffer }); };
"""  # (the body of an async function: `d`, `ws`, `canvas`, `ctx`, `deliver(base64 batch)`)

# Batches a display frame apart; the canvas is read back right after the handler returns, and again
# once every pending decode settled.
RUN_JS = """async (batches) => {""" + CHANNEL_JS + """
  const read = () => { const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let s = ''; for (let i = 0; i < px.length; i += 0x8000) s += String.fromCharCode.apply(null, px.subarray(i, i + 0x8000));
    return btoa(s); };
  const out = [];
  for (const b64 of batches) {
    // batches a display frame apart (a second one within the same frame is presented with the next)
    for (let i = 0; i < 2; i++) await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    deliver(b64);
    const now = read();
    for (let i = 0; i < 50 && d.processing; i++) await new Promise((r) => setTimeout(r, 20));
    out.push([now, read()]);
  }
  return out;
}"""


async def evaluate_in_blank_page(frontdoor, js: str, arg):
    """``js`` evaluated with ``arg`` in an empty page of our server's origin (the client's modules load);
    the page must log no error."""
    async with chromium() as browser:
        page = await new_page(browser)
        base = f"http://127.0.0.1:{frontdoor.port}"
        await page.route(f"{base}/blank.html", lambda r: r.fulfill(body="<!doctype html>", content_type="text/html"))
        await page.goto(f"{base}/blank.html")
        out = await page.evaluate(js, arg)
    assert not [line for line in page.console_lines if line.startswith(("error", "pageerror"))], page.console_lines
    return out


def message(msg_type: int, body: bytes) -> bytes:
    return struct.pack("<HI", msg_type, len(body)) + body


def rgb(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(H, W, 4)[..., :3]


async def test_a_batch_is_on_the_canvas_when_its_message_handler_returns(frontdoor):
    photo = np.zeros((16, 16, 4), np.uint8)
    photo[..., :3] = (200, 40, 40)  # BGR: blue-ish red... a flat colour survives JPEG within a few levels
    batches = [
        message(pd.DisplayMsg.SURFACE_CREATE, pd.build_surface_create(W, H))
        + message(pd.DisplayMsg.DRAW_FILL, pd.build_draw_fill(0, 0, W, H, 0x00336699)),
        # a key's echo: one COPY_BITS of the top-left 8x8 to (20, 10), as the built-in terminal sends
        message(pd.DisplayMsg.DRAW_FILL, pd.build_draw_fill(0, 0, 8, 8, 0x00FFFF00))
        + message(pd.DisplayMsg.COPY_BITS, pd.build_copy_bits(0, 0, 20, 10, 28, 18)),
        # a JPEG then a fill over part of it: the fill must land after (on top of) the decoded photo
        message(pd.DisplayMsg.DRAW_COPY, pd.build_draw_copy(40, 20, 56, 36, images.encode_jpeg(photo)))
        + message(pd.DisplayMsg.DRAW_FILL, pd.build_draw_fill(48, 28, 56, 36, 0x0000FF00)),
    ]
    out = await evaluate_in_blank_page(frontdoor, RUN_JS, [base64.b64encode(b).decode() for b in batches])

    first, _ = out[0]
    assert (rgb(first) == (0x33, 0x66, 0x99)).all()
    echo, _ = out[1]  # drawn before the handler returned
    px = rgb(echo)
    assert (px[10:18, 20:28] == (0xFF, 0xFF, 0x00)).all() and (px[0:8, 0:8] == (0xFF, 0xFF, 0x00)).all()
    assert (px[20:, :] == (0x33, 0x66, 0x99)).all()
    now, settled = out[2]
    assert (rgb(now)[20:36, 40:56] == (0x33, 0x66, 0x99)).all()  # the decode has not finished yet: nothing drawn
    px = rgb(settled)
    assert (px[28:36, 48:56] == (0x00, 0xFF, 0x00)).all()  # the fill, on top of the photo
    photo_part = px[20:28, 40:56].astype(int)
    assert (abs(photo_part - (40, 40, 200)) <= 8).all()


PRESENTS_JS = """async (n) => {
  const { DisplayChannel } = await import('/spice/channels/display.js');
  const canvas = document.createElement('canvas');
  let ctx = null;
  const client = { primaryCreated(w, h) { canvas.width = w; canvas.height = h; ctx = canvas.getContext('2d'); },
    context() { return ctx; }, presented() {}, marked() {}, countBytes() {} };
  const d = new DisplayChannel(client, 0);
  d.createSurface(0, 16, 16, true);
  for (let i = 0; i < n; i++) { d.markDirty(d.primary, { x: 0, y: 0, w: 1, h: 1 }); d.present(); }
  return [d.stats.presents, performance.getEntriesByName('spice-present').length];
}"""


async def test_present_timings_for_devtools_do_not_pile_up(frontdoor):
    """Each present leaves a performance.measure entry (DevTools traces); the page's timeline keeps user
    timing entries until cleared, so a long session must not accumulate one per present."""
    presents, entries = await evaluate_in_blank_page(frontdoor, PRESENTS_JS, 5000)
    assert presents == 5000 and 0 < entries <= 1024


FRAME_JS = """async (batches) => {""" + CHANNEL_JS + """
  const pixel = (x, y) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
  const out = [];
  for (const b64 of batches) {  // all in one task: one display frame
    deliver(b64);
    out.push([pixel(5, 5), pixel(100, 100)]);
  }
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  out.push([pixel(5, 5), pixel(100, 100)]);
  return out;
}"""


async def test_a_small_batch_is_presented_at_once_within_a_busy_display_frame(frontdoor):
    """After a present, big batches in the same display frame wait for the next animation frame
    (coalesced); a small one (a key's echo right after the clock ticked) is presented at once."""
    w, h = 256, 192
    batches = [
        message(pd.DisplayMsg.SURFACE_CREATE, pd.build_surface_create(w, h))
        + message(pd.DisplayMsg.DRAW_FILL, pd.build_draw_fill(0, 0, w, h, 0x00336699)),
        message(pd.DisplayMsg.DRAW_FILL, pd.build_draw_fill(0, 0, 9, 18, 0x00FFFF00)),  # small: at once
        message(pd.DisplayMsg.DRAW_FILL, pd.build_draw_fill(0, 0, w, h, 0x00102030)),  # big: next frame
    ]
    out = await evaluate_in_blank_page(frontdoor, FRAME_JS, [base64.b64encode(b).decode() for b in batches])
    assert out[0] == [[0x33, 0x66, 0x99], [0x33, 0x66, 0x99]]
    assert out[1] == [[0xFF, 0xFF, 0x00], [0x33, 0x66, 0x99]]  # the echo, in the same display frame
    assert out[2] == out[1]  # the big fill waits for the next animation frame
    assert out[3] == [[0x10, 0x20, 0x30], [0x10, 0x20, 0x30]]
