"""The framebuffer plus the list of display ops that describe every change made to it.

Fill and CopyRect ops are recorded in the order they are applied; Damage rectangles are kept
aside and emitted after them (a Damage means "these pixels as they are at the end of the
frame").  When a CopyRect moves pixels that are still pending damage, the damage moves along,
so replaying the ops on the previous frame always reproduces the new one exactly.

With :attr:`Surface.hold` set, fills and copies are recorded at once but reach the framebuffer only
at :meth:`Surface.apply_held` (in order, before any later put): the desktop uses this to keep the
framebuffer equal to the last frame between renders.
"""

from __future__ import annotations

import numpy as np

from ..base import CopyRect, Damage, DisplayOp, Fill, Rect

SMALL_DIFF = 4096  # pixels up to which changed_bbox lists the changed pixels instead of scanning per axis


def changed_bbox(old: np.ndarray, new: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)`` of pixels that differ between two BGRX arrays."""
    diff = old.view(np.uint32)[:, :, 0] != new.view(np.uint32)[:, :, 0]
    if diff.size <= SMALL_DIFF:  # a glyph or so: one nonzero, no per-axis passes (C calls only)
        ys, xs = diff.nonzero()
        if ys.size == 0:
            return None
        return int(np.minimum.reduce(xs)), int(ys[0]), int(np.maximum.reduce(xs)) + 1, int(ys[-1]) + 1
    rows = np.flatnonzero(np.logical_or.reduce(diff, axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(np.logical_or.reduce(diff[rows[0]:rows[-1] + 1], axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def add_merged(rects: list[Rect], rect: Rect) -> None:
    """Append ``rect`` to ``rects``, first absorbing rectangles it touches when the union wastes little."""
    merged = True
    while merged:
        merged = False
        for i, d in enumerate(rects):
            if d.left > rect.right or rect.left > d.right or d.top > rect.bottom or rect.top > d.bottom:
                continue  # neither overlapping nor touching
            u = d.union(rect)
            if u == d or u.area <= (d.area + rect.area) * 1.25:
                rect = u
                del rects[i]
                merged = True
                break
    rects.append(rect)


def copy_block(a: np.ndarray, src: Rect, dx: int, dy: int) -> None:
    """``a[src + (dx, dy)] = a[src]`` in place; vertical moves go in non-overlapping row bands (no temp copy)."""
    x0, y0, x1, y1 = src.left, src.top, src.right, src.bottom
    if dy == 0 or dx != 0 or abs(dy) >= y1 - y0:
        a[y0 + dy:y1 + dy, x0 + dx:x1 + dx] = a[y0:y1, x0:x1]
        return
    step = abs(dy)
    starts = range(src.top, src.bottom, step) if dy < 0 else range(src.bottom - step, src.top - step, -step)
    for y in starts:
        y0, y1 = max(y, src.top), min(y + step, src.bottom)
        a[y0 + dy:y1 + dy, x0:x1] = a[y0:y1, x0:x1]


class RowSlider:
    """Moves a tall area of a ``(h, w, 4)`` buffer vertically without copying its rows: the buffer is a view
    into a backing array 5x as tall, slid by the move; only the pixels outside the area (and the vacated
    rows) are copied back.  The buffer object changes with each slide: callers keep the returned one."""

    def __init__(self) -> None:
        self.view: np.ndarray | None = None  # the buffer as last handed out
        self.offset = 0  # its first row in the backing array

    def new_buffer(self, height: int, width: int) -> np.ndarray:
        """A zeroed buffer that can slide at once (the backing's unused rows cost no memory until touched)."""
        backing = np.zeros((5 * height, width, 4), np.uint8)
        self.offset = 2 * height
        self.view = backing[self.offset:self.offset + height]
        return self.view

    def move(self, buf: np.ndarray, area: Rect, dy: int) -> np.ndarray | None:
        """``buf`` after ``buf[area + (0, dy)] = buf[area minus the vacated rows]`` (the vacated rows keep their
        pixels), as a new view; None when too little of ``buf`` moves for a slide to pay (the caller copies)."""
        h, w = buf.shape[:2]
        src = Rect(area.left, area.top + max(0, -dy), area.right, area.bottom - max(0, dy))
        kept = (h - area.height + abs(dy)) * w + area.height * (w - area.width)  # pixels restored
        if dy == 0 or src.is_empty() or kept * 4 > src.area:
            return None
        backing = buf.base
        off = self.offset
        if buf is not self.view or backing is None or backing.shape != (5 * h, w, 4):
            backing = np.empty((5 * h, w, 4), np.uint8)
            off = 2 * h
            backing[off:off + h] = buf
        new = off - dy
        if new < 0 or new + h > backing.shape[0]:  # slid to an end: back to the middle, one full copy
            backing[2 * h:3 * h] = backing[off:off + h]
            off, new = 2 * h, 2 * h - dy
        # the pixels outside the moved rows stay put: each moves by ``new - off`` rows in the backing, in
        # place, the region farthest along the shift first (it is no other region's source any more)
        vac = Rect(area.left, area.bottom + dy, area.right, area.bottom) if dy < 0 else \
            Rect(area.left, area.top, area.right, area.top + dy)
        top, bottom = Rect(0, 0, w, area.top), Rect(0, area.bottom, w, h)
        for group in ((bottom,), (vac, Rect(0, area.top, area.left, area.bottom),
                                  Rect(area.right, area.top, w, area.bottom)), (top,))[::1 if dy < 0 else -1]:
            for r in group:
                if r.is_empty():
                    continue
                if r.width == w:  # full rows: bands that do not overlap their destination
                    copy_block(backing, Rect(0, off + r.top, w, off + r.bottom), 0, new - off)
                else:  # (numpy copies an overlapping source first)
                    backing[new + r.top:new + r.bottom, r.left:r.right] = backing[off + r.top:off + r.bottom,
                                                                                  r.left:r.right]
        buf = self.view = backing[new:new + h]
        self.offset = new
        return buf


class Surface:
    """Owns the ``(h, w, 4)`` BGRX framebuffer (modified in place) and records ops against it."""

    MAX_DAMAGE_RECTS = 24

    def __init__(self, width: int, height: int) -> None:
        self._rows = RowSlider()
        #: a view into a taller array: a tall vertical copy slides it (see RowSlider), so keep no reference
        self.fb = self._rows.new_buffer(height, width)
        self.bounds = Rect(0, 0, width, height)
        self._ops: list[DisplayOp] = []
        self._damage: list[Rect] = []
        self.hold = False
        self._held: list[tuple] = []  # fills and copies recorded while holding, not yet in fb

    @property
    def pending(self) -> bool:
        return bool(self._ops or self._damage)

    # -- operations
    def fill(self, rect: Rect, color: int) -> None:
        """Fill ``rect`` with the u32 ``color`` (see :func:`font.fill_value`)."""
        rect = rect.intersect(self.bounds)
        if rect.is_empty():
            return
        self._ops.append(Fill(rect, color))
        if self.hold:
            self._held.append(("fill", rect, color))
        else:
            self.fb.view(np.uint32)[rect.top:rect.bottom, rect.left:rect.right, 0] = color

    def fill_many(self, rects: np.ndarray, colors: np.ndarray) -> None:
        """Many fills at once: ``rects`` is ``(n, 4)`` left, top, right, bottom inside the screen."""
        ops = self._ops
        rl, cl = rects.tolist(), colors.tolist()
        for (x0, y0, x1, y1), c in zip(rl, cl, strict=True):
            ops.append(Fill(Rect(x0, y0, x1, y1), c))
        if self.hold:
            self._held.append(("many", rl, cl))
        else:
            self._fill_many(rl, cl)

    def _fill_many(self, rects: list, colors: list) -> None:
        fb32 = self.fb.view(np.uint32)[:, :, 0]
        for (x0, y0, x1, y1), c in zip(rects, colors, strict=True):
            fb32[y0:y1, x0:x1] = c

    def copy(self, src: Rect, dest_x: int, dest_y: int, pixels: np.ndarray | None = None) -> None:
        """Copy ``src`` to top-left ``(dest_x, dest_y)``; both must lie inside the screen.  ``pixels``: the
        caller's copy of what ``src`` shows now, written instead (one pass, no overlap temporary)."""
        left, top, right, bottom = src.left, src.top, src.right, src.bottom
        dx, dy = dest_x - left, dest_y - top
        if right <= left or bottom <= top or (dx == 0 and dy == 0):
            return
        b = self.bounds
        if left < 0 or top < 0 or dest_x < 0 or dest_y < 0 or right > b.right or right + dx > b.right \
                or bottom > b.bottom or bottom + dy > b.bottom:
            raise ValueError(f"copy {src} -> {src.translate(dx, dy)} leaves the screen")
        if pixels is None:
            self._copy_op(src, dx, dy)
            return
        self._ops.append(CopyRect(src, dest_x, dest_y))
        if self.hold:  # (``pixels`` may be a view that changes before the copy is applied: not kept)
            self._held.append(("copy", src, dx, dy, None))
        else:
            self._copy(src, dx, dy, pixels)

    def copy_inside(self, left: int, top: int, right: int, bottom: int, dx: int, dy: int) -> None:
        """:meth:`copy` of the non-empty box ``(left, top, right, bottom)`` by ``(dx, dy)``, which the caller
        checked lies inside the screen at both ends (text cells: no Rect checks on the hot path)."""
        self._copy_op(Rect(left, top, right, bottom), dx, dy)

    def _copy_op(self, src: Rect, dx: int, dy: int) -> None:
        """Record the copy of ``src`` by ``(dx, dy)`` (checked) and apply it now unless holding."""
        self._ops.append(CopyRect(src, src.left + dx, src.top + dy))
        if self.hold:
            self._held.append(("copy", src, dx, dy, None))
            return
        top, bottom = src.top, src.bottom
        if not self._damage and (dy == 0 or dx != 0 or bottom - top <= abs(dy)):
            fb = self.fb  # neither slides nor moves damage (a text cell): one numpy assignment
            fb[top + dy:bottom + dy, src.left + dx:src.right + dx] = fb[top:bottom, src.left:src.right]
        else:
            self._copy(src, dx, dy)

    def _copy(self, src: Rect, dx: int, dy: int, pixels: np.ndarray | None = None) -> None:
        if pixels is None:
            slid = self._rows.move(self.fb, src.union(src.translate(0, dy)), dy) \
                if dx == 0 and 0 < abs(dy) < src.bottom - src.top else None
            if slid is None:
                copy_block(self.fb, src, dx, dy)
            else:
                self.fb = slid
        else:
            self.fb[src.top + dy:src.bottom + dy, src.left + dx:src.right + dx] = pixels
        for d in list(self._damage) if self._damage else ():
            moved = d.intersect(src)
            if not moved.is_empty():
                self._add_damage(moved.translate(dx, dy))

    def put(self, x: int, y: int, pixels: np.ndarray, diff: bool = True) -> None:
        """Write ``pixels`` at ``(x, y)`` (clipped); damage only what really changed if ``diff``."""
        if self._held:
            self.apply_held()
        h, w = pixels.shape[:2]
        r = Rect(x, y, x + w, y + h)
        if x < 0 or y < 0 or x + w > self.bounds.right or y + h > self.bounds.bottom:
            r = r.intersect(self.bounds)
        if r.is_empty():
            return
        src = pixels[r.top - y:r.bottom - y, r.left - x:r.right - x]
        dst = self.fb[r.top:r.bottom, r.left:r.right]
        if diff:
            box = changed_bbox(dst, src)
            if box is None:
                return
            x0, y0, x1, y1 = box
            dst[y0:y1, x0:x1] = src[y0:y1, x0:x1]
            self._add_damage(Rect(r.left + x0, r.top + y0, r.left + x1, r.top + y1))
        else:
            dst[...] = src
            self._add_damage(r)

    def damage(self, rect: Rect) -> None:
        """Declare ``rect`` changed (the caller already wrote the pixels)."""
        if self._held:
            self.apply_held()
        rect = rect.intersect(self.bounds)
        if not rect.is_empty():
            self._add_damage(rect)

    def take_ops(self) -> list[DisplayOp]:
        """The ops since the last call, in replay order."""
        if self._held:
            self.apply_held()
        ops = self._ops + [Damage(r) for r in self._damage]
        self._ops, self._damage = [], []
        return ops

    def apply_held(self) -> None:
        """Bring the framebuffer up to date with the fills and copies recorded while holding."""
        held, self._held = self._held, []
        fb32 = None
        for op in held:
            if op[0] == "fill":
                r = op[1]
                if fb32 is None:  # (not before: a copy may slide the framebuffer to a new view)
                    fb32 = self.fb.view(np.uint32)[:, :, 0]
                fb32[r.top:r.bottom, r.left:r.right] = op[2]
            elif op[0] == "copy":
                self._copy(op[1], op[2], op[3], op[4])
                fb32 = None
            else:
                self._fill_many(op[1], op[2])

    # -- damage bookkeeping
    def _add_damage(self, rect: Rect) -> None:
        rects = self._damage
        add_merged(rects, rect)
        if len(rects) > self.MAX_DAMAGE_RECTS:  # keep op lists bounded: merge the two closest
            rects.sort(key=lambda r: (r.top, r.left))
            a, b = rects.pop(), rects.pop()
            self._add_damage(a.union(b))
