"""The benchmark scenes as an X11 client (python-xlib), to drive Xspice for reference figures.

    python3 -m spice.display.xworkload WORKLOAD   (DISPLAY must point at the X server)

Scenes mirror the built-in guest's (``spice.guests.builtin.workloads``): ``idle-clock`` (a clock
label redrawn every second), ``typing`` (the built-in terminal's script, prompt, block cursor and shell
output at 10 characters/s, scrolling with CopyArea), ``window-drag`` (a 340x300 window moved along a curve at 30 Hz over the terminal,
no window manager),
``scroll`` (a full-screen terminal, 30 lines/s, CopyArea + text), ``video-320x240`` (25 fps) and
``video-1080p`` (full screen, 30 fps) XPutImage of a moving photographic texture (fresh pixels every
frame), ``many-small-fills`` (~10,000 XFillRectangle/s of 4..32 px in 64 colours),
``photo-slideshow`` (a full-screen photograph every 2 s) and ``echo`` (a focused text window that
draws every key press at once: the input-to-pixel latency scene, like an xterm echoing keys).
Every scene also shows the clock, as the built-in desktop does.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
from Xlib import X, display

WORKLOADS = ("idle-clock", "typing", "window-drag", "scroll", "video-320x240", "video-1080p", "many-small-fills",
             "photo-slideshow", "echo")
RATES = {"idle-clock": 1.0, "typing": 10.0, "window-drag": 30.0, "scroll": 30.0, "video-320x240": 25.0,
         "video-1080p": 30.0, "many-small-fills": 30.0, "photo-slideshow": 0.5, "echo": 1.0}
FONT_9X18 = "-misc-fixed-medium-r-normal--18-120-100-100-c-90-iso8859-1"  # Debian xfonts-base


def put_image(win, gc, x: int, y: int, img: np.ndarray, max_bytes: int = 200_000) -> None:
    """XPutImage in row strips that fit a core request."""
    h, w = img.shape[:2]
    rows = max(1, max_bytes // (4 * w))
    for y0 in range(0, h, rows):
        part = np.ascontiguousarray(img[y0:y0 + rows])
        win.put_image(gc, x, y + y0, w, part.shape[0], X.ZPixmap, 24, 0, part.tobytes())


def main(workload: str) -> int:
    if workload not in WORKLOADS:
        print(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    d = display.Display()
    screen = d.screen()
    root = screen.root
    sw, sh = screen.width_in_pixels, screen.height_in_pixels
    root.change_attributes(background_pixel=0x2E5C8A)
    root.clear_area()
    # 9x18: the built-in guest's character cell (falls back to the server's built-in 6x13 "fixed")
    big = d.list_fonts(FONT_9X18, 1)
    font = d.open_font(big[0] if big else "fixed")
    cw, ch = (9, 18) if big else (6, 13)

    def window(x, y, w, h, bg):
        win = root.create_window(x, y, w, h, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
                                 background_pixel=bg, event_mask=X.ExposureMask, override_redirect=True)
        win.map()
        return win

    rate = RATES[workload]
    clock_w = 23 * cw + 16  # "Thu 2026-11-26 17:25:09" whole (the built-in top bar's clock box holds 23 cells)
    clock = window(sw - clock_w - 10, 4, clock_w, 20, 0xE0E0E0)
    clock_gc = clock.create_gc(foreground=0x000000, background=0xE0E0E0, font=font)
    last = [""]

    def tick_clock():
        text = time.strftime("%a %Y-%m-%d %H:%M:%S")
        if text != last[0]:
            last[0] = text
            clock.image_text(clock_gc, 8, 14, text.encode())

    if workload == "idle-clock":
        def step(n):
            pass
    elif workload == "echo":
        return _echo(d, window, font, tick_clock, cw, ch)
    elif workload == "scroll":
        win = window(0, 24, sw, sh - 24, 0x101010)
        gc = win.create_gc(foreground=0xD0D0D0, background=0x101010, font=font)
        bg = win.create_gc(foreground=0x101010)
        rows = (sh - 24) // ch
        words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt".split()

        def step(n):
            win.copy_area(gc, win, 0, ch, sw, (rows - 1) * ch, 0, 0)
            win.fill_rectangle(bg, 0, (rows - 1) * ch, sw, ch)
            line = f"{n:08d}  " + " ".join(words[(n * 7 + i) % len(words)] for i in range(4 + n % 9))
            win.image_text(gc, 4, (rows - 1) * ch + ch - 4, line.encode())
    elif workload == "many-small-fills":
        win = window(0, 24, sw, sh - 24, 0)
        rng = np.random.default_rng(0)
        gcs = [win.create_gc(foreground=int(c)) for c in rng.integers(0, 1 << 24, 64)]
        per_step = int(10_000 / rate)

        def step(n):
            x = rng.integers(0, sw - 4, per_step)
            y = rng.integers(0, sh - 28, per_step)
            w = rng.integers(4, 33, per_step)
            h = rng.integers(4, 33, per_step)
            k = rng.integers(0, len(gcs), per_step)
            for i, gc in enumerate(gcs):
                sel = np.flatnonzero(k == i)
                win.poly_fill_rectangle(gc, [(int(x[j]), int(y[j]), int(w[j]), int(h[j])) for j in sel])
    elif workload == "photo-slideshow":
        from spice.guests.builtin.workloads import photo

        m = 96
        win = window(0, 0, sw, sh, 0)
        gc = win.create_gc()
        pics = (photo(sw + 2 * m, sh + 2 * m, 0), photo(sw + 2 * m, sh + 2 * m, 1))

        def step(n):
            rng = np.random.default_rng(n)
            ox, oy = int(rng.integers(0, 2 * m)), int(rng.integers(0, 2 * m))
            img = pics[n % 2][oy:oy + sh, ox:ox + sw]
            put_image(win, gc, 0, 0, img[:, ::-1] if n // 2 % 2 else img)
    elif workload == "typing":
        step = _typing(d, window, font, cw, ch)
    elif workload == "window-drag":
        term = TerminalMirror(d, window, font, cw, ch)  # the built-in desktop's terminal, under the moving window
        term.win.change_attributes(event_mask=X.ExposureMask)
        ww, wh = 340, 300
        win = window(100, 100, ww, wh, 0xF0F0F0)
        gc = win.create_gc(foreground=0x202020, background=0xF0F0F0, font=font)

        def draw():
            for i in range(min(20, wh // ch - 1)):
                win.image_text(gc, 8, ch + ch * i, f"device {i:2d}  usb 1-{i}  ready".encode())

        draw()

        def step(n):
            t = n / rate
            cx, cy = (sw - ww) / 2, (sh - wh) / 2
            win.configure(x=int(cx + 0.35 * sw * math.cos(t * 0.7)), y=int(cy + 0.3 * sh * math.sin(t * 0.9)))
            while d.pending_events():
                ev = d.next_event()
                if ev.type == X.Expose and ev.window == term.win:
                    term.expose(ev.y, ev.height)
                elif ev.type == X.Expose:
                    draw()
    else:
        from spice.guests.builtin.workloads import photo

        vw, vh, m = (320, 240, 96) if workload == "video-320x240" else (sw, sh, 96)
        win = window((sw - vw) // 2, (sh - vh) // 2, vw, vh, 0)
        gc = win.create_gc()
        texture = photo(vw + 2 * m, vh + 2 * m, 0)

        def step(n):
            ox = int(m + (m - 1) * math.sin(n * 0.071)) + n % 2
            oy = int(m + (m - 1) * math.sin(n * 0.053 + 1.0))
            put_image(win, gc, 0, 0, texture[oy:oy + vh, ox:ox + vw])

    d.sync()
    period, n, due = 1.0 / rate, 0, time.monotonic()
    while True:
        step(n)
        tick_clock()
        d.flush()
        n += 1
        due = max(due + period, time.monotonic() - period)
        time.sleep(max(0.0, due - time.monotonic()))


class TerminalMirror:
    """Our built-in terminal drawn with core X requests: the same text as the guest's terminal (prompt,
    block cursor, the shell's real output), scrolling with CopyArea, rows redrawn on Expose.

    The text comes from a model of our guest (``BuiltinGuest`` with the USB commands ``aiospice serve``
    installs, so ``help`` prints the same lines) and the window sits where ours does; only the drawing
    differs: ImageText with the 9x18 core font here, anti-aliased cells there."""

    def __init__(self, d, window, font, cw: int, ch: int) -> None:
        import asyncio

        from spice.guests.builtin.guest import BuiltinGuest
        from spice.guests.builtin.terminal import TERM_BG, TERM_FG
        from spice.guests.builtin.usb import attach_usb
        from usbredir.guest.subsystem import UsbSubsystem

        screen = d.screen()

        async def model() -> BuiltinGuest:
            g = BuiltinGuest(screen.width_in_pixels, screen.height_in_pixels)
            attach_usb(g, UsbSubsystem())
            return g

        self.term = term = asyncio.run(model()).terminal
        r, self.area = term.rect, term.area
        self.win = window(r.left, r.top, r.width, r.height, TERM_BG)
        self.gc = self.win.create_gc(foreground=TERM_FG, background=TERM_BG, font=font)
        self.inverse = self.win.create_gc(foreground=TERM_BG, background=TERM_FG, font=font)
        self.cw, self.ch = cw, ch
        self.top: int | None = None
        self.shown: list[tuple[str, int] | None] = [None] * term.rows
        self.sync()

    def _draw_row(self, row: int, want: tuple[str, int], old: tuple[str, int] | None) -> None:
        cols, a = self.term.cols, self.area
        line = want[0].ljust(cols)[:cols]
        lo, hi = 0, cols
        if old is not None:  # only the span that differs (text or cursor), as the guest does
            prev = old[0].ljust(cols)[:cols]
            diff = [i for i in range(cols) if line[i] != prev[i]] + [c for c in (want[1], old[1]) if c >= 0]
            if not diff:
                return
            lo, hi = min(diff), max(diff) + 1
        y, c = a.top + row * self.ch + self.ch - 4, want[1]
        spans = ((lo, c, self.gc), (c, c + 1, self.inverse), (c + 1, hi, self.gc)) if lo <= c < hi else ((lo, hi, self.gc),)
        for i0, i1, g in spans:
            if i1 > i0:
                self.win.image_text(g, a.left + i0 * self.cw, y, line[i0:i1].encode())

    def sync(self) -> None:
        """Draw what changed in the model since the last sync."""
        term, a, ch = self.term, self.area, self.ch
        rows, top, (cur_row, cur_col) = term._layout()
        abs_top = term.base + top
        if self.top is not None and abs_top != self.top:
            delta = abs_top - self.top
            if 0 < delta < term.rows:
                self.win.copy_area(self.gc, self.win, a.left, a.top + delta * ch, a.width, (term.rows - delta) * ch,
                                   a.left, a.top)
                self.shown = self.shown[delta:] + [None] * delta
            else:
                self.shown = [None] * term.rows
        self.top = abs_top
        for row in range(term.rows):
            i = top + row
            want = (rows[i] if i < len(rows) else "", cur_col if i == cur_row else -1)
            if self.shown[row] != want:
                self._draw_row(row, want, self.shown[row])
                self.shown[row] = want

    def expose(self, y: int, height: int) -> None:
        """Redraw the rows that window rows ``y .. y + height`` cross."""
        first = max(0, (y - self.area.top) // self.ch)
        last = min(self.term.rows, (y + height - self.area.top + self.ch - 1) // self.ch)
        for row in range(first, last):
            self.shown[row] = None
        self.sync()


def _typing(d, window, font, cw: int, ch: int):
    """The typing scene's step: the same script as the built-in Typing workload."""
    from spice.guests.builtin.workloads import Typing

    mirror = TerminalMirror(d, window, font, cw, ch)
    text = "".join(Typing.SCRIPT)

    def step(n: int) -> None:
        mirror.term.type_text(text[n % len(text)])
        mirror.sync()

    return step

def _echo(d, window, font, tick_clock, cw: int, ch: int) -> int:
    """Draw every key press at once (an xterm echoing keys), keep the clock ticking."""
    import select

    screen = d.screen()
    sw, sh = screen.width_in_pixels, screen.height_in_pixels
    tw, th = int(sw * 0.62), int(sh * 0.75)
    win = window(16, 40, tw, th, 0x101010)
    win.change_attributes(event_mask=X.KeyPressMask | X.ExposureMask)
    gc = win.create_gc(foreground=0xD0D0D0, background=0x101010, font=font)
    bg = win.create_gc(foreground=0x101010)
    win.set_input_focus(X.RevertToParent, X.CurrentTime)
    d.sync()
    cols, rows, col, row = tw // cw - 2, th // ch - 1, 0, 0
    fd = d.fileno()
    while True:
        tick_clock()
        d.flush()
        select.select([fd], [], [], 0.05)
        while d.pending_events():
            ev = d.next_event()
            if ev.type != X.KeyPress:
                continue
            if col >= cols:
                col, row = 0, (row + 1) % rows
                win.fill_rectangle(bg, 0, row * ch, tw, ch)
            win.image_text(gc, col * cw + 4, row * ch + ch - 3, b"a")
            col += 1
            d.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "idle-clock"))
