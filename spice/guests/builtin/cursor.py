"""Pointer shapes: arrow, I-beam and move, drawn 4x oversampled with Pillow for soft alpha edges."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..base import CursorShape

SCALE = 4

# polygons in 1x pixel units; each shape is white with a 1-pixel black outline
_ARROW = [(0.5, 0.5), (0.5, 16.5), (4.5, 12.8), (7.3, 19.0), (10.0, 17.8), (7.3, 11.8), (12.5, 11.8)]
_IBEAM = [(0.5, 0.5), (3.5, 0.5), (4.5, 1.5), (5.5, 0.5), (8.5, 0.5), (8.5, 3.5), (6, 3.5), (6, 14.5),
          (8.5, 14.5), (8.5, 17.5), (5.5, 17.5), (4.5, 16.5), (3.5, 17.5), (0.5, 17.5), (0.5, 14.5),
          (3, 14.5), (3, 3.5), (0.5, 3.5)]


def _move_polygon() -> list[tuple[float, float]]:
    """A four-way arrow centred at (11.5, 11.5)."""
    c, s, h, base = 11.5, 1.5, 4.0, 5.5  # centre, shaft half-width, head half-width, head base
    q = [(c - s, c - s), (c - s, base), (c - h, base), (c, 0.5), (c + h, base), (c + s, base)]
    pts: list[tuple[float, float]] = []
    for k in range(4):  # the top quarter rotated by 0/90/180/270 degrees
        for x, y in q:
            dx, dy = x - c, y - c
            for _ in range(k):
                dx, dy = -dy, dx
            pts.append((c + dx, c + dy))
    return pts


def _mask(poly: list[tuple[float, float]], w: int, h: int) -> np.ndarray:
    img = Image.new("L", (w * SCALE, h * SCALE), 0)
    ImageDraw.Draw(img).polygon([(x * SCALE, y * SCALE) for x, y in poly], fill=255)
    return np.asarray(img, np.float32) / 255.0


def _render(poly: list[tuple[float, float]], w: int, h: int, hot: tuple[int, int], serial: int) -> CursorShape:
    """Oversampled coverage -> straight-alpha BGRA: white inside, black 1-pixel outline, soft edges."""
    outer = _mask(poly, w, h)
    inner = np.asarray(Image.fromarray((outer * 255).astype(np.uint8)).filter(
        ImageFilter.MinFilter(2 * SCALE + 1)), np.float32) / 255.0

    def down(a: np.ndarray) -> np.ndarray:
        return a.reshape(h, SCALE, w, SCALE).mean(axis=(1, 3))

    alpha, white = down(outer), down(inner)
    grey = np.where(alpha > 0, 255.0 * white / np.maximum(alpha, 1e-6), 0.0)
    bgra = np.empty((h, w, 4), np.uint8)
    bgra[:, :, :3] = np.clip(grey + 0.5, 0, 255)[:, :, None]
    bgra[:, :, 3] = np.clip(alpha * 255.0 + 0.5, 0, 255)
    bgra.flags.writeable = False
    return CursorShape(bgra, hot[0], hot[1], serial)


@lru_cache(maxsize=1)
def shapes() -> dict[str, CursorShape]:
    """The guest's cursors by name: ``arrow``, ``ibeam``, ``move``."""
    return {"arrow": _render(_ARROW, 13, 20, (0, 0), 1),
            "ibeam": _render(_IBEAM, 9, 18, (4, 9), 2),
            "move": _render(_move_polygon(), 23, 23, (11, 11), 3)}
