"""Monospace text for the built-in guest: glyph cells rendered once with Pillow, cached as numpy."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path(__file__).with_name("fonts") / "DejaVuSansMono.ttf"


def bgrx(rgb: int) -> np.ndarray:
    """``0xRRGGBB`` -> a ``(4,)`` uint8 B, G, R, X pixel (X = 0xff)."""
    return np.array([rgb & 0xFF, (rgb >> 8) & 0xFF, (rgb >> 16) & 0xFF, 0xFF], np.uint8)


def fill_value(rgb: int) -> int:
    """``0xRRGGBB`` -> the little-endian u32 a :class:`Fill` op carries for that pixel."""
    return 0xFF000000 | (rgb & 0xFFFFFF)


class GlyphCache:
    """Renders text in fixed ``cell_w`` x ``cell_h`` cells; each (char, fg, bg) is drawn once."""

    def __init__(self, size: int = 15, path: Path = FONT_PATH) -> None:
        self.font = ImageFont.truetype(str(path), size)
        ascent, descent = self.font.getmetrics()
        self.cell_w = max(1, int(self.font.getlength("M") + 0.25))
        self.cell_h = ascent + descent
        self._masks: dict[str, np.ndarray] = {}
        self._cells: dict[tuple[str, int, int], np.ndarray] = {}

    def mask(self, ch: str) -> np.ndarray:
        """Coverage ``(cell_h, cell_w)`` uint8 of one character."""
        m = self._masks.get(ch)
        if m is None:
            img = Image.new("L", (self.cell_w, self.cell_h), 0)
            if ch.strip():
                ImageDraw.Draw(img).text((0, 0), ch, fill=255, font=self.font)
            m = self._masks[ch] = np.asarray(img, np.uint8)
        return m

    def cell(self, ch: str, fg: int, bg: int) -> np.ndarray:
        """BGRX ``(cell_h, cell_w, 4)`` of ``ch`` in ``fg`` on ``bg`` (0xRRGGBB)."""
        key = (ch, fg, bg)
        c = self._cells.get(key)
        if c is None:
            a = self.mask(ch).astype(np.uint16)[:, :, None]
            f, b = bgrx(fg).astype(np.uint16), bgrx(bg).astype(np.uint16)
            c = ((f * a + b * (255 - a) + 127) // 255).astype(np.uint8)
            c.flags.writeable = False
            if len(self._cells) > 20000:
                self._cells.clear()
            self._cells[key] = c
        return c

    def render(self, text: str, fg: int, bg: int) -> np.ndarray:
        """BGRX ``(cell_h, len(text) * cell_w, 4)`` image of one line of text."""
        if not text:
            return np.zeros((self.cell_h, 0, 4), np.uint8)
        return np.concatenate([self.cell(ch, fg, bg) for ch in text], axis=1)

    def text_width(self, text: str) -> int:
        return len(text) * self.cell_w


@lru_cache(maxsize=4)
def glyphs(size: int = 15) -> GlyphCache:
    """A shared cache per font size."""
    return GlyphCache(size)
