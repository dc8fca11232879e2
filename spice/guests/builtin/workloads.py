"""Benchmark scenes the built-in guest can play (``BuiltinGuest(workload=NAME)``)."""

from __future__ import annotations

import asyncio
import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .window import TITLE_H, Window

if TYPE_CHECKING:
    from .guest import BuiltinGuest


def _fractal(height: int, width: int, rng: np.random.Generator, cells: tuple[int, ...]) -> np.ndarray:
    """Grey 1/f-like noise in about [0, 1]: octaves of random values upsampled bicubically."""
    acc = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for cell in cells:
        sw, sh = width // cell + 3, height // cell + 3
        small = Image.fromarray(rng.integers(0, 256, (sh, sw), dtype=np.uint8))
        acc += amp * np.asarray(small.resize((sw * cell, sh * cell), Image.Resampling.BICUBIC),
                                np.float32)[:height, :width]
        total += amp
        amp *= 0.55
    return acc / (255.0 * total)


def _ridge(width: int, rng: np.random.Generator, base: float, rough: float) -> np.ndarray:
    """A mountain skyline: height (fraction of the image) per column."""
    x = np.arange(width, dtype=np.float32)
    out = np.full(width, base, np.float32)
    amp = rough
    for n in (3, 7, 17, 41, 97):
        pts = rng.uniform(-1, 1, n + 1).astype(np.float32)
        out += amp * np.interp(x, np.linspace(0, width, n + 1), pts)
        amp *= 0.5
    return out


@lru_cache(maxsize=4)
def photo(width: int, height: int, seed: int) -> np.ndarray:
    """A photographic-looking BGRX landscape: sky, clouds, sun glow, mountain ranges, textured ground, grain.

    The scene is drawn at half size and upscaled (4x less work); the grain is full resolution.
    Cached and read-only: a benchmark's guests share it.
    """
    rng = np.random.default_rng(seed)
    half = _scene(max(8, width // 2), max(8, height // 2), rng)
    big = np.asarray(Image.fromarray(half).resize((width, height), Image.Resampling.BICUBIC), np.int16)
    big = big + rng.integers(-4, 5, (height, width, 1), dtype=np.int16)  # sensor grain
    out = np.empty((height, width, 4), np.uint8)
    out[:, :, 2::-1] = np.clip(big, 0, 255)  # RGB -> B, G, R
    out[:, :, 3] = 255
    out.flags.writeable = False
    return out


def _scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 landscape."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xg = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    horizon = float(rng.uniform(0.45, 0.6))
    hue = rng.uniform(-30, 30, 3).astype(np.float32)
    t = np.clip(y / horizon, 0, 1)[:, :, None]
    img = (np.array([70, 120, 200], np.float32) + hue) * (1 - t) + np.array([200, 215, 230], np.float32) * t
    img = np.broadcast_to(img, (height, width, 3)).copy()
    sx, sy = rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3) * horizon / 0.5
    d2 = ((xg - sx) * width / height) ** 2 + (y - sy) ** 2
    img += (np.exp(-d2 / 0.02) * 90)[:, :, None] * np.array([1.0, 0.85, 0.55], np.float32)
    clouds = np.clip((_fractal(height, width, rng, (128, 48, 16, 6, 2)) - 0.5) * 3.0, 0, 1) * (1 - t[:, :, 0])
    img += clouds[:, :, None] * (np.array([250, 250, 252], np.float32) - img) * 0.85
    detail = _fractal(height, width, rng, (32, 8, 2))
    for k, (base, col) in enumerate(((horizon - 0.12, (95, 110, 140)), (horizon - 0.05, (60, 80, 70)),
                                     (horizon + 0.02, (45, 70, 35)))):
        top = (_ridge(width, rng, base, 0.06 + 0.02 * k) * height)[None, :]
        mask = y * height >= top
        shade = (0.7 + 0.6 * detail)[:, :, None]
        layer = np.array(col, np.float32) * shade * (1 - 0.25 * (y * height - top).clip(0, height)[:, :, None] / height)
        img = np.where(mask[:, :, None], layer, img)
    ground = y >= horizon + 0.12
    grass = (np.array([70, 110, 45], np.float32) + hue / 2) * (0.6 + 0.8 * detail)[:, :, None]
    img = np.where(ground[:, :, None], grass, img)
    return np.clip(img, 0, 255).astype(np.uint8)


def _bounce(p: int, span: int) -> int:
    """Triangle wave over ``0..span``."""
    p %= 2 * span
    return p if p <= span else 2 * span - p


class Workload:
    """Runs as a task after :meth:`BuiltinGuest.start`; ``rate`` steps per second."""

    rate = 30.0

    def __init__(self, guest: BuiltinGuest) -> None:
        self.guest = guest
        self.steps = 0

    async def prepare(self) -> None:
        """Expensive set-up (off the event loop where possible)."""

    def step(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """Step ``rate`` times a second until cancelled; each step's frame is made at once."""
        await self.prepare()
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate
        due = loop.time()

        def step() -> None:
            self.step()
            self.steps += 1

        def delay() -> float:
            nonlocal due
            now = loop.time()
            due = max(due + period, now - period)  # do not burst after a stall
            return due - now

        await self.guest.drive(step, delay)


class IdleClock(Workload):
    """Only the top bar's clock ticks (the guest's own clock task): no steps, so no wake-ups."""

    rate = 1.0

    def step(self) -> None:
        pass

    async def run(self) -> None:
        await asyncio.Event().wait()  # until cancelled


class Typing(Workload):
    """A bot types shell commands at ~10 characters per second."""

    rate = 10.0
    SCRIPT = ("echo the quick brown fox jumps over the lazy dog\n", "date\n", "uptime\n",
              "echo 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\n", "help\n")

    def __init__(self, guest: BuiltinGuest) -> None:
        super().__init__(guest)
        self.text = "".join(self.SCRIPT)

    def step(self) -> None:
        self.guest.terminal.type_text(self.text[self.steps % len(self.text)])


class WindowDrag(Workload):
    """The device panel glides along a Lissajous path, 30 moves per second."""

    def step(self) -> None:
        g, win = self.guest, self.guest.panel
        w, h = g.size
        t = self.steps / self.rate
        cx, cy = (w - win.w) / 2, TITLE_H + (h - TITLE_H - win.h) / 2
        g.desktop.move(win, int(cx + cx * math.sin(t * 0.9)), int(cy + (cy - TITLE_H) * math.sin(t * 1.3)))


class Scroll(Workload):
    """Full-screen terminal output, 30 lines per second (the terminal is maximised)."""

    WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt".split()

    def __init__(self, guest: BuiltinGuest) -> None:
        super().__init__(guest)
        self.n = 0
        for _ in range(guest.terminal.rows):  # start full, so every line scrolls
            self.step()

    def step(self) -> None:
        n = self.n = self.n + 1
        words = " ".join(self.WORDS[(n * 7 + i) % len(self.WORDS)] for i in range(4 + n % 9))
        self.guest.terminal.write_line(f"{n:08d}  {words}")


class Video(Workload):
    """A moving photographic scene in a window (or full screen), new pixels every frame at 25 fps."""

    rate = 25.0
    MARGIN = 96

    def __init__(self, guest: BuiltinGuest, size: tuple[int, int] | None = None) -> None:
        super().__init__(guest)
        gw, gh = guest.size
        if size is None:  # full screen, above everything
            self.window = Window("", 0, 0, gw, gh, bg=0, movable=False, titled=False)
            self.window.always_on_top = True
        else:
            w, h = size
            self.window = Window("Video", max(0, (gw - w) // 2 - 1), max(TITLE_H, (gh - h) // 2 - TITLE_H),
                                 w + 2, h + TITLE_H + 1, bg=0)
        self.area = self.window.client
        self.window.exact_damage = False  # the picture moves every frame: every pixel changes, skip the diff
        m = self.MARGIN  # made here, before start(): a benchmark's clock should not include it
        self.texture = photo(self.area.width + 2 * m, self.area.height + 2 * m, guest.seed)
        guest.desktop.add(self.window, on_top=size is None)

    def step(self) -> None:
        a, m, t = self.area, self.MARGIN, self.steps
        ox, oy = _bounce(3 * t, 2 * m), _bounce(2 * t + m, 2 * m)  # x moves every frame: never a repeat
        frame = self.texture[oy:oy + a.height, ox:ox + a.width]
        self.window.buf[a.top:a.bottom, a.left:a.right] = frame
        self.window.invalidate(a)


class VideoFullScreen(Video):
    rate = 30.0  # the goal is >= 30 fps delivered: the source must offer that many

    def __init__(self, guest: BuiltinGuest) -> None:
        super().__init__(guest, None)


class VideoSmall(Video):
    def __init__(self, guest: BuiltinGuest) -> None:
        super().__init__(guest, (320, 240))


class Slideshow(VideoFullScreen):
    """A new photographic image every 2 seconds, full screen (two scenes, varied crops and mirroring)."""

    rate = 0.5

    def __init__(self, guest: BuiltinGuest) -> None:
        super().__init__(guest)
        m = self.MARGIN
        self.other = photo(self.area.width + 2 * m, self.area.height + 2 * m, guest.seed + 1)

    def step(self) -> None:
        a, m, n = self.area, self.MARGIN, self.steps
        rng = np.random.default_rng(n)
        ox, oy = int(rng.integers(0, 2 * m)), int(rng.integers(0, 2 * m))
        img = (self.texture, self.other)[n % 2][oy:oy + a.height, ox:ox + a.width]
        self.window.buf[a.top:a.bottom, a.left:a.right] = img[:, ::-1] if n // 2 % 2 else img
        self.window.invalidate(a)


class ManySmallFills(Workload):
    """About 10,000 small solid rectangles per second, reported as Fill ops (batched per frame).

    Same content as the X scene (spice.display.xworkload): 4..32 px rectangles in a fixed palette of
    64 colours (its 64 GCs), drawn from the same random sequence (seed 0); the X scene issues them colour by
    colour (one PolyFillRectangle per GC), this one in the random order they are drawn (harder: more
    overlaps between colours to keep in order).
    """

    rate = 30.0
    PER_SECOND = 10_000
    COLOURS = 64

    def __init__(self, guest: BuiltinGuest) -> None:
        super().__init__(guest)
        w, h = guest.size
        self.window = Window("", 0, TITLE_H, w, h - TITLE_H, bg=0x000000, movable=False, titled=False)
        guest.desktop.add(self.window)
        guest.desktop.raise_(self.window)
        self.rng = np.random.default_rng(guest.seed)
        self.palette = self.rng.integers(0, 1 << 24, self.COLOURS).astype(np.uint32) | np.uint32(0xFF000000)

    def step(self) -> None:
        n = int(self.PER_SECOND / self.rate)
        w, h = self.window.w, self.window.h
        rng = self.rng
        rects = np.empty((n, 4), np.int64)
        rects[:, 0] = rng.integers(0, w - 4, n)
        rects[:, 1] = rng.integers(0, h - 4, n)
        rects[:, 2] = np.minimum(w, rects[:, 0] + rng.integers(4, 33, n))
        rects[:, 3] = np.minimum(h, rects[:, 1] + rng.integers(4, 33, n))
        colors = self.palette[rng.integers(0, self.COLOURS, n)]
        self.guest.desktop.fill_window_many(self.window, rects, colors)


WORKLOADS: dict[str, type[Workload]] = {
    "idle-clock": IdleClock, "typing": Typing, "window-drag": WindowDrag, "scroll": Scroll,
    "video-320x240": VideoSmall, "video-1080p": VideoFullScreen, "many-small-fills": ManySmallFills,
    "photo-slideshow": Slideshow,
}
