"""Our web client (web/) in Debian's Chromium against the real server and the built-in guest."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import browser_marks, chromium, new_page  # noqa: E402

from spice.guests.builtin import BuiltinGuest  # noqa: E402
from spice.guests.builtin.cursor import shapes  # noqa: E402
from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = browser_marks()

W, H = 800, 600

CANVAS_RGBA_JS = """() => {
  const c = document.getElementById('display');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = '';
  for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
  return [c.width, c.height, btoa(s)];
}"""


def frozen_guest() -> BuiltinGuest:
    return BuiltinGuest(width=W, height=H, clock=lambda: datetime(2026, 1, 2, 3, 4, 5), uptime=lambda: 42.0)


async def start_server(**cfg) -> SpiceServer:
    cfg.setdefault("port", 0)
    if "password" not in cfg:
        cfg["disable_ticketing"] = True
    srv = SpiceServer(frozen_guest(), ServerConfig(**cfg))
    await srv.start()
    return srv


def url(srv: SpiceServer) -> str:
    return f"http://127.0.0.1:{srv.ports['plain']}/"


async def wait_for(cond, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"):
    """Poll an (async or plain) condition until it is truthy; returns its value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def canvas_rgb(page) -> np.ndarray:
    w, h, b64 = await page.evaluate(CANVAS_RGBA_JS)
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w, 4)[..., :3]


def guest_rgb(guest: BuiltinGuest) -> np.ndarray:
    return guest.framebuffer[..., 2::-1]


async def canvas_matches_guest(page, guest) -> bool:
    rgb = await canvas_rgb(page)
    return rgb.shape == guest_rgb(guest).shape and np.array_equal(rgb, guest_rgb(guest))


async def state(page) -> str:
    return await page.evaluate("document.getElementById('status').dataset.state")


async def to_page(page, gx: float, gy: float) -> tuple[float, float]:
    """Guest pixel (centre) -> page coordinates through the canvas' current scaling."""
    r = await page.evaluate(
        "(() => { const c = document.getElementById('display'); const r = c.getBoundingClientRect();"
        " return [r.x, r.y, r.width / c.width, r.height / c.height]; })()"
    )
    return r[0] + (gx + 0.5) * r[2], r[1] + (gy + 0.5) * r[3]


async def open_client(browser, srv):
    page = await new_page(browser)
    await page.goto(url(srv))
    await wait_for(lambda: state(page), what="page state")
    await wait_for(lambda: _is(page, "connected"), what="connected")
    return page


async def _is(page, want: str) -> bool:
    return await state(page) == want


@pytest.mark.parametrize("force", [None, "BITMAP", "LZ_RGB"])
async def test_canvas_equals_guest_framebuffer_lossless(force):
    srv = await start_server()
    if force is not None:  # default for our client: LZ4; also every other lossless type end to end
        from spice.display.caps import ImageType

        srv.display_pipeline.force_type = ImageType[force]
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="canvas == framebuffer")
            # Some content change later (typing) must also arrive pixel-exact.
            srv.guest.terminal.type_text("pixels")
            await wait_for(
                lambda: canvas_matches_guest(page, srv.guest), what="canvas == framebuffer after text"
            )
            # The status bar's latency comes from a main-channel round trip once a second.
            await wait_for(
                lambda: page.evaluate("window.aiospice.lastLatency !== null"), what="latency figure"
            )
            await wait_for(lambda: page.evaluate(LATENCY_SHOWN_JS), what="latency in the status bar")
            stats = await page.evaluate("window.aiospice.stats()")
            assert stats["display"]["byType"], stats  # images were decoded in the browser
            types = set(stats["display"]["byType"])
            # Default: LZ4 (small bands may go LZ_RGB when smaller); forced: exactly that type.
            assert types == {force} if force else "LZ4" in types and types <= {"LZ4", "LZ_RGB"}
            print("image types drawn:", stats["display"]["byType"])
            errors = [line for line in page.console_lines if line.startswith(("error", "pageerror"))]
            assert not errors, errors
    finally:
        await srv.close()


async def test_typing_reaches_guest_terminal():
    srv = await start_server()
    guest = srv.guest
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            await page.focus("#display")
            # Playwright's type() sends unshifted key codes; shifted characters need Shift held.
            await page.keyboard.type("echo hello-web.1 ")
            await page.keyboard.press("Shift+KeyA")
            await page.keyboard.press("Shift+Minus")
            await page.keyboard.press("Enter")
            await wait_for(
                lambda: "hello-web.1 A_" in guest.terminal.lines[:-1], what="echo output in terminal"
            )
            # Arrow keys / editing keys go through the E0-prefixed path: Up recalls the last command.
            await page.keyboard.press("ArrowUp")
            await wait_for(
                lambda: guest.terminal.lines[-1].endswith("echo hello-web.1 A_"), what="history recall"
            )
            # Blur releases held keys: hold Shift, blur the canvas, the guest must not keep Shift down.
            await page.keyboard.down("Shift")
            await page.evaluate("document.getElementById('display').blur()")
            await page.keyboard.up("Shift")
            await page.focus("#display")
            await page.keyboard.type("x")
            await wait_for(
                lambda: guest.terminal.lines[-1].endswith("echo hello-web.1 A_x"), what="lowercase x"
            )
    finally:
        await srv.close()


LATENCY_SHOWN_JS = "document.getElementById('latency').textContent.endsWith(' ms')"


async def test_status_figures_hold_still_while_typing():
    """The bar's latency and bytes/s never change while keys are pressed (new text there would cost the
    browser a frame that delays the echo); they catch up after a second without input."""
    srv = await start_server()
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            await wait_for(lambda: page.evaluate(LATENCY_SHOWN_JS), what="latency in the status bar")
            await page.evaluate("""() => { window.__barChanges = 0;
                new MutationObserver((m) => { window.__barChanges += m.length; }).observe(
                    document.getElementById('bar'), { subtree: true, childList: true, characterData: true }); }""")
            await page.focus("#display")
            for _ in range(30):  # 3 s of typing, a key every 100 ms: three status ticks pass
                await page.keyboard.press("KeyA")
                await asyncio.sleep(0.1)
            assert await page.evaluate("window.__barChanges") == 0
            await wait_for(lambda: srv.guest.terminal.lines[-1].endswith("a" * 30), what="the keys in the terminal")
            await wait_for(lambda: page.evaluate("window.__barChanges > 0"), timeout=5, what="figures after a pause")
    finally:
        await srv.close()


async def test_clicks_and_drags_reach_guest():
    srv = await start_server()
    guest = srv.guest
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            bx, by = guest.button.center
            px, py = await to_page(page, bx, by)
            await page.mouse.click(px, py)
            await wait_for(lambda: guest.button.clicks == 1, what="button click")
            # Drag the terminal by its title bar.
            term = guest.terminal
            x0, y0 = term.x, term.y
            sx, sy = await to_page(page, x0 + 40, y0 + 8)
            ex, ey = await to_page(page, x0 + 40 + 50, y0 + 8 + 30)
            await page.mouse.move(sx, sy)
            await page.mouse.down()
            await page.mouse.move(ex, ey, steps=12)
            await page.mouse.up()
            await wait_for(
                lambda: (term.x, term.y) == (x0 + 50, y0 + 30), what="terminal dragged by (50, 30)"
            )
            await wait_for(lambda: canvas_matches_guest(page, guest), what="canvas after drag")
            # Wheel over the terminal scrolls its view (buttons 4/5).
            for i in range(40):
                term.write_line(f"line {i}")
            await wait_for(lambda: canvas_matches_guest(page, guest), what="canvas after output")
            assert term.offset == 0
            cx, cy = await to_page(page, term.x + 60, term.y + 80)
            await page.mouse.move(cx, cy)
            await page.mouse.wheel(0, -120)
            await wait_for(lambda: term.offset == 3, what="terminal scrolled back by the wheel (button 4)")
            await page.mouse.wheel(0, 120)
            await wait_for(lambda: term.offset == 0, what="terminal scrolled forward (button 5)")
    finally:
        await srv.close()


def _cursor_rgba(shape) -> np.ndarray:
    return shape.pixels[..., [2, 1, 0, 3]]


async def test_cursor_shape_follows_guest():
    srv = await start_server()
    guest = srv.guest
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            term = guest.terminal
            seen = {}
            for name, (gx, gy) in {
                "move": (term.x + 40, term.y + 8),
                "ibeam": (term.x + 60, term.y + 100),
                "arrow": (W - 20, H - 20),
            }.items():
                px, py = await to_page(page, gx, gy)
                await page.mouse.move(px, py)
                serial = shapes()[name].serial
                await wait_for(
                    lambda s=serial: guest.cursor.shape is not None and guest.cursor.shape.serial == s,
                    what=f"guest cursor {name}",
                )
                want = guest.cursor.shape
                css = await wait_for(
                    lambda w=want: page.evaluate(
                        "(s) => { const c = document.getElementById('display');"
                        " return c.dataset.cursor && c.dataset.cursor.endsWith(':' + s) ? c.style.cursor : null; }",
                        w.serial,
                    ),
                    what=f"css cursor for {name}",
                )
                assert css.startswith('url("data:image/png;base64,')
                png = base64.b64decode(css.split("base64,", 1)[1].split('"', 1)[0])
                img = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
                ref = _cursor_rgba(want)
                assert img.shape == ref.shape
                # The canvas round trip keeps alpha exactly; colour only where fully opaque.
                assert np.array_equal(img[..., 3], ref[..., 3])
                opaque = ref[..., 3] == 255
                assert np.array_equal(img[opaque], ref[opaque])
                assert css.rsplit(")", 1)[1].strip().startswith(f"{want.hot_x} {want.hot_y},")
                seen[name] = css
            assert len(set(seen.values())) == 3
            # A shape too big for a CSS cursor is drawn as an overlay that follows the pointer.
            await page.evaluate(
                "window.aiospice.setCursor({width: 200, height: 150, hotX: 5, hotY: 6, unique: 'big',"
                " rgba: new Uint8ClampedArray(200 * 150 * 4).fill(255)})"
            )
            assert await page.evaluate("document.getElementById('display').style.cursor") == "none"
            assert await page.evaluate("!document.getElementById('cursor-overlay').hidden")
    finally:
        await srv.close()


async def test_password_prompt_then_connect():
    srv = await start_server(password="s3cret-pw")
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(url(srv))
            await page.wait_for_selector("#password-dialog[open]", timeout=10000)
            await page.fill("#password", "wrong")
            await page.click("#password-ok")
            await page.wait_for_selector(
                "#password-dialog[open] #password-error:not([hidden])", timeout=10000
            )
            assert await state(page) == "password"
            assert srv.stats.auth_failures >= 1
            await page.fill("#password", "s3cret-pw")
            await page.click("#password-ok")
            await wait_for(lambda: _is(page, "connected"), what="connected with the right password")
            await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="canvas == framebuffer")
            assert "s3cret-pw" not in page.url
    finally:
        await srv.close()


async def test_reconnect_after_server_drops_sockets():
    srv = await start_server()
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="first picture")
            for conn in list(srv.connections):
                conn.close("test: drop")
            await wait_for(
                lambda: page.evaluate("window.aiospice.reconnects >= 1"), what="client noticed the drop"
            )
            await wait_for(lambda: _is(page, "connected"), what="reconnected")
            srv.guest.terminal.type_text("after reconnect")
            await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="canvas after reconnect")
    finally:
        await srv.close()


async def test_ctrl_alt_del_button_scaling_and_touch():
    srv = await start_server()
    guest = srv.guest
    keys: list[tuple[int, bool]] = []
    real_key_event = guest.key_event

    def spy(code: int, pressed: bool) -> None:
        keys.append((code, pressed))
        real_key_event(code, pressed)

    guest.key_event = spy
    buttons: list[tuple[int, bool]] = []
    real_button = guest.pointer_button

    def spy_button(button: int, pressed: bool, mask: int) -> None:
        buttons.append((button, pressed))
        real_button(button, pressed, mask)

    guest.pointer_button = spy_button
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            await page.click("#btn-cad")
            want = [(0x1D, True), (0x38, True), (0x153, True), (0x153, False), (0x38, False), (0x1D, False)]
            await wait_for(lambda: keys[-6:] == want, what="Ctrl+Alt+Del scancodes")
            # 1:1 mode: the canvas is shown at the guest's size and clicks still land on target.
            await page.click("#btn-scale")
            size = await page.evaluate(
                "(() => { const r = document.getElementById('display').getBoundingClientRect();"
                " return [r.width, r.height]; })()"
            )
            assert size == [W, H]
            px, py = await to_page(page, *guest.button.center)
            await page.mouse.click(px, py, button="right")
            await page.mouse.click(px, py, button="middle")
            await wait_for(
                lambda: [(3, True), (3, False), (2, True), (2, False)] == buttons[-4:],
                what="right and middle buttons",
            )
            await page.mouse.click(px, py)
            await wait_for(lambda: guest.button.clicks == 1, what="click at 1:1")
            # Touch: a tap is a left click.
            ctx = await browser.new_context(viewport={"width": 1000, "height": 800}, has_touch=True)
            touch = await ctx.new_page()
            await touch.goto(url(srv))
            await wait_for(lambda: _is(touch, "connected"), what="touch page connected")
            tx, ty = await to_page(touch, *guest.button.center)
            await touch.touchscreen.tap(tx, ty)
            await wait_for(lambda: guest.button.clicks == 2, what="tap = click")
            await ctx.close()
    finally:
        await srv.close()


async def test_bursts_of_small_updates_end_pixel_exact():
    """Hundreds of small fills per frame (more dirty rects than the client presents one by one)."""
    guest = BuiltinGuest(
        width=W, height=H, workload="many-small-fills", clock=lambda: datetime(2026, 1, 2, 3, 4, 5)
    )
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True))
    await srv.start()
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            await asyncio.sleep(2.0)
            await guest.stop()
            await wait_for(
                lambda: canvas_matches_guest(page, guest), timeout=30, what="canvas after the burst"
            )
            presents = await page.evaluate("window.aiospice.stats().display.presents")
            assert presents > 0
    finally:
        await srv.close()


async def test_text_drawn_by_copying_cells_ends_pixel_exact():
    """Typing, line editing, output and scrolling in the built-in terminal come mostly as COPY_BITS of
    character cells already on screen (a cursor cell, a repeated word, an inserted letter shifting
    the rest of the line): the canvas still equals the guest framebuffer."""
    srv = await start_server()
    t = srv.guest.terminal
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="first picture")
            copies = t.grid.copies
            for ch in "echo the quick brown fox\necho fox the quick\n":
                t.type_text(ch)
                await asyncio.sleep(0.01)
            for key in ["Home", "x", "y", "End", "Left", "Backspace", "z"]:
                t.key(key)
                await asyncio.sleep(0.01)
            for i in range(t.rows + 5):  # scrolling output
                t.write_line(f"{i:04d} lorem ipsum dolor sit amet " + "elit " * (i % 5))
                await asyncio.sleep(0.005)
            t.scroll_view(4)
            await asyncio.sleep(0.02)
            t.type_text("q")
            await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="canvas == framebuffer after text")
            assert t.grid.copies - copies > 200
    finally:
        await srv.close()


async def test_reconnect_with_backoff_across_a_server_restart():
    srv = await start_server(password="pw2")
    port = srv.ports["plain"]
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(url(srv))
            await page.wait_for_selector("#password-dialog[open]", timeout=10000)
            await page.fill("#password", "pw2")
            await page.click("#password-ok")
            await wait_for(lambda: _is(page, "connected"), what="connected")
            await srv.close()
            # Server gone: the client keeps retrying, with growing delays, and says so.
            await wait_for(
                lambda: page.evaluate("window.aiospice.reconnects >= 3"), timeout=30, what="retries"
            )
            text = await page.inner_text("#status-text")
            assert text.startswith("reconnecting") and "retry in" in text
            delay = float(text.rsplit("retry in ", 1)[1].split()[0])
            assert delay >= 2.0  # 0.5 s doubled at least twice
            # Back on the same port (new guest, same password): the client reconnects by itself.
            srv = SpiceServer(frozen_guest(), ServerConfig(port=port, password="pw2"))
            await srv.start()
            await wait_for(lambda: _is(page, "connected"), timeout=40, what="reconnected after restart")
            await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="new server's picture")
    finally:
        await srv.close()


async def test_the_screen_shows_what_the_canvas_holds():
    """What Chromium composites on screen (a screenshot of the canvas at 1:1) equals the guest's
    framebuffer, after the first screen and after typing (the canvas context is a low-latency,
    desynchronized one: its frames reach the compositor on their own)."""
    srv = await start_server()
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            await page.click("#btn-scale")  # fit -> 1:1
            await wait_for(lambda: page.evaluate("document.getElementById('display').style.width === '800px'"),
                           what="1:1")
            for text in ("", "on screen"):
                srv.guest.terminal.type_text(text)
                await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="canvas == framebuffer")
                shot = Image.open(io.BytesIO(await page.locator("#display").screenshot())).convert("RGB")
                got = np.asarray(shot)
                want = guest_rgb(srv.guest)
                assert got.shape == want.shape
                diff = np.argwhere(np.any(got != want, axis=-1))
                assert len(diff) == 0, f"{len(diff)} pixels differ on screen, first at {diff[:5].tolist()}"
    finally:
        await srv.close()


async def test_the_page_is_cross_origin_isolated():
    """COOP + COEP on every answer: the client page is cross-origin isolated (its performance.now() is
    fine-grained, as the browser latency bench relies on) and still connects and draws."""
    srv = await start_server()
    try:
        async with chromium() as browser:
            page = await open_client(browser, srv)
            assert await page.evaluate("self.crossOriginIsolated")
            await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="canvas == framebuffer")
            errors = [line for line in page.console_lines if line.startswith(("error", "pageerror"))]
            assert not errors, errors
    finally:
        await srv.close()


async def test_video_area_plays_as_an_mjpeg_stream_then_ends_pixel_exact():
    """With the server's default policy (``--streaming mjpeg``) our client announces CODEC_MJPEG and gets
    the video area as an MJPEG stream (a tenth of the lossless bytes); once the video stops, the lossless
    refresh makes the canvas the guest's exact framebuffer again."""
    from spice.display import video

    guest = BuiltinGuest(width=W, height=H, workload="video-320x240", clock=lambda: datetime(2026, 1, 2, 3, 4, 5),
                         uptime=lambda: 42.0)
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, streaming="mjpeg"))
    await srv.start()
    pipeline = srv.display_pipeline
    try:
        async with chromium() as browser:
            page = await new_page(browser)
            await page.goto(url(srv))
            await wait_for(lambda: pipeline.clients and pipeline.clients[0]._stream_create is not None,
                           what="a stream to the web client")
            client = pipeline.clients[0]
            assert video.MJPEG in client.caps.video_codecs  # (and VP8 / H.264: WebCodecs, test_web_video)
            assert client._stream_create.codec == video.MJPEG  # the server's order: MJPEG first
            r = client._stream_create.rect
            await wait_for(lambda: page.evaluate("(window.aiospice.display.stats.byType.MJPEG || 0) >= 20"),
                           what="20 MJPEG frames drawn")
            diffs = []  # canvas against the guest's latest frame (JPEG, and a frame or so behind): ~9 here,
            for _ in range(3):  # against a flat picture of the same mean ~32
                now = guest_rgb(guest)[r.top:r.bottom, r.left:r.right].astype(int)
                shown = (await canvas_rgb(page))[r.top:r.bottom, r.left:r.right].astype(int)
                diffs.append(np.abs(shown - now).mean())
            assert min(diffs) < 16, diffs
            assert not [x for x in page.console_lines if "not supported" in x or "pageerror" in x]
            await guest.stop()
            await wait_for(lambda: canvas_matches_guest(page, guest), timeout=20, what="lossless picture after the video")
    finally:
        await srv.close()
