"""A window of the built-in desktop: its own pixel buffer, a title bar, and dirty regions."""

from __future__ import annotations

import numpy as np

from ..base import Rect
from .font import GlyphCache, bgrx, glyphs
from .surface import RowSlider, copy_block

TITLE_H = 24
BORDER = 0x30343C
TITLE_BG = 0x3C4656
TITLE_FG = 0xF0F0F0


class Window:
    """Pixels in ``buf`` (window-local coordinates); the desktop composites them at ``(x, y)``."""

    def __init__(self, title: str, x: int, y: int, w: int, h: int, bg: int = 0xECECEC,
                 movable: bool = True, titled: bool = True) -> None:
        self.title = title
        self.x, self.y = x, y
        self.bg = bg
        self.movable = movable
        self.titled = titled
        self.font: GlyphCache = glyphs()
        self.buf = np.zeros((h, w, 4), np.uint8)
        self.dirty: list[Rect] = []
        self.desktop = None  # set by Desktop.add
        self._rows = RowSlider()  # ``buf`` slides through a taller array when a tall area scrolls
        self.draw_frame()

    # -- geometry
    @property
    def w(self) -> int:
        return self.buf.shape[1]

    @property
    def h(self) -> int:
        return self.buf.shape[0]

    @property
    def rect(self) -> Rect:
        """Screen rectangle."""
        return Rect(self.x, self.y, self.x + self.w, self.y + self.h)

    def covers(self, r: Rect) -> bool:
        """True if the window's screen rectangle contains ``r`` (no Rect made: compositing hot path)."""
        x, y = self.x, self.y
        h, w = self.buf.shape[:2]
        return x <= r.left and y <= r.top and r.right <= x + w and r.bottom <= y + h

    def touches(self, r: Rect) -> bool:
        """True if the window's screen rectangle shares a pixel with ``r``."""
        x, y = self.x, self.y
        h, w = self.buf.shape[:2]
        return x < r.right and r.left < x + w and y < r.bottom and r.top < y + h and r.left < r.right \
            and r.top < r.bottom and w > 0 and h > 0

    @property
    def title_rect(self) -> Rect:
        """Screen rectangle of the title bar (empty if untitled)."""
        return Rect(self.x, self.y, self.x + self.w, self.y + (TITLE_H if self.titled else 0))

    @property
    def client(self) -> Rect:
        """Window-local rectangle below the title bar, inside the border."""
        top = TITLE_H if self.titled else 0
        b = 1 if self.titled else 0
        return Rect(b, top, self.w - b, self.h - b)

    def scroll_area(self, area: Rect, dy: int) -> None:
        """``buf[area + (0, dy)] = buf[area minus the vacated rows]``; the vacated rows keep their pixels.

        A tall area moves by sliding ``buf`` through a taller backing array (see :class:`RowSlider`)."""
        src = Rect(area.left, area.top + max(0, -dy), area.right, area.bottom - max(0, dy))
        if dy == 0 or src.is_empty():
            return
        slid = self._rows.move(self.buf, area, dy)
        if slid is None:
            copy_block(self.buf, src, 0, dy)
        else:
            self.buf = slid

    def resize(self, w: int, h: int) -> None:
        self.buf = np.zeros((h, w, 4), np.uint8)
        self.draw_frame()

    # -- drawing into the buffer
    def fill_local(self, r: Rect, rgb: int) -> None:
        r = r.intersect(Rect(0, 0, self.w, self.h))
        if not r.is_empty():
            self.buf[r.top:r.bottom, r.left:r.right] = bgrx(rgb)
            self.invalidate(r)

    def blit_local(self, x: int, y: int, pixels: np.ndarray) -> None:
        h, w = pixels.shape[:2]
        r = Rect(x, y, x + w, y + h).intersect(Rect(0, 0, self.w, self.h))
        if not r.is_empty():
            self.buf[r.top:r.bottom, r.left:r.right] = pixels[r.top - y:r.bottom - y, r.left - x:r.right - x]
            self.invalidate(r)

    def text(self, x: int, y: int, s: str, fg: int, bg: int) -> None:
        self.blit_local(x, y, self.font.render(s, fg, bg))

    def invalidate(self, r: Rect | None = None) -> None:
        self.dirty.append(r or Rect(0, 0, self.w, self.h))
        if self.desktop is not None:
            self.desktop.schedule()

    def draw_frame(self) -> None:
        """Border, title bar and empty client area."""
        self.buf[:] = bgrx(BORDER if self.titled else self.bg)
        c = self.client
        self.buf[c.top:c.bottom, c.left:c.right] = bgrx(self.bg)
        if self.titled:
            self.buf[1:TITLE_H, 1:self.w - 1] = bgrx(TITLE_BG)
            ty = (TITLE_H - self.font.cell_h) // 2
            img = self.font.render(self.title[:max(0, (self.w - 16) // self.font.cell_w)], TITLE_FG, TITLE_BG)
            self.buf[ty:ty + img.shape[0], 8:8 + img.shape[1]] = img
        self.invalidate()

    # -- input hooks (window-local coordinates)
    def on_press(self, x: int, y: int, button: int) -> None:
        """A button went down inside the client area."""

    def on_release(self, x: int, y: int, button: int) -> None:
        """A button came up (the press happened in this window)."""

    def cursor_kind(self, x: int, y: int) -> str:
        return "arrow"

    def sync(self) -> None:
        """Called at the start of each frame's rendering: bring the buffer up to date."""
