"""Batching a frame's solid fills: one DRAW_FILL per colour group, its rectangles sent as a RECTS clip.

A DRAW_FILL costs 6 (mini header) + 41 bytes with clip NONE; with a RECTS clip it costs 6 + 45 + 16
per rectangle (spice.proto ``Clip``: ``u8 type``, ``u32 num_rects``, then the Rects, inline).  A group
of two or more same-coloured fills is therefore cheaper as one command whose ``box`` is the group's
bounding box and whose clip lists its rectangles; a lone fill stays a plain DRAW_FILL.

Paint order: groups are drawn in order; a fill joins the newest group of its colour only if it does
not overlap a fill of another colour in a later group (which it would otherwise jump over), else it
opens a new group.  Fills entirely covered by one later fill of the same run are dropped.  A run whose
rectangles overlap a lot (more candidate pairs than :data:`PAIR_BUDGET`) is halved first: cost and
memory stay bounded whatever the guest draws.

spice-html5 fills the whole box of a DRAW_FILL whatever its clip: its clients get one plain DRAW_FILL
per fill instead (:attr:`FillRun.plain`).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from spice.display.commands import DrawFill
from spice.display.region import CellGrid
from spice.guests.base import Rect

#: candidate pairs (rectangles sharing rows) examined at once; ~3,000 for 333 fills of 4..32 px
PAIR_BUDGET = 50_000


def overlapping_pairs(rects: np.ndarray, budget: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """All pairs ``i < j`` of rectangles that overlap (sweep over the tops: cost ~ the pairs that
    share rows, not n squared); None if more than ``budget`` pairs share rows."""
    n = len(rects)
    left, top, right, bottom = rects.T
    by_top = np.argsort(top, kind="stable")
    tops = top[by_top]
    # in top order, b > a shares rows with a iff top[b] < bottom[a]
    end = np.searchsorted(tops, bottom[by_top], side="left")
    counts = end - np.arange(1, n + 1)
    total = int(counts.sum())
    if budget is not None and total > budget:
        return None
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a = np.repeat(np.arange(n), counts)
    b = a + 1 + np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    i, j = by_top[a], by_top[b]
    hit = (left[i] < right[j]) & (left[j] < right[i])
    i, j = i[hit], j[hit]
    return np.minimum(i, j), np.maximum(i, j)


def _group_ids(rects: np.ndarray, colors: np.ndarray) -> tuple[list[int], int] | None:
    """Group id of each fill (groups numbered in draw order, -1: dropped) and the number of groups;
    None if the rectangles overlap too much (see :data:`PAIR_BUDGET`)."""
    n = len(rects)
    pairs = overlapping_pairs(rects, PAIR_BUDGET)
    if pairs is None:
        return None
    ii, jj = pairs
    alive = np.ones(n, bool)
    if len(ii):
        left, top, right, bottom = rects.T
        inside = ((left[jj] <= left[ii]) & (top[jj] <= top[ii]) & (right[jj] >= right[ii])
                  & (bottom[jj] >= bottom[ii]))
        alive[ii[inside]] = False  # hidden by a later fill
        keep = alive[ii] & alive[jj] & (colors[ii] != colors[jj])
        ii, jj = ii[keep], jj[keep]
    # the earlier fills of another colour each fill overlaps (usually none)
    preds: dict[int, list[int]] = {}
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        preds.setdefault(j, []).append(i)
    group = [-1] * n
    newest: dict[int, int] = {}  # colour -> its newest group
    count = 0
    for j, (c, live) in enumerate(zip(colors.tolist(), alive.tolist(), strict=True)):
        if not live:
            continue
        g = newest.get(c)
        before = preds.get(j)
        if g is None or (before is not None and max(group[i] for i in before) > g):
            g = newest[c] = count
            count += 1
        group[j] = g
    return group, count


def group_fills(rects: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kept fills ordered group by group (draw order), and each group's size.

    ``rects`` is ``(n, 4)`` left, top, right, bottom (non-empty); ``colors`` ``(n,)``.
    """
    found = _group_ids(rects, colors)
    if found is None:  # too many overlaps: the halves one after the other
        half = len(rects) // 2
        first, first_sizes = group_fills(rects[:half], colors[:half])
        second, second_sizes = group_fills(rects[half:], colors[half:])
        return np.concatenate((first, second + half)), np.concatenate((first_sizes, second_sizes))
    ids, count = found
    group = np.array(ids, np.int64)
    order = np.argsort(group, kind="stable")
    order = order[group[order] >= 0]
    return order, np.bincount(group[order], minlength=count)


def batch_fills(rects: np.ndarray, colors: np.ndarray) -> list[DrawFill]:
    """Draw commands equivalent to filling ``rects`` with ``colors`` (0x..RRGGBB) in order.

    ``rects`` ``(n, 4)`` left, top, right, bottom, each non-empty; groups of one stay plain fills.
    """
    rects = np.asarray(rects, np.int64).reshape(-1, 4)
    colors = np.asarray(colors, np.int64).reshape(-1) & 0xFFFFFF
    if len(rects) == 0:
        return []
    order, sizes = group_fills(rects, colors)
    starts = np.cumsum(sizes) - sizes
    r = rects[order]
    lo = np.minimum.reduceat(r[:, :2], starts, axis=0).tolist()
    hi = np.maximum.reduceat(r[:, 2:], starts, axis=0).tolist()
    wire = r[:, [1, 0, 3, 2]].astype("<i4").tobytes()  # SpiceRect: top, left, bottom, right
    out: list[DrawFill] = []
    for (x0, y0), (x1, y1), color, size, start in zip(lo, hi, colors[order[starts]].tolist(), sizes.tolist(),
                                                       starts.tolist(), strict=True):
        out.append(DrawFill(Rect(x0, y0, x1, y1), color, wire[16 * start:16 * (start + size)] if size > 1 else b""))
    return out


def cell_masks(grid: CellGrid, rects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the cells ``rects`` (clipped to the screen) touch, and of those one of them covers
    entirely (as :meth:`CellGrid.outer` / :meth:`CellGrid.inner`, for all rectangles at once)."""
    c = grid.cell
    gh, gw = grid.shape
    left, top, right, bottom = rects.T
    outer = _paint(gh, gw, top // c, -(-bottom // c), left // c, -(-right // c))
    y1 = np.where(bottom >= grid.height, gh, bottom // c)
    x1 = np.where(right >= grid.width, gw, right // c)
    y0, x0 = -(-top // c), -(-left // c)
    ok = (y1 > y0) & (x1 > x0)
    inner = _paint(gh, gw, y0[ok], y1[ok], x0[ok], x1[ok])
    return outer, inner


def _paint(gh: int, gw: int, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Boolean ``(gh, gw)`` mask of the union of cell ranges ``[y0, y1) x [x0, x1)`` (a 2-D prefix sum;
    a few ranges are painted by slicing, cheaper than the sums over the whole grid)."""
    if len(y0) <= 8:
        out = np.zeros((gh, gw), bool)
        for a, b, c, d in zip(y0.tolist(), y1.tolist(), x0.tolist(), x1.tolist(), strict=True):
            out[a:b, c:d] = True
        return out
    w = gw + 1
    idx = np.concatenate((y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1))
    ones = np.ones(len(y0), np.int32)
    weights = np.concatenate((ones, -ones, -ones, ones))
    diff = np.bincount(idx, weights, minlength=(gh + 1) * w).reshape(gh + 1, w)
    return diff.cumsum(0).cumsum(1)[:gh, :gw] > 0


class FillRun:
    """A frame's run of consecutive fills (clipped to the screen, non-empty), prepared once for every
    client: the batched commands, the plain ones, and the cells the run covers / touches."""

    def __init__(self, grid: CellGrid, rects: np.ndarray, colors: np.ndarray) -> None:
        self.rects = rects
        self.colors = colors
        self.touched, covered = cell_masks(grid, rects)
        self.uncovered = ~covered  # cells no single fill covers entirely

    @cached_property
    def batched(self) -> list[DrawFill]:
        """Grouped commands (RECTS clips): for clients that honour a DRAW_FILL's clip."""
        return batch_fills(self.rects, self.colors)

    @cached_property
    def plain(self) -> list[DrawFill]:
        """One DRAW_FILL per fill, in order (clip NONE)."""
        return [DrawFill(Rect(x0, y0, x1, y1), c & 0xFFFFFF)
                for (x0, y0, x1, y1), c in zip(self.rects.tolist(), self.colors.tolist(), strict=True)]
