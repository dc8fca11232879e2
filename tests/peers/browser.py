"""Playwright + Debian's Chromium for tests (peers.md: headless flags, no browser download).

``chromium()`` is an async context manager yielding a Playwright ``Browser``; ``new_page()`` opens a
page that records console messages and auto-dismisses dialogs (spice-html5 uses alert/prompt).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

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
