"""Video-region detection: screen areas that change on most frames become MJPEG streams."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spice.display.region import CellGrid, marked
from spice.guests.base import Rect

MAX_STREAMS = 64  # SPICE stream ids are 0..63


@dataclass
class VideoStream:
    id: int
    rect: Rect  # cell-aligned (clipped to the screen)
    cells: tuple[slice, slice]
    frame_serial: int  # last frame that changed the area
    frame_time: float
    last_change: float


def looks_photographic(px: np.ndarray) -> bool:
    """True for content with few flat runs (video, photos) rather than text or UI."""
    v = px[::2].view(np.uint32)[..., 0] & np.uint32(0x00FFFFFF)
    if v.shape[1] < 2:
        return False
    return float((v[:, 1:] == v[:, :-1]).mean()) < 0.5


def overlap(a: Rect, b: Rect) -> float:
    """Intersection over union of two rectangles."""
    i = a.intersect(b)
    inter = i.area if not i.is_empty() else 0
    union = a.area + b.area - inter
    return inter / union if union else 0.0


class VideoDetector:
    """Per-cell change counters: a cell is hot after ``min_hits`` changes less than ``interval`` apart."""

    def __init__(self, grid: CellGrid, *, min_hits: int = 10, interval: float = 0.25,
                 min_size: int = 64) -> None:
        self.grid = grid
        self.min_hits, self.interval, self.min_size = min_hits, interval, min_size
        self.hits = np.zeros(grid.shape, np.uint16)
        self.last = np.full(grid.shape, -1e9)
        self._newest = -1e9  # latest update that changed cells

    def update(self, changed: np.ndarray, now: float) -> Rect | None:
        """Account one frame's changed cells; return the bounding box of the hot cells, if big enough."""
        if now - self._newest >= self.interval and self.min_hits > 1:
            # every run of changes ended (a clock tick): nothing to count.  These cells' old times are
            # over ``interval`` ago, so a change in the next frame counts them from 1 (not 2): one
            # frame later to turn hot, no array work for a lone frame
            if marked(changed):
                self._newest = now
            return None
        rows = np.flatnonzero(changed.any(axis=1))  # only the changed cells' box is touched (a key: a few cells)
        if not len(rows):
            return None
        cols = np.flatnonzero(changed.any(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        box = (slice(y0, y1), slice(x0, x1))
        ch, hits, last = changed[box], self.hits[box], self.last[box]  # (views: written in place)
        self._newest = now
        counted = np.where((now - last) < self.interval, np.minimum(hits + 1, 60000), 1).astype(np.uint16)
        np.copyto(hits, counted, where=ch)
        np.copyto(last, now, where=ch)
        if not ((hits >= self.min_hits) & ch).any():
            return None  # nothing hot changed in this frame (a running stream keeps its area meanwhile)
        hot = (self.hits >= self.min_hits) & ((now - self.last) < self.interval)
        if not hot.any():
            return None
        rows = np.flatnonzero(hot.any(axis=1))
        cols = np.flatnonzero(hot.any(axis=0))
        r = self.grid.cell_rect(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        if r.width < self.min_size or r.height < self.min_size:
            return None
        return r
