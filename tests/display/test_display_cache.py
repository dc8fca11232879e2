"""Pixmap cache: recurring images go as FROM_CACHE; the server-side LRU accounting never lets the
client reference an evicted image (INVAL_LIST first)."""

from __future__ import annotations

import numpy as np
from fakeguest import FakeGuest

from spice.display.caps import ImageCaps, ImageType
from spice.display.commands import DrawCopy, InvalList
from spice.display.pipeline import DisplayPipeline
from spice.display.shadow import ShadowCanvas, visible
from spice.guests.base import Rect

GTK = {0, 1, 2, 3, 4, 5, 7, 8, 9}


def gtk(cache_pixels: int) -> ImageCaps:
    return ImageCaps.from_caps({3}, GTK, "spice-gtk", cache_pixels=cache_pixels)


def types(cmds) -> list[int]:
    return [c.image[8] for c in cmds if isinstance(c, DrawCopy)]


def test_toggling_content_comes_from_the_cache():
    g = FakeGuest(160, 120, 12)
    p = DisplayPipeline(g)
    c = p.attach(gtk(20 << 20), lambda: None)
    plain = p.attach(gtk(0), lambda: None)
    sh, sp = ShadowCanvas(160, 120), ShadowCanvas(160, 120)
    sh.apply(c.take())
    sp.apply(plain.take())
    menu = Rect(20, 10, 100, 90)
    states = [g.fb[10:90, 20:100].copy()]
    g.damage(menu, "ui")
    states.append(g.fb[10:90, 20:100].copy())
    g.finish()
    first = c.take()
    sh.apply(first)
    sp.apply(plain.take())
    assert all(x.image[9] & 1 for x in first if isinstance(x, DrawCopy))  # CACHE_ME
    for k in range(6):  # the menu closes and opens again: the same pixels at the same place
        g.fb[10:90, 20:100] = states[k % 2]
        g.report(menu)
        g.finish()
        cmds = c.take()
        sh.apply(cmds)
        pc = plain.take()
        sp.apply(pc)
        assert np.array_equal(sh.bgr(), visible(g.fb)) and np.array_equal(sp.bgr(), visible(g.fb))
        assert ImageType.FROM_CACHE not in types(pc)
        if k >= 1:
            assert set(types(cmds)) == {ImageType.FROM_CACHE}, k
            assert sum(len(x.image) for x in cmds) < 20 * len(cmds)
    assert p.stats.cache_hits >= 5


def test_eviction_sends_inval_list_before_reuse():
    g = FakeGuest(128, 96, 13)
    p = DisplayPipeline(g)
    c = p.attach(gtk(3 * 32 * 32), lambda: None)  # room for three 32x32 images
    sh = ShadowCanvas(128, 96)
    full = c.take()
    sh.apply(full)
    tiles = [Rect(32 * i, 32, 32 * i + 32, 64) for i in range(4)]
    contents = []
    for t in tiles:
        g.damage(t, "noise")
        contents.append(g.fb[t.top:t.bottom, t.left:t.right].copy())
    g.finish()
    sh.apply(c.take())
    invals = []
    for rnd in range(3):
        for i, t in enumerate(tiles):
            g.fb[t.top:t.bottom, t.left:t.right] = contents[(i + rnd) % 4]
            g.report(t)
        g.finish()
        cmds = c.take()
        invals += [x for x in cmds if isinstance(x, InvalList)]
        sh.apply(cmds)  # raises KeyError if a FROM_CACHE names an evicted image
        assert np.array_equal(sh.bgr(), visible(g.fb))
        assert c._cache_used <= 3 * 32 * 32
    assert invals and len(sh.cache) <= 3
    assert set(sh.cache) == set(c._cache)


def test_a_glyph_drawn_again_elsewhere_comes_from_the_cache():
    """A character cell (9x18) that was sent once is FROM_CACHE when the same pixels come back, at
    any place (a clock digit, a letter typed again)."""
    g = FakeGuest(160, 120, 14)
    p = DisplayPipeline(g)
    c = p.attach(gtk(20 << 20), lambda: None)
    sh = ShadowCanvas(160, 120)
    sh.apply(c.take())
    glyph = g.rng.integers(0, 256, (18, 9, 4), dtype=np.uint8)
    for k, (x, y) in enumerate([(10, 10), (50, 70), (91, 33)]):
        g.fb[y:y + 18, x:x + 9] = glyph
        g.report(Rect(x, y, x + 9, y + 18))
        g.finish()
        cmds = c.take()
        sh.apply(cmds)
        assert np.array_equal(sh.bgr(), visible(g.fb))
        assert len(cmds) == 1 and (types(cmds) == [ImageType.FROM_CACHE]) == (k > 0), k
