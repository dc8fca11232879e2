"""The compositor: windows in z-order over a background, rendered into a :class:`Surface`.

Invariant after every :meth:`Desktop.render`: the framebuffer equals the composition of the
background and all window buffers.  Moves and scrolls of unobscured areas become CopyRect ops,
uncovered plain background becomes Fill, everything else is diffed against the framebuffer so
Damage covers only pixels that really changed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..base import Rect
from .font import Box, bgrx, fill_value, glyphs
from .surface import Surface, add_merged
from .window import Window

BACKGROUND = 0x2F5D73
#: what limits copies inside a window (see :meth:`Desktop.copy_guard`)
CopyGuard = tuple[list[Box], list[Box], Box]


def overlaps(a: Rect, b: Rect) -> bool:
    """True if ``a`` and ``b`` share a pixel (``not a.intersect(b).is_empty()`` without making a Rect)."""
    return (a.left < b.right and b.left < a.right and a.top < b.bottom and b.top < a.bottom
            and a.left < a.right and a.top < a.bottom and b.left < b.right and b.top < b.bottom)


def inside(r: Rect, width: int, height: int) -> bool:
    """True if ``r`` lies within ``(0, 0, width, height)``."""
    return r.left >= 0 and r.top >= 0 and r.right <= width and r.bottom <= height


def subtract(a: Rect, b: Rect) -> list[Rect]:
    """``a`` minus ``b`` as up to four disjoint rectangles."""
    i = a.intersect(b)
    if i.is_empty():
        return [] if a.is_empty() else [a]
    out = [Rect(a.left, a.top, a.right, i.top), Rect(a.left, i.bottom, a.right, a.bottom),
           Rect(a.left, i.top, i.left, i.bottom), Rect(i.right, i.top, a.right, i.bottom)]
    return [r for r in out if not r.is_empty()]


class Desktop:
    """Windows (bottom to top) over a background with a small watermark."""

    def __init__(self, width: int, height: int, schedule: Callable[[], None] = lambda: None) -> None:
        self.surface = Surface(width, height)
        self.surface.hold = True  # the framebuffer changes only in render(): between frames it is the last one
        self.bounds = self.surface.bounds
        self.windows: list[Window] = []
        self.schedule = schedule
        self._shown: dict[int, tuple[int, int]] = {}
        self._exposed: list[Rect] = []
        self._moves = False  # a window may have moved since the last render (positions change only in move())
        self.top_margin = 0  # windows are kept below this line (the top bar)
        self.background = np.empty((height, width, 4), np.uint8)
        self.background[:] = bgrx(BACKGROUND)
        mark = glyphs().render("aiospice built-in guest", 0x5E8EA6, BACKGROUND)
        mh, mw = mark.shape[:2]
        self.mark_rect = Rect(width - mw - 12, height - mh - 8, width - 12, height - 8).intersect(self.bounds)
        mr = self.mark_rect
        if not mr.is_empty():
            self.background[mr.top:mr.bottom, mr.left:mr.right] = mark[mh - mr.height:, mw - mr.width:]
        self.surface.fb[:] = self.background

    @property
    def fb(self) -> np.ndarray:
        return self.surface.fb

    # -- window management
    def add(self, win: Window, on_top: bool = False) -> None:
        win.desktop = self
        if on_top or not self.windows or not getattr(self.windows[-1], "always_on_top", False):
            self.windows.append(win)
        else:
            idx = len(self.windows)
            while idx > 0 and getattr(self.windows[idx - 1], "always_on_top", False):
                idx -= 1
            self.windows.insert(idx, win)
        self._shown[id(win)] = (win.x, win.y)
        win.dirty = [Rect(0, 0, win.w, win.h)]
        self.schedule()

    def remove(self, win: Window) -> None:
        if win in self.windows:
            self.windows.remove(win)
            self._exposed.append(self._shown_rect(win))
            self._shown.pop(id(win), None)
            win.desktop = None
            self.schedule()

    def raise_(self, win: Window) -> None:
        """Bring ``win`` to the top (below always-on-top windows)."""
        top = [w for w in self.windows if getattr(w, "always_on_top", False) and w is not win]
        rest = [w for w in self.windows if w not in top and w is not win]
        if self.windows == rest + [win] + top:
            return
        self.windows = rest + [win] + top
        self._exposed.append(self._shown_rect(win))
        win.invalidate()
        self.schedule()

    def move(self, win: Window, x: int, y: int) -> None:
        """Move ``win`` so it stays fully on screen (and below a top bar at y=0 if any)."""
        top = self.top_margin
        x = max(0, min(x, self.bounds.right - win.w))
        y = max(top if win.h <= self.bounds.bottom - top else 0, min(y, self.bounds.bottom - win.h))
        if (x, y) != (win.x, win.y):
            win.x, win.y = x, y
            self._moves = True
            self.schedule()

    def fill_window(self, win: Window, r: Rect, rgb: int) -> None:
        """Fill window-local ``r``; straight to the screen as a Fill op when that area is unobscured."""
        r = r.intersect(Rect(0, 0, win.w, win.h))
        if r.is_empty():
            return
        win.buf[r.top:r.bottom, r.left:r.right] = bgrx(rgb)
        screen = r.translate(win.x, win.y)
        if self._direct(win, screen):
            self.surface.fill(screen, fill_value(rgb))
        else:
            win.dirty.append(r)
        self.schedule()

    def fill_window_many(self, win: Window, rects: np.ndarray, colors: np.ndarray) -> None:
        """Batch of :meth:`fill_window`: ``rects`` ``(n, 4)`` window-local, inside the window; ``colors`` u32."""
        buf32 = win.buf.view(np.uint32)[:, :, 0]
        for (x0, y0, x1, y1), c in zip(rects.tolist(), colors.tolist(), strict=True):
            buf32[y0:y1, x0:x1] = c
        if len(rects) == 0:
            return
        lo, hi = rects[:, :2].min(axis=0), rects[:, 2:].max(axis=0)
        box = Rect(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
        screen = box.translate(win.x, win.y)
        if self._direct(win, screen) and screen.intersect(self.bounds) == screen:
            self.surface.fill_many(rects + np.array([win.x, win.y, win.x, win.y]), colors)
        else:
            win.dirty.append(box)
        self.schedule()

    def window_at(self, x: int, y: int) -> Window | None:
        for win in reversed(self.windows):
            if win.x <= x < win.x + win.w and win.y <= y < win.y + win.h:
                return win
        return None

    def _direct(self, win: Window, screen: Rect) -> bool:
        """May ``win`` draw straight to screen rect ``screen`` now (nothing above it, no move pending)?"""
        return win in self.windows and not self._obscured(win, screen) and \
            all((w.x, w.y) == self._shown.get(id(w)) for w in self.windows)

    def _shown_rect(self, win: Window) -> Rect:
        x, y = self._shown.get(id(win), (win.x, win.y))
        return Rect(x, y, x + win.w, y + win.h)

    def _obscured(self, win: Window, r: Rect) -> bool:
        """True if a window above ``win`` overlaps screen rect ``r``."""
        windows = self.windows
        for a in windows[windows.index(win) + 1:]:
            if (a.x < r.right and r.left < a.x + a.w and a.y < r.bottom and r.top < a.y + a.h
                    and r.left < r.right and r.top < r.bottom and a.w > 0 and a.h > 0):
                return True
        return False

    def _moves_pending(self) -> bool:
        shown = self._shown
        return any((w.x, w.y) != shown.get(id(w)) for w in self.windows)

    # -- scrolling a window's area (used by the terminal during sync)
    def scroll_window(self, win: Window, area: Rect, dy: int) -> None:
        """Move the window-local ``area`` contents by ``dy`` rows (negative: up); vacated rows keep stale pixels."""
        if dy == 0 or abs(dy) >= area.height:
            win.invalidate(area)
            return
        src = Rect(area.left, area.top + max(0, -dy), area.right, area.bottom - max(0, dy))
        win.scroll_area(area, dy)
        for d in list(win.dirty):  # pending buffer changes move with the content
            m = d.intersect(src)
            if not m.is_empty():
                win.dirty.append(m.translate(0, dy))
        screen = src.translate(win.x, win.y)
        both = screen.translate(0, dy).union(screen)
        if win in self.windows and (win.x, win.y) == self._shown.get(id(win)) and \
                screen.intersect(self.bounds) == screen and \
                all(e.intersect(both).is_empty() for e in self._exposed):  # screen there is up to date
            above = [a.rect for a in self.windows[self.windows.index(win) + 1:] if not a.rect.intersect(both).is_empty()]
            if above:  # the widest full-height strip left or right of the windows above is still copied
                lo, hi = min(a.left for a in above), max(a.right for a in above)
                strips = [Rect(screen.left, screen.top, min(screen.right, lo), screen.bottom),
                          Rect(max(screen.left, hi), screen.top, screen.right, screen.bottom)]
                screen = max(strips, key=lambda r: r.width if not r.is_empty() else 0)
                kept = screen.translate(-win.x, -win.y)
                for r in subtract(area, Rect(kept.left, area.top, kept.right, area.bottom)):
                    win.invalidate(r)
            if not screen.is_empty():
                self.surface.copy(screen, screen.left, screen.top + dy)
        else:
            win.invalidate(area)

    # -- copies inside a window (text drawn from cells already on screen)
    def copy_guard(self, win: Window) -> CopyGuard | None:
        """What limits copies inside ``win`` now, in window-local coordinates: ``(stale, above, box)``,
        ``stale`` boxes where the screen does not show ``win``'s buffer for another reason than a window
        above (a repaint pending), ``above`` the windows above it that overlap it, ``box`` the part of
        ``win`` on screen; None when no part of ``win`` may be copied on screen (not shown, a move pending)."""
        windows = self.windows
        if win not in windows or self._moves and self._moves_pending():
            return None
        x, y = win.x, win.y
        h, w = win.buf.shape[:2]
        above: list[Box] = []
        for a in windows[windows.index(win) + 1:]:
            ah, aw = a.buf.shape[:2]
            x0, y0 = a.x - x, a.y - y
            if x0 < w and y0 < h and x0 + aw > 0 and y0 + ah > 0 and aw > 0 and ah > 0:
                above.append((x0, y0, x0 + aw, y0 + ah))
        stale: list[Box] = []
        if win.dirty or self._exposed:
            stale = [(d.left, d.top, d.right, d.bottom) for d in win.dirty]
            stale += [(e.left - x, e.top - y, e.right - x, e.bottom - y) for e in self._exposed]
        return stale, above, (max(0, -x), max(0, -y), min(w, self.bounds.right - x), min(h, self.bounds.bottom - y))

    def copy_in_window(self, win: Window, left: int, top: int, right: int, bottom: int, dx: int, dy: int,
                       guard: CopyGuard | None = None) -> bool:
        """Copy the window-local box ``(left, top, right, bottom)`` by ``(dx, dy)`` in ``win``'s buffer and,
        as a CopyRect, on screen.

        False (and nothing done) when the screen there is not up to date or not visible: the caller
        draws the pixels instead.  ``guard``: :meth:`copy_guard` of ``win`` if the caller has it (copies
        in a window leave it as it was).  Plain ints, no Rects: text drawing's hot path."""
        if guard is None:
            guard = self.copy_guard(win)
            if guard is None:
                return False
        stale, above, (bx0, by0, bx1, by1) = guard
        dl, dt, dr, db = left + dx, top + dy, right + dx, bottom + dy
        if left >= right or top >= bottom or (left if dx >= 0 else dl) < bx0 or (dr if dx >= 0 else right) > bx1 \
                or (top if dy >= 0 else dt) < by0 or (db if dy >= 0 else bottom) > by1:
            return False  # empty, or source or destination not on screen inside the window
        for a0, a1, a2, a3 in above:  # source and destination must be visible
            if a0 < dr and dl < a2 and a1 < db and dt < a3 or a0 < right and left < a2 and a1 < bottom and top < a3:
                return False
        for s0, s1, s2, s3 in stale:  # the source must be up to date on screen
            if s0 < right and left < s2 and s1 < bottom and top < s3 and s0 < s2 and s1 < s3:
                return False
        buf = win.buf
        buf[dt:db, dl:dr] = buf[top:bottom, left:right]
        x, y = win.x, win.y
        self.surface.copy_inside(left + x, top + y, right + x, bottom + y, dx, dy)  # (the box is on screen)
        self.schedule()
        return True

    # -- rendering
    def render(self) -> None:
        """Bring the framebuffer up to date with all windows; ops accumulate in :attr:`surface`."""
        surface, hold = self.surface, self.surface.hold
        surface.apply_held()
        surface.hold = False
        try:
            self._render()
        finally:
            surface.hold = hold

    def _render(self) -> None:
        if self._moves:
            self._moves = False
            moved = [w for w in self.windows if (w.x, w.y) != self._shown[id(w)]]
            for win in moved:  # with several movers a copy's source may already be repainted: expose instead
                self._apply_move(win, copy=len(moved) == 1)
        for win in list(self.windows):
            win.sync()
        exposed: list[Rect] = []
        for r in self._exposed:
            add_merged(exposed, r)
        self._exposed = []
        for win in self.windows:
            if win.dirty:
                for r in win.dirty:
                    add_merged(exposed, r.translate(win.x, win.y))
                win.dirty = []
        for r in exposed:
            self.repaint(r)

    def _apply_move(self, win: Window, copy: bool = True) -> None:
        old, new = self._shown_rect(win), win.rect
        self._shown[id(win)] = (win.x, win.y)
        sw, sh = self.bounds.right, self.bounds.bottom
        if copy and inside(old, sw, sh) and inside(new, sw, sh) and not self._obscured(win, old.union(new)) \
                and not any(overlaps(e, old) for e in self._exposed):
            # the screen shows the window's buffer at ``old`` unless it has changes pending: write that
            self.surface.copy(old, new.left, new.top, None if win.dirty else win.buf)
        else:
            self._exposed.append(new)
        for r in subtract(old, new):
            self.repaint(r)

    def repaint(self, r: Rect) -> None:
        """Make screen rect ``r`` show the composition (Fill for plain background, else diffed Damage)."""
        if not inside(r, self.bounds.right, self.bounds.bottom):
            r = r.intersect(self.bounds)
        if r.is_empty():
            return
        if not overlaps(self.mark_rect, r) and not any(w.touches(r) for w in self.windows):
            color = fill_value(BACKGROUND)
            if not (self.fb.view(np.uint32)[r.top:r.bottom, r.left:r.right, 0] == color).all():
                self.surface.fill(r, color)
            return
        top = self.window_at(r.left, r.top)
        diff = top is None or getattr(top, "exact_damage", True) or not top.covers(r)
        self.surface.put(r.left, r.top, self.compose(r, copy=False), diff=diff)

    def compose(self, r: Rect, copy: bool = True) -> np.ndarray:
        """The composed pixels of screen rect ``r`` (``copy=False``: may be a read-only view)."""
        windows = self.windows
        start = -1
        for i in range(len(windows) - 1, -1, -1):
            if windows[i].covers(r):
                start = i
                break
        above = [w for w in windows[start + 1:] if w.touches(r)]
        if start >= 0:
            w = windows[start]
            out = w.buf[r.top - w.y:r.bottom - w.y, r.left - w.x:r.right - w.x]
        else:
            out = self.background[r.top:r.bottom, r.left:r.right]
        if copy or above:
            out = out.copy()
        for w in above:
            h, wd = w.buf.shape[:2]
            x0, y0 = max(r.left, w.x), max(r.top, w.y)
            x1, y1 = min(r.right, w.x + wd), min(r.bottom, w.y + h)
            out[y0 - r.top:y1 - r.top, x0 - r.left:x1 - r.left] = w.buf[y0 - w.y:y1 - w.y, x0 - w.x:x1 - w.x]
        return out
