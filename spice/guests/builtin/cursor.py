"""Pointer shapes: arrow, I-beam and move, drawn 4x oversampled with Pillow for soft alpha edges."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from ..base import CursorShape

SCALE = 4

# polygons in 1x pixel units (hot spot, outline)
_ARROW = [(0.5, 0.5), (0.5, 16), (4.5, 12.5), (7.5, 18.5), (10, 17.5), (7, 11.5), (12, 11.5)]
_IBEAM = [(1, 0.5), (4, 0.5), (4.5, 1.5), (5, 0.5), (8, 0.5), (8, 2), (5.5, 2), (5.5, 15), (8, 15),
          (8, 16.5), (5, 16.5), (4.5, 15.5), (4, 16.5), (1, 16.5), (1, 15), (3.5, 15), (3.5, 2), (1, 2)]


def _move_polygon() -> list[tuple[float, float]]:
    """A four-way arrow around (10, 10)."""
    c, s, h, t = 10.0, 1.5, 4.0, 3.5  # centre, shaft half-width, head half-width, tip length
    q = [(c - s, c - s), (c - s, 2 + t), (c - h, 2 + t), (c, 1.5), (c + h, 2 + t), (c + s, 2 + t)]
    pts: list[tuple[float, float]] = []
    for k in range(4):  # rotate the top quarter by 0/90/180/270 degrees
        for x, y in q:
            dx, dy = x - c, y - c
            for _ in range(k):
                dx, dy = -dy, dx
            pts.append((c + dx, c + dy))
    return pts


def _render(poly: list[tuple[float, float]], w: int, h: int, hot: tuple[int, int], serial: int) -> CursorShape:
    big = Image.new("RGBA", (w * SCALE, h * SCALE), (0, 0, 0, 0))
    d = ImageDraw.Draw(big)
    d.polygon([(x * SCALE, y * SCALE) for x, y in poly], fill=(255, 255, 255, 255),
              outline=(0, 0, 0, 255), width=int(SCALE * 1.25))
    rgba = np.asarray(big.resize((w, h), Image.Resampling.BOX))
    bgra = np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]])
    bgra.flags.writeable = False
    return CursorShape(bgra, hot[0], hot[1], serial)


@lru_cache(maxsize=1)
def shapes() -> dict[str, CursorShape]:
    """The guest's cursors by name: ``arrow``, ``ibeam``, ``move``."""
    return {"arrow": _render(_ARROW, 13, 20, (0, 0), 1),
            "ibeam": _render(_IBEAM, 9, 17, (4, 8), 2),
            "move": _render(_move_polygon(), 21, 21, (10, 10), 3)}
