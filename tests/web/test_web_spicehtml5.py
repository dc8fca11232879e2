"""The official spice-html5 0.3 client (Debian package), served from another local port, straight at our
SPICE port: no websockify.  Its canvas must show the guest's pixels exactly."""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import chromium, chromium_available, new_page  # noqa: E402
from test_web_browser import frozen_guest, wait_for  # noqa: E402

from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

HTML5_DIR = Path("/usr/share/spice-html5")

pytestmark = [
    pytest.mark.peer,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not chromium_available(), reason="chromium or playwright missing"),
    pytest.mark.skipif(not (HTML5_DIR / "spice_auto.html").exists(), reason="spice-html5 not installed"),
]

HTML5_CANVAS_JS = """() => {
  const c = document.getElementById('spice_surface_0');
  if (!c) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = '';
  for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
  return [c.width, c.height, btoa(s)];
}"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def html5_site():
    """spice-html5's files on an ephemeral local HTTP port (another origin than the SPICE port)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML5_DIR)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


async def html5_rgb(page):
    import base64

    import numpy as np

    res = await page.evaluate(HTML5_CANVAS_JS)
    if not res:
        return None
    w, h, b64 = res
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w, 4)[..., :3]


async def test_spice_html5_shows_guest_pixels_directly(html5_site):
    import numpy as np

    srv = SpiceServer(
        frozen_guest(),
        ServerConfig(port=0, password="html5-pw", extra={"allow_origin": [html5_site]}),
    )
    await srv.start()
    port = srv.ports["plain"]
    guest = srv.guest
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(
                f"{html5_site}/spice_auto.html?host=127.0.0.1&port={port}&path=spice&password=html5-pw"
            )

            async def same() -> bool:
                rgb = await html5_rgb(page)
                return rgb is not None and np.array_equal(rgb, guest.framebuffer[..., 2::-1])

            await wait_for(same, timeout=30, what="spice-html5 canvas == guest framebuffer")
            guest.terminal.write_line("from html5")
            await wait_for(same, timeout=30, what="spice-html5 canvas after an update")
            # Keys typed into spice-html5 reach the guest (it sends KEY_DOWN/UP scancodes).
            await page.focus("#spice_surface_0")
            await page.keyboard.type("echo html5ok")
            await page.keyboard.press("Enter")
            await wait_for(lambda: "html5ok" in guest.terminal.lines[:-1], what="typed text in guest")
            errors = [line for line in page.console_lines if "unhandled image type" in line.lower()]
            assert not errors, errors
    finally:
        await srv.close()


async def test_spice_html5_page_from_foreign_origin_is_refused_without_allow_origin(html5_site):
    srv = SpiceServer(frozen_guest(), ServerConfig(port=0, disable_ticketing=True))
    await srv.start()
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(
                f"{html5_site}/spice_auto.html?host=127.0.0.1&port={srv.ports['plain']}&path=spice"
            )
            await asyncio.sleep(2)
            assert await page.evaluate("document.getElementById('spice_surface_0')") is None
            assert srv.stats.sessions_total == 0
    finally:
        await srv.close()
