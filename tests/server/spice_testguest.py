"""A tiny guest for server tests: a numpy framebuffer we draw into, with recorded input."""

from __future__ import annotations

import time

import numpy as np

from spice.guests.base import CopyRect, CursorShape, CursorState, Damage, Fill, Frame, Guest, Rect


class PaintGuest(Guest):
    name = "paint"
    uuid = bytes(range(16))

    def __init__(self, width: int = 320, height: int = 200) -> None:
        super().__init__()
        rng = np.random.default_rng(1)
        self.fb = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        self.fb[..., 3] = 0
        self.serial = 0
        self.keys: list[tuple[int, bool]] = []
        self.pointer: list[tuple] = []
        self._leds = 0
        pix = np.zeros((16, 16, 4), np.uint8)
        pix[..., 2] = 255
        pix[..., 3] = np.arange(16, dtype=np.uint8)[None, :] * 16 + 15
        self._cursor = CursorState(5, 6, True, CursorShape(pix, 1, 2, 1))

    @property
    def framebuffer(self) -> np.ndarray:
        return self.fb

    @property
    def cursor(self) -> CursorState:
        return self._cursor

    @property
    def leds(self) -> int:
        return self._leds

    def fill(self, rect: Rect, bgrx: int) -> None:
        self.fb[rect.top:rect.bottom, rect.left:rect.right] = np.frombuffer(bgrx.to_bytes(4, "little"), np.uint8)
        self._frame([Fill(rect, bgrx)])

    def noise(self, rect: Rect, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.fb[rect.top:rect.bottom, rect.left:rect.right, :3] = rng.integers(
            0, 256, (rect.height, rect.width, 3), dtype=np.uint8)
        self._frame([Damage(rect)])

    def copy(self, src: Rect, dx: int, dy: int) -> None:
        """Move the pixels of ``src`` to top-left (dx, dy), like a scroll."""
        self.fb[dy:dy + src.height, dx:dx + src.width] = self.fb[src.top:src.bottom, src.left:src.right].copy()
        self._frame([CopyRect(src, dx, dy)])

    def resize(self, width: int, height: int) -> None:
        fb = np.zeros((height, width, 4), np.uint8)
        fb[..., 1] = 200
        self.fb = fb
        for lst in list(self._listeners):
            if lst.on_resize:
                lst.on_resize(width, height)
        self._frame([Damage(Rect(0, 0, width, height))])

    def stripes(self, rect: Rect) -> None:
        """A compressible pattern (vertical colour stripes)."""
        xs = np.arange(rect.left, rect.right, dtype=np.uint16)
        row = np.stack([(xs * 3) % 256, (xs // 7) % 256, (xs * 11) % 256, np.zeros_like(xs)], -1).astype(np.uint8)
        self.fb[rect.top:rect.bottom, rect.left:rect.right] = row[None]
        self._frame([Damage(rect)])

    def _frame(self, ops) -> None:
        self.serial += 1
        self._emit_frame(Frame(ops, self.serial, time.monotonic()))

    @property
    def frame_serial(self) -> int:
        return self.serial

    def move_cursor(self, x: int, y: int) -> None:
        self._cursor = CursorState(x, y, self._cursor.visible, self._cursor.shape)
        self._emit_cursor_move(x, y)

    def set_leds(self, leds: int) -> None:
        self._leds = leds
        self._emit_leds(leds)

    def key_event(self, scancode: int, pressed: bool) -> None:
        self.keys.append((scancode, pressed))
        if pressed and scancode == 0x3A:
            self.set_leds(self._leds ^ 4)

    def pointer_motion(self, dx: int, dy: int, buttons: int) -> None:
        self.pointer.append(("motion", dx, dy, buttons))

    def pointer_position(self, x: int, y: int, buttons: int) -> None:
        self.pointer.append(("position", x, y, buttons))

    def pointer_button(self, button: int, pressed: bool, buttons: int) -> None:
        self.pointer.append(("button", button, pressed, buttons))
