"""Playwright + Debian's Chromium for tests (peers.md: headless flags, no browser download).

``chromium()`` is an async context manager yielding a Playwright ``Browser``; ``new_page()`` opens a
page that records console messages and auto-dismisses dialogs (spice-html5 uses alert/prompt).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import threading
from collections.abc import AsyncIterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_available() -> bool:
    if not os.path.exists(CHROMIUM):
        return False
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return False
    return True


def browser_marks(timeout: int = 120) -> list:
    """The ``pytestmark`` of a module that drives Chromium: a peer test with a ``timeout``, skipped
    without Chromium or Playwright."""
    return [pytest.mark.peer, pytest.mark.timeout(timeout),
            pytest.mark.skipif(not chromium_available(), reason="chromium or playwright missing")]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[object]:
    """Launch headless Chromium through Playwright; closed on exit."""
    from playwright.async_api import async_playwright

    # Playwright gives every launch a fresh temporary profile of its own.
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(
    browser, *, viewport=(1280, 900), prompt_answer: str | None = None, ignore_https_errors=False
):
    """A page that logs console output into ``page.console_lines`` and handles dialogs."""
    context = await browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, ignore_https_errors=ignore_https_errors
    )
    page = await context.new_page()
    page.console_lines = []
    page.dialogs = []
    page.on("console", lambda m: page.console_lines.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.console_lines.append(f"pageerror: {e}"))

    async def on_dialog(dialog):
        page.dialogs.append((dialog.type, dialog.message))
        if dialog.type == "prompt" and prompt_answer is not None:
            await dialog.accept(prompt_answer)
        else:
            await dialog.dismiss()

    page.on("dialog", on_dialog)
    return page


# --- the official spice-html5 client (Debian package spice-html5) -------------------------------

HTML5_DIR = Path("/usr/share/spice-html5")

_HTML5_CANVAS_JS = """() => {
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


def start_html5_site() -> tuple[ThreadingHTTPServer, str]:
    """spice-html5's files on an ephemeral local HTTP port (another origin than the SPICE port).
    Returns the server (``shutdown()`` + ``server_close()`` it) and its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML5_DIR)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


async def html5_canvas_rgba(page) -> np.ndarray | None:
    """spice-html5's primary canvas as an ``(h, w, 4)`` RGBA array (None before it exists)."""
    res = await page.evaluate(_HTML5_CANVAS_JS)
    if not res:
        return None
    w, h, b64 = res
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w, 4)
