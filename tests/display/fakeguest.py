"""A tiny guest for display tests: draws Damage / Fill / CopyRect frames on demand."""

from __future__ import annotations

import numpy as np

from spice.guests.base import CopyRect, Damage, DisplayOnlyGuest, Fill, Frame, Rect


class FakeGuest(DisplayOnlyGuest):
    def __init__(self, width: int = 96, height: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)
        self.fb = np.zeros((height, width, 4), np.uint8)
        self.fb[..., :3] = self.rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        self.serial = 0
        self._ops: list = []

    # drawing
    def rand_rect(self, max_w: int | None = None, max_h: int | None = None) -> Rect:
        h, w = self.fb.shape[:2]
        rw = int(self.rng.integers(1, (max_w or w) + 1))
        rh = int(self.rng.integers(1, (max_h or h) + 1))
        x = int(self.rng.integers(0, w - rw + 1))
        y = int(self.rng.integers(0, h - rh + 1))
        return Rect(x, y, x + rw, y + rh)

    def damage(self, r: Rect, kind: str = "noise", report: Rect | None = None) -> None:
        v = self.fb[r.top:r.bottom, r.left:r.right]
        if kind == "noise":
            v[..., :3] = self.rng.integers(0, 256, v[..., :3].shape, dtype=np.uint8)
        elif kind == "ui":
            colours = self.rng.integers(0, 256, (3, 3), dtype=np.uint8)
            v[..., :3] = colours[self.rng.integers(0, 3, v.shape[:2])]
        elif kind == "text":  # background with sparse "ink"
            bg, ink = self.rng.integers(0, 256, (2, 3), dtype=np.uint8)
            v[..., :3] = bg
            v[self.rng.random(v.shape[:2]) < 0.15, :3] = ink
        else:
            v[..., :3] = self.rng.integers(0, 256, 3, dtype=np.uint8)
        self._ops.append(Damage(report or r))

    def report(self, r: Rect) -> None:
        """Report damage without drawing (the caller changed ``fb`` itself)."""
        self._ops.append(Damage(r))

    def fill(self, r: Rect, color: int) -> None:
        self.fb[r.top:r.bottom, r.left:r.right, :3] = (color & 255, color >> 8 & 255, color >> 16 & 255)
        self._ops.append(Fill(r, color))

    def copy(self, src: Rect, dx: int, dy: int) -> None:
        block = self.fb[src.top:src.bottom, src.left:src.right].copy()
        self.fb[dy:dy + src.height, dx:dx + src.width] = block
        self._ops.append(CopyRect(src, dx, dy))

    def random_op(self) -> None:
        h, w = self.fb.shape[:2]
        k = int(self.rng.integers(0, 4))
        if k == 0:
            self.damage(self.rand_rect(w // 2, h // 2), str(self.rng.choice(["noise", "ui", "flat"])))
        elif k == 1:
            self.fill(self.rand_rect(), int(self.rng.integers(0, 1 << 24)) | 0xFF000000)
        else:
            src = self.rand_rect(w - 1, h - 1)
            dx = int(self.rng.integers(0, w - src.width + 1))
            dy = int(self.rng.integers(0, h - src.height + 1))
            self.copy(src, dx, dy)

    def finish(self) -> Frame:
        self.serial += 1
        frame = Frame(self._ops, self.serial, 0.0)
        self._ops = []
        self._emit_frame(frame)
        return frame

    def resize(self, width: int, height: int) -> None:
        self.fb = np.zeros((height, width, 4), np.uint8)
        self.fb[..., :3] = self.rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for lst in list(self._listeners):
            if lst.on_resize:
                lst.on_resize(width, height)
