"""A synthetic guest with benchmark scenes, for when the built-in guest is not wanted or absent.

Scenes (``workload``): ``idle-clock`` (a clock label redrawn once a second), ``typing`` (20 glyphs/s
in a terminal, scrolling by CopyRect + Fill at the bottom), ``window-drag`` (a 640x400 window moved
every frame: CopyRect + exposed background as Damage), ``full-redraw`` (the whole screen replaced
with new UI-like content every frame), ``video`` (a 320x240 noisy moving picture at 25 fps).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from spice.guests.base import CopyRect, Damage, DisplayOnlyGuest, Fill, Frame, Rect

WORKLOADS = ("idle-clock", "typing", "window-drag", "full-redraw", "video")
RATES = {"idle-clock": 1.0, "typing": 20.0, "window-drag": 30.0, "full-redraw": 10.0, "video": 25.0}


class SyntheticGuest(DisplayOnlyGuest):
    name = "synthetic"

    def __init__(self, width: int = 1024, height: int = 768, workload: str = "idle-clock", seed: int = 0) -> None:
        super().__init__()
        if workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
        self.workload = workload
        self.rng = np.random.default_rng(seed)
        self.w, self.h = width, height
        y = np.linspace(40, 120, height, dtype=np.float32)[:, None]
        x = np.linspace(60, 160, width, dtype=np.float32)[None, :]
        self.background = np.zeros((height, width, 4), np.uint8)
        self.background[..., 0] = (y + 0 * x).astype(np.uint8)
        self.background[..., 1] = ((y + x) / 2).astype(np.uint8)
        self.background[..., 2] = (x + 0 * y).astype(np.uint8)
        self.fb = self.background.copy()
        self.glyphs = (self.rng.random((64, 18, 9)) < 0.25)
        self.window = self._ui_picture(400, 640)
        self.win_x, self.win_y, self.dx, self.dy = 40, 40, 8, 4
        self.term = Rect(16, 40, min(width - 16, 16 + 80 * 9), min(height - 16, 40 + 30 * 18))
        self.fb[self.term.top:self.term.bottom, self.term.left:self.term.right] = (30, 30, 30, 0)
        self.col = self.row = 0
        self.tick = 0
        self.serial = 0
        self._task: asyncio.Task | None = None
        if workload == "window-drag":
            self._blit_window()

    # -- Guest interface
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        period = 1.0 / RATES[self.workload]
        nxt = time.monotonic()
        while True:
            self.step()
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    # -- scenes
    def _ui_picture(self, h: int, w: int) -> np.ndarray:
        pic = np.full((h, w, 4), 235, np.uint8)
        pic[:24] = (160, 90, 40, 0)
        for y in range(40, h - 20, 18):  # text-like lines
            n = int(self.rng.integers(10, (w - 40) // 9))
            for k in range(n):
                g = self.glyphs[int(self.rng.integers(0, 64))]
                pic[y:y + 18, 20 + 9 * k:29 + 9 * k][g] = (20, 20, 20, 0)
        return pic

    def _blit_window(self) -> Rect:
        h, w = self.window.shape[:2]
        r = Rect(self.win_x, self.win_y, self.win_x + w, self.win_y + h).intersect(Rect(0, 0, self.w, self.h))
        self.fb[r.top:r.bottom, r.left:r.right] = self.window[:r.height, :r.width]
        return r

    def step(self) -> Frame:
        ops = getattr(self, "_step_" + self.workload.replace("-", "_"))()
        self.serial += 1
        frame = Frame(ops, self.serial, time.monotonic())
        self._emit_frame(frame)
        return frame

    def _step_idle_clock(self) -> list:
        r = Rect(self.w - 200, 8, self.w - 200 + 8 * 9, 26)
        text = time.strftime("%H:%M:%S", time.localtime(1_700_000_000 + self.tick))
        self.tick += 1
        self.fb[r.top:r.bottom, r.left:r.right] = (200, 200, 200, 0)
        for k, ch in enumerate(text):
            self.fb[r.top:r.bottom, r.left + 9 * k:r.left + 9 * k + 9][self.glyphs[ord(ch) % 64]] = (0, 0, 0, 0)
        return [Damage(r)]

    def _step_typing(self) -> list:
        t = self.term
        cols, rows = t.width // 9, t.height // 18
        ops: list = []
        if self.col >= min(cols, 60):
            self.col = 0
            self.row += 1
            if self.row >= rows:  # scroll up one line
                self.row = rows - 1
                src = Rect(t.left, t.top + 18, t.right, t.top + rows * 18)
                self.fb[t.top:t.top + (rows - 1) * 18, t.left:t.right] = self.fb[src.top:src.bottom, t.left:t.right].copy()
                ops.append(CopyRect(src, t.left, t.top))
                last = Rect(t.left, t.top + (rows - 1) * 18, t.right, t.top + rows * 18)
                self.fb[last.top:last.bottom, last.left:last.right] = (30, 30, 30, 0)
                ops.append(Fill(last, 0x1E1E1E))
        x, y = t.left + 9 * self.col, t.top + 18 * self.row
        cell = self.fb[y:y + 18, x:x + 9]
        cell[:] = (30, 30, 30, 0)
        cell[self.glyphs[int(self.rng.integers(0, 64))]] = (220, 220, 220, 0)
        ops.append(Damage(Rect(x, y, x + 9, y + 18)))
        self.col += 1
        return ops

    def _step_window_drag(self) -> list:
        h, w = self.window.shape[:2]
        old = Rect(self.win_x, self.win_y, self.win_x + w, self.win_y + h).intersect(Rect(0, 0, self.w, self.h))
        if not 0 <= self.win_x + self.dx <= self.w - w:
            self.dx = -self.dx
        if not 0 <= self.win_y + self.dy <= self.h - h:
            self.dy = -self.dy
        self.win_x += self.dx
        self.win_y += self.dy
        self.fb[old.top:old.bottom, old.left:old.right] = self.background[old.top:old.bottom, old.left:old.right]
        new = self._blit_window()
        ops: list = [CopyRect(old, new.left, new.top)]
        # exposed background: old minus new, as up to two strips
        if self.dx > 0:
            ops.append(Damage(Rect(old.left, old.top, new.left, old.bottom)))
        else:
            ops.append(Damage(Rect(new.right, old.top, old.right, old.bottom)))
        if self.dy > 0:
            ops.append(Damage(Rect(old.left, old.top, old.right, new.top)))
        else:
            ops.append(Damage(Rect(old.left, new.bottom, old.right, old.bottom)))
        return [op for op in ops if not isinstance(op, Damage) or not op.rect.is_empty()]

    def _step_full_redraw(self) -> list:
        shift = (self.tick * 37) % self.h
        self.tick += 1
        self.fb[:] = np.roll(self.background, shift, axis=0)
        pic = self.window
        for k in range(3):
            x = (self.tick * 50 + k * 500) % max(1, self.w - pic.shape[1])
            y = (k * 300) % max(1, self.h - pic.shape[0])
            self.fb[y:y + pic.shape[0], x:x + pic.shape[1]] = pic
        return [Damage(Rect(0, 0, self.w, self.h))]

    def _step_video(self) -> list:
        r = Rect(100, 100, 420, 340).intersect(Rect(0, 0, self.w, self.h))
        yy, xx = np.mgrid[0:r.height, 0:r.width]
        t = self.tick
        self.tick += 1
        v = self.fb[r.top:r.bottom, r.left:r.right]
        v[..., 0] = ((xx + 3 * t) % 256)
        v[..., 1] = ((yy * 2 + t) % 256)
        v[..., 2] = ((xx + yy + 5 * t) % 256)
        v[..., :3] += self.rng.integers(0, 16, v[..., :3].shape, dtype=np.uint8)
        return [Damage(r)]
