"""Input-to-pixel latency in Chromium: our web client against aiospice, spice-html5 against Xspice.

Headless Chromium (Playwright, Debian's ``/usr/bin/chromium``) loads the client; an init script
timestamps every ``keydown`` (capture phase, before the client sees it) and the first canvas draw
after it (``putImageData`` / ``drawImage`` / ``fillRect`` on any 2D context, the clock's strip at the
top excluded).  Both pages are cross-origin isolated (COOP + COEP), so ``performance.now()`` has
5 us resolution in both rather than 100 us.  Playwright presses ``a`` every ``interval`` seconds;
the latency is draw - keydown in the page's own clock, so the browser's event handling, the server
and the client's decode and draw are all inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
HTML5_DIR = "/usr/share/spice-html5"
TOP_STRIP = 30  # draws that start above this line are the clock, not the echo

HOOK_JS = """(() => {
  const top = __TOP__;
  window.__lat = []; window.__t0 = null;
  window.addEventListener('keydown', () => { window.__t0 = performance.now(); }, true);
  const hit = (y) => {
    if (window.__t0 !== null && y >= top) { window.__lat.push(performance.now() - window.__t0); window.__t0 = null; }
  };
  const P = CanvasRenderingContext2D.prototype;
  const put = P.putImageData, draw = P.drawImage, fill = P.fillRect;
  P.putImageData = function (...a) { const r = put.apply(this, a);
    if (this.canvas && this.canvas.isConnected) hit(a.length >= 7 ? a[2] + a[4] : a[2]); return r; };
  P.drawImage = function (...a) { const r = draw.apply(this, a);
    if (this.canvas && this.canvas.isConnected) hit(a.length >= 9 ? a[6] : a[2]); return r; };
  P.fillRect = function (...a) { const r = fill.apply(this, a);
    if (this.canvas && this.canvas.isConnected) hit(a[1]); return r; };
})();""".replace("__TOP__", str(TOP_STRIP))


def available() -> bool:
    if not os.path.exists(CHROMIUM):
        return False
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return False
    return True


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def end_headers(self) -> None:
        # cross-origin isolated like our own pages (http.SECURITY_HEADERS): both clients' performance.now()
        # then has the same fine resolution (5 us instead of 100 us)
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


@contextlib.contextmanager
def html5_site():
    """spice-html5's files on an ephemeral local HTTP port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=HTML5_DIR))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def key_latency(url: str, canvas_selector: str, seconds: float, interval: float = 0.15,
                      warmup: float = 3.0) -> dict:
    """Open ``url``, wait for ``canvas_selector`` and ``warmup`` s, press keys for ``seconds``."""
    return (await key_latency_turns([(url, canvas_selector)], seconds, interval, warmup))[0]


async def key_latency_turns(targets: list[tuple[str, str]], seconds: float, interval: float = 0.15,
                            warmup: float = 3.0) -> list[dict]:
    """Open every ``(url, canvas_selector)`` in its own context of one Chromium, then press keys on them
    in turns (one key each per round, ``seconds`` of keys each): clients compared this way share the
    machine's load moment by moment instead of each getting its own stretch of it."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            pages = []
            for url, selector in targets:
                ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
                await ctx.add_init_script(HOOK_JS)
                page = await ctx.new_page()
                page.on("dialog", lambda d: asyncio.ensure_future(d.dismiss()))
                await page.goto(url)
                await page.wait_for_selector(selector, timeout=30_000)
                pages.append((page, selector))
            await asyncio.sleep(warmup)
            for page, selector in pages:
                await page.focus(selector)
                await page.evaluate("() => { window.__lat = []; window.__t0 = null; }")
            misses = [0] * len(pages)
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds * len(pages)
            while loop.time() < end:
                for i, (page, _) in enumerate(pages):
                    await page.keyboard.down("a")
                    await asyncio.sleep(interval / 2)
                    await page.keyboard.up("a")
                    await asyncio.sleep(interval / 2)
                    if await page.evaluate("() => window.__t0 !== null"):
                        misses[i] += 1
                        await page.evaluate("() => { window.__t0 = null; }")
            return [{"latency_ms": await page.evaluate("() => window.__lat"), "key_misses": m, "errors": [],
                     "isolated": await page.evaluate("() => self.crossOriginIsolated")}
                    for (page, _), m in zip(pages, misses, strict=True)]
        finally:
            await browser.close()


def html5_url(site: str, port: int) -> str:
    return f"{site}/spice_auto.html?host=127.0.0.1&port={port}&path=spice"


async def in_turns(ours_port: int, xspice_port: int, seconds: float) -> tuple[dict, dict]:
    """Our web client on aiospice and spice-html5 on Xspice, keys pressed on each in turn."""
    if not os.path.exists(os.path.join(HTML5_DIR, "spice_auto.html")):
        err = {"errors": ["spice-html5 not installed"]}
        return err, err
    with html5_site() as site:
        ours_r, html5_r = await key_latency_turns(
            [(f"http://127.0.0.1:{ours_port}/", "#display"), (html5_url(site, xspice_port), "#spice_surface_0")],
            seconds)
    return ours_r, html5_r


async def ours(port: int, seconds: float) -> dict:
    """Our web client, served by aiospice itself."""
    return await key_latency(f"http://127.0.0.1:{port}/", "#display", seconds)


async def html5(port: int, seconds: float) -> dict:
    """spice-html5 (Debian package) straight at a SPICE port that speaks WebSocket (Xspice)."""
    if not os.path.exists(os.path.join(HTML5_DIR, "spice_auto.html")):
        return {"errors": ["spice-html5 not installed"]}
    with html5_site() as site:
        return await key_latency(html5_url(site, port), "#spice_surface_0", seconds)
