"""The benchmark scenes as an X11 client (python-xlib), to drive Xspice for reference figures.

    python3 -m spice.display.xworkload WORKLOAD   (DISPLAY must point at the X server)

Scenes mirror the built-in guest's: ``idle-clock`` (a clock label redrawn every second),
``typing`` (10 characters/s into a terminal-like window, scrolling with CopyArea),
``window-drag`` (a 340x300 window moved along a curve at 30 Hz, no window manager),
``video-320x240`` (25 fps XPutImage of a moving photographic texture).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
from Xlib import X, display

WORKLOADS = ("idle-clock", "typing", "window-drag", "video-320x240")
TEXT = ("echo the quick brown fox jumps over the lazy dog\n", "date\n", "uptime\n", "ls -l /usr/share\n")


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
    font = d.open_font("fixed")

    def window(x, y, w, h, bg):
        win = root.create_window(x, y, w, h, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
                                 background_pixel=bg, event_mask=X.ExposureMask, override_redirect=True)
        win.map()
        return win

    rate = {"idle-clock": 1.0, "typing": 10.0, "window-drag": 30.0, "video-320x240": 25.0}[workload]
    if workload == "idle-clock":
        win = window(sw - 220, 4, 200, 20, 0xE0E0E0)
        gc = win.create_gc(foreground=0x000000, background=0xE0E0E0, font=font)

        def step(n):
            win.image_text(gc, 8, 14, time.strftime("%a %Y-%m-%d %H:%M:%S").encode())
    elif workload == "typing":
        tw, th = int(sw * 0.62), int(sh * 0.75)
        win = window(16, 40, tw, th, 0x101010)
        gc = win.create_gc(foreground=0xD0D0D0, background=0x101010, font=font)
        bg = win.create_gc(foreground=0x101010)
        text = "".join(TEXT)
        pos = {"col": 0, "row": 0}
        cw, ch = 6, 13
        rows = th // ch - 1

        def step(n):
            c = text[n % len(text)]
            if c == "\n" or pos["col"] >= tw // cw - 1:
                pos["col"] = 0
                pos["row"] += 1
                if pos["row"] >= rows:
                    pos["row"] = rows - 1
                    win.copy_area(gc, win, 0, ch, tw, (rows - 1) * ch, 0, 0)
                    win.fill_rectangle(bg, 0, (rows - 1) * ch, tw, ch)
                if c == "\n":
                    return
            win.image_text(gc, pos["col"] * cw + 4, pos["row"] * ch + 11, c.encode())
            pos["col"] += 1
    elif workload == "window-drag":
        ww, wh = 340, 300
        win = window(100, 100, ww, wh, 0xF0F0F0)
        gc = win.create_gc(foreground=0x202020, background=0xF0F0F0, font=font)

        def draw():
            for i in range(20):
                win.image_text(gc, 8, 14 + 14 * i, f"device {i:2d}  usb 1-{i}  ready".encode())

        draw()

        def step(n):
            t = n / rate
            cx, cy = (sw - ww) / 2, (sh - wh) / 2
            win.configure(x=int(cx + 0.35 * sw * math.cos(t * 0.7)), y=int(cy + 0.3 * sh * math.sin(t * 0.9)))
            while d.pending_events():
                if d.next_event().type == X.Expose:
                    draw()
    else:
        from spice.guests.builtin.workloads import photo

        vw, vh, m = 320, 240, 96
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
        d.flush()
        n += 1
        due = max(due + period, time.monotonic() - period)
        time.sleep(max(0.0, due - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "idle-clock"))
