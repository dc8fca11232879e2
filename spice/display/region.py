"""Dirty-region bookkeeping on a grid of square cells (bounded size whatever the damage history)."""

from __future__ import annotations

import numpy as np

from spice.guests.base import Rect

MAX_RECTS = 256  # beyond this, rectangles are merged into one span per cell row


def marked(mask: np.ndarray) -> bool:
    """``mask.any()`` for a 2-D bool cell mask, in one C call (argmax stops at the first marked cell;
    ``any()`` goes through a ufunc reduction: several times slower on a key's frame path)."""
    return bool(mask.argmax()) or bool(mask[0, 0])


class CellGrid:
    """Maps pixel rectangles of a ``width`` x ``height`` screen onto ``cell`` x ``cell`` cells."""

    def __init__(self, width: int, height: int, cell: int = 8) -> None:
        self.width, self.height, self.cell = width, height, cell
        self.shape = (-(-height // cell), -(-width // cell))
        self.screen = Rect(0, 0, width, height)

    def new_mask(self, value: bool = False) -> np.ndarray:
        return np.ones(self.shape, bool) if value else np.zeros(self.shape, bool)  # (np.full is Python)

    def clip(self, r: Rect) -> Rect:
        if r.left >= 0 and r.top >= 0 and r.right <= self.width and r.bottom <= self.height:
            return r  # already on the screen (the usual case): no new Rect
        return r.intersect(self.screen)

    def outer(self, r: Rect) -> tuple[slice, slice]:
        """Cells touched by ``r`` (assumed clipped to the screen)."""
        c = self.cell
        return slice(r.top // c, -(-r.bottom // c)), slice(r.left // c, -(-r.right // c))

    def inner(self, r: Rect) -> tuple[slice, slice]:
        """Cells entirely covered by ``r`` (cells cut by the screen edge count as covered there)."""
        c = self.cell
        bottom = self.shape[0] if r.bottom >= self.height else r.bottom // c
        right = self.shape[1] if r.right >= self.width else r.right // c
        top, left = -(-r.top // c), -(-r.left // c)
        return slice(top, max(top, bottom)), slice(left, max(left, right))

    def cell_rect(self, gy0: int, gy1: int, gx0: int, gx1: int) -> Rect:
        c = self.cell
        return Rect(gx0 * c, gy0 * c, min(gx1 * c, self.width), min(gy1 * c, self.height))

    def mark_translated(self, mask: np.ndarray, src: Rect, dx: int, dy: int, out: np.ndarray) -> None:
        """Mark in ``out`` the cells that the marked cells of ``mask`` within ``src`` land on when
        moved by ``(dx, dy)`` (``src`` moved must stay on the screen)."""
        ys, xs = self.outer(src)
        gy, gx = np.nonzero(mask[ys, xs])
        if not len(gy):
            return
        c = self.cell
        gy = gy + ys.start
        gx = gx + xs.start
        y0 = np.maximum(gy * c, src.top) + dy
        y1 = np.minimum(gy * c + c, src.bottom) + dy
        x0 = np.maximum(gx * c, src.left) + dx
        x1 = np.minimum(gx * c + c, src.right) + dx
        cy0, cy1 = y0 // c, (y1 - 1) // c
        cx0, cx1 = x0 // c, (x1 - 1) // c
        for yy in (cy0, cy1):
            for xx in (cx0, cx1):
                out[yy, xx] = True

    def rects(self, mask: np.ndarray) -> list[Rect]:
        """Cover the marked cells with rectangles (row runs merged vertically), clipped to the screen."""
        gw = self.shape[1]
        rows = np.flatnonzero(mask.any(axis=1))
        if not len(rows):
            return []
        r0, r1 = int(rows[0]), int(rows[-1]) + 1  # only the rows with marks (flatnonzero: 2-D nonzero is slow)
        padded = np.zeros((r1 - r0, gw + 2), np.int8)
        padded[:, 1:-1] = mask[r0:r1]
        d = padded[:, 1:] - padded[:, :-1]
        first = np.flatnonzero(d == 1)
        ys, starts = first // (gw + 1) + r0, first % (gw + 1)
        ends = np.flatnonzero(d == -1) % (gw + 1)
        if len(ys) > MAX_RECTS:  # one span per cell row
            rows = np.unique(ys)
            lo = np.minimum.reduceat(starts, np.searchsorted(ys, rows))
            hi = np.maximum.reduceat(ends, np.searchsorted(ys, rows))
            ys, starts, ends = rows, lo, hi
        out: list[Rect] = []
        open_: dict[tuple[int, int], list[int]] = {}
        for y, x0, x1 in zip(ys.tolist(), starts.tolist(), ends.tolist(), strict=True):
            key = (x0, x1)
            o = open_.get(key)
            if o is not None and o[1] == y:
                o[1] = y + 1
                continue
            if o is not None:
                out.append(self.cell_rect(o[0], o[1], x0, x1))
            open_[key] = [y, y + 1]
        for (x0, x1), (y0, y1) in open_.items():
            out.append(self.cell_rect(y0, y1, x0, x1))
        out.sort(key=lambda r: (r.top, r.left))
        return out
