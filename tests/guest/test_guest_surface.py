"""Surface op recording: random puts, fills and overlapping copies always replay exactly."""

from __future__ import annotations

import random

import numpy as np
from guest_helpers import Shadow

from spice.guests.base import CopyRect, Damage, Fill, Frame, Rect
from spice.guests.builtin.surface import Surface, changed_bbox


class _FakeGuest:
    def __init__(self, surface: Surface) -> None:
        self.surface = surface
        self.listener = None

    @property
    def framebuffer(self) -> np.ndarray:
        return self.surface.fb

    def add_listener(self, listener) -> None:
        self.listener = listener


def test_random_ops_replay_exactly():
    rnd = random.Random(7)
    s = Surface(97, 61)
    g = _FakeGuest(s)
    sh = Shadow(g)
    kinds = set()
    for serial in range(1, 301):
        for _ in range(rnd.randint(1, 6)):
            x, y = rnd.randrange(-10, 97), rnd.randrange(-10, 61)
            w, h = rnd.randint(1, 40), rnd.randint(1, 30)
            k = rnd.random()
            if k < 0.4:
                pix = np.random.default_rng(serial).integers(0, 4, (h, w, 4), dtype=np.uint8)
                s.put(x, y, pix, diff=rnd.random() < 0.7)
            elif k < 0.6:
                s.fill(Rect(x, y, x + w, y + h), rnd.choice([0, 0xFF102030, 0x01010101]))
            else:
                src = Rect(max(0, x), max(0, y), min(97, max(0, x) + w), min(61, max(0, y) + h))
                dx, dy = rnd.randrange(0, 97 - src.width + 1), rnd.randrange(0, 61 - src.height + 1)
                if not src.is_empty():
                    s.copy(src, dx, dy)
        ops = s.take_ops()
        kinds |= {type(op) for op in ops}
        if ops:
            g.listener.on_frame(Frame(ops, serial, 0.0))
    sh.check()
    assert kinds == {Damage, Fill, CopyRect}


def test_put_damages_only_changed_pixels():
    s = Surface(64, 32)
    pix = s.fb[0:10, 0:20].copy()
    pix[3, 7] = 9
    pix[5, 11] = 9
    s.put(0, 0, pix)
    assert s.take_ops() == [Damage(Rect(7, 3, 12, 6))]
    s.put(0, 0, pix)
    assert s.take_ops() == []
    assert changed_bbox(s.fb, s.fb.copy()) is None


def test_changed_bbox_matches_brute_force_small_and_large():
    rnd = np.random.default_rng(5)
    for h, w in ((15, 8), (40, 100), (120, 300)):  # under and over SMALL_DIFF pixels
        old = rnd.integers(0, 255, (h, w, 4), np.uint8)
        for _ in range(20):
            new = old.copy()
            for _ in range(rnd.integers(0, 4)):
                y, x = rnd.integers(0, h), rnd.integers(0, w)
                new[y, x, rnd.integers(0, 4)] ^= 1
            ys, xs = np.nonzero((old != new).any(axis=2))
            want = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if ys.size else None
            assert changed_bbox(old, new) == want


def test_copy_outside_screen_is_refused():
    s = Surface(16, 16)
    try:
        s.copy(Rect(0, 0, 8, 8), 12, 0)
    except ValueError:
        pass
    else:
        raise AssertionError("copy leaving the screen accepted")


def test_copy_block_matches_a_plain_copy():
    from spice.guests.builtin.surface import copy_block

    rnd = random.Random(3)
    for _ in range(300):
        a = np.random.default_rng(rnd.randrange(1000)).integers(0, 255, (40, 30, 4), dtype=np.uint8)
        top, left = rnd.randrange(0, 39), rnd.randrange(0, 29)
        src = Rect(left, top, rnd.randrange(left + 1, 31), rnd.randrange(top + 1, 41))
        dy = rnd.randrange(-src.top, 40 - src.bottom + 1)
        dx = rnd.choice([0, 0, rnd.randrange(-src.left, 30 - src.right + 1)])
        want = a.copy()
        want[src.top + dy:src.bottom + dy, src.left + dx:src.right + dx] = \
            a[src.top:src.bottom, src.left:src.right].copy()
        copy_block(a, src, dx, dy)
        assert np.array_equal(a, want), (src, dx, dy)


def test_window_scroll_area_matches_copy_block():
    """Sliding a window's buffer view (up and down, past the backing's ends) equals copying the rows."""
    from spice.guests.builtin.surface import copy_block
    from spice.guests.builtin.window import Window

    rng = np.random.default_rng(3)
    win = Window("t", 0, 0, 200, 300)
    win.buf[:] = rng.integers(0, 256, win.buf.shape, np.uint8)
    want = win.buf.copy()
    tall = Rect(3, 10, 197, 296)
    slid = 0
    for area, dy in [(tall, -6)] * 120 + [(tall, 9)] * 150 + [(Rect(2, 3, 198, 299), -1)] * 5 \
            + [(Rect(30, 20, 60, 88), -4), (tall, 50)]:
        src = Rect(area.left, area.top + max(0, -dy), area.right, area.bottom - max(0, dy))
        copy_block(want, src, 0, dy)
        win.scroll_area(area, dy)
        assert np.array_equal(win.buf, want)
        slid += win.buf.base is not None
        win.buf[area.bottom - 1, area.left] = want[area.bottom - 1, area.left] = rng.integers(0, 256, 4)
    assert slid > 200  # the view really slid (not the copy fallback)


def test_surface_tall_vertical_copies_slide_and_replay_exactly():
    """Tall vertical copies slide the framebuffer view (up and down, past the backing's ends, with pending
    damage moving along); replaying the ops on a shadow still gives the framebuffer pixel for pixel."""
    rng = np.random.default_rng(5)
    s = Surface(120, 400)
    s.put(0, 0, rng.integers(0, 256, (400, 120, 4), np.uint8), diff=False)
    g = _FakeGuest(s)
    s.take_ops()
    sh = Shadow(g)
    fb0, slid = s.fb, 0
    for serial, dy in enumerate([-7] * 80 + [11] * 90 + [-3] * 40, 1):
        area = Rect(4, 9, 113, 391)
        src = Rect(area.left, area.top + max(0, -dy), area.right, area.bottom - max(0, dy))
        s.put(rng.integers(0, 100), rng.integers(0, 380), rng.integers(0, 256, (5, 20, 4), np.uint8))
        s.copy(src, src.left, src.top + dy)
        s.fill(Rect(0, 0, 3, 3), int(rng.integers(0, 1 << 32)))
        g.listener.on_frame(Frame(s.take_ops(), serial, 0.0))
        slid += s.fb is not fb0 and s.fb.base is fb0.base
    sh.check()
    assert slid > 150


def test_held_fills_after_a_sliding_copy_land_where_unheld_ones_do():
    """Fills and a tall vertical copy (which slides the framebuffer view) recorded while holding end up
    exactly as the same ops applied at once."""
    rng = np.random.default_rng(9)
    pixels = rng.integers(0, 256, (300, 80, 4), np.uint8)
    held, direct = Surface(80, 300), Surface(80, 300)
    for s in (held, direct):
        s.put(0, 0, pixels, diff=False)
    held.hold = True
    for s in (held, direct):
        s.fill(Rect(0, 0, 80, 4), 0xFF112233)
        s.copy(Rect(0, 20, 80, 300), 0, 10)
        s.fill(Rect(5, 250, 60, 260), 0xFF445566)
    held.apply_held()
    assert held.fb.base is not None and np.array_equal(held.fb, direct.fb)
