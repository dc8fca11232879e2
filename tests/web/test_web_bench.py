"""Benchmark: bytes per guest frame on the wire and browser decode+draw time per frame, for our web client
and for spice-html5, on the built-in guest's workloads.  Prints figures; asserts only that both clients
ended on the guest's exact picture (so the figures describe a working session)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import HTML5_DIR, browser_marks, chromium, new_page, start_html5_site  # noqa: E402
from test_web_browser import canvas_matches_guest, wait_for  # noqa: E402
from test_web_spicehtml5 import html5_rgb  # noqa: E402

from spice.guests.builtin import BuiltinGuest  # noqa: E402
from spice.server import metrics  # noqa: E402
from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = [
    *browser_marks(300),
    pytest.mark.bench,
]

W, H = 800, 600
WINDOW_S = 4.0
WORKLOADS = ["typing", "window-drag", "many-small-fills"]

# Time spent inside every WebSocket 'message' handler of the page (decode + draw for spice-html5,
# decode + draw into the surface for our client, whose canvas update is timed separately in rAF).
TIMING_JS = """(() => {
  const stats = { ms: 0, events: 0 };
  window.__wsTiming = stats;
  const wrap = (fn) => function (ev) {
    const t0 = performance.now();
    try { return fn.call(this, ev); } finally { stats.ms += performance.now() - t0; stats.events++; }
  };
  const add = WebSocket.prototype.addEventListener;
  WebSocket.prototype.addEventListener = function (type, fn, opts) {
    return add.call(this, type, type === 'message' && typeof fn === 'function' ? wrap(fn) : fn, opts);
  };
  const d = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
  Object.defineProperty(WebSocket.prototype, 'onmessage', {
    configurable: true, get() { return d.get.call(this); }, set(fn) { d.set.call(this, fn ? wrap(fn) : fn); } });
})();"""

SNAP_JS = """() => {
  const t = window.__wsTiming;
  const d = window.aiospice && window.aiospice.display ? window.aiospice.display.stats : null;
  return { handlerMs: t.ms, events: t.events, presentMs: d ? d.presentMs : 0 };
}"""


def snapshot(srv) -> dict:
    pstats = srv.display_pipeline.stats
    return {
        "bytes": metrics._ws_sum("bytes_out"),
        "ws_frames": metrics._ws_sum("frames_out"),
        "guest_frames": pstats.frames,
        "msgs": srv.stats.channel("display").messages_out,
    }


async def measure(page, srv) -> dict:
    s0, p0 = snapshot(srv), await page.evaluate(SNAP_JS)
    await asyncio.sleep(WINDOW_S)
    s1, p1 = snapshot(srv), await page.evaluate(SNAP_JS)
    frames = max(1, s1["guest_frames"] - s0["guest_frames"])
    return {
        "frames": frames,
        "bytes/frame": (s1["bytes"] - s0["bytes"]) / frames,
        "msgs/frame": (s1["msgs"] - s0["msgs"]) / frames,
        "ws frames/s": (s1["ws_frames"] - s0["ws_frames"]) / WINDOW_S,
        "decode+draw ms/frame": (p1["handlerMs"] - p0["handlerMs"] + p1["presentMs"] - p0["presentMs"])
        / frames,
    }


@pytest.fixture
def html5_site():
    httpd, site = start_html5_site()
    yield site
    httpd.shutdown()
    httpd.server_close()


async def run_one(browser, workload: str, client: str, site: str | None) -> dict:
    guest = BuiltinGuest(W, H, workload=workload)
    extra = {"allow_origin": [site]} if site else {}
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, extra=extra))
    await srv.start()
    port = srv.ports["plain"]
    try:
        page = await new_page(browser)
        await page.add_init_script(TIMING_JS)
        if client == "web":
            await page.goto(f"http://127.0.0.1:{port}/")
            await wait_for(lambda: page.evaluate("window.aiospice.state === 'connected'"), what="connected")
        else:
            await page.goto(f"{site}/spice_auto.html?host=127.0.0.1&port={port}&path=spice")
            await wait_for(
                lambda: page.evaluate("!!document.getElementById('spice_surface_0')"), what="html5 up"
            )
        await asyncio.sleep(1.0)
        result = await measure(page, srv)
        # Stop the workload, then the browser must show the guest's exact last frame.
        await guest.stop()
        if client == "web":
            await wait_for(lambda: canvas_matches_guest(page, guest), timeout=30, what="final frame")
        else:
            import numpy as np

            async def same():
                rgb = await html5_rgb(page)
                return rgb is not None and np.array_equal(rgb, guest.framebuffer[..., 2::-1])

            await wait_for(same, timeout=30, what="final frame (html5)")
        await page.context.close()
        return result
    finally:
        await srv.close()


@pytest.mark.skipif(not (HTML5_DIR / "spice_auto.html").exists(), reason="spice-html5 not installed")
async def test_bench_web_client_vs_spice_html5(html5_site):
    rows = []
    async with chromium() as browser:
        for workload in WORKLOADS:
            for client in ("web", "spice-html5"):
                r = await run_one(browser, workload, client, html5_site if client != "web" else None)
                rows.append((workload, client, r))
    print()
    print(
        f"{'workload':18} {'client':12} {'frames':>7} {'bytes/frame':>12} {'msgs/frame':>10} "
        f"{'ws frames/s':>11} {'decode+draw ms/frame':>21}"
    )
    for workload, client, r in rows:
        print(
            f"{workload:18} {client:12} {r['frames']:7d} {r['bytes/frame']:12.0f} {r['msgs/frame']:10.1f} "
            f"{r['ws frames/s']:11.1f} {r['decode+draw ms/frame']:21.2f}"
        )
