"""Batched fills (spice.display.fills): the DRAW_FILLs with RECTS clips we put on the wire paint exactly
what the guest's fills painted, in fewer bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from fakeguest import FakeGuest

from spice.channels.display import draw_fill_parts
from spice.display.caps import ImageCaps
from spice.display.commands import DrawFill
from spice.display.fills import batch_fills, cell_masks, overlapping_pairs
from spice.display.pipeline import DisplayPipeline
from spice.display.region import CellGrid
from spice.display.shadow import ShadowCanvas, visible
from spice.guests.base import Rect

UNBATCHED_BYTES = 6 + 41  # mini header + DRAW_FILL with clip NONE


def random_fills(rng: np.random.Generator, n: int, w: int, h: int, max_side: int, colours: int,
                 by_colour: bool = False) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, w - 1, n)
    y = rng.integers(0, h - 1, n)
    rects = np.stack([x, y, np.minimum(w, x + rng.integers(1, max_side + 1, n)),
                      np.minimum(h, y + rng.integers(1, max_side + 1, n))], axis=1)
    palette = rng.integers(0, 1 << 24, colours)
    k = rng.integers(0, colours, n)
    if by_colour:  # as the X scene draws them: one PolyFillRectangle per colour
        order = np.argsort(k, kind="stable")
        rects, k = rects[order], k[order]
    return rects, palette[k]


def paint_in_order(w: int, h: int, rects: np.ndarray, colors: np.ndarray) -> np.ndarray:
    canvas = np.zeros((h, w), np.uint32)
    for (x0, y0, x1, y1), c in zip(rects.tolist(), colors.tolist(), strict=True):
        canvas[y0:y1, x0:x1] = c
    return canvas


def paint_wire(canvas: np.ndarray, body: bytes) -> None:
    """Apply one DRAW_FILL body as spice-gtk's canvas does: box ∩ (union of the clip rects)."""
    _sid, top, left, bottom, right, clip = struct.unpack_from("<IiiiiB", body)
    at, parts = 21, [(top, left, bottom, right)]
    if clip == 1:
        (n,) = struct.unpack_from("<I", body, at)
        parts = list(struct.iter_unpack("<iiii", body[at + 4:at + 4 + 16 * n]))
        at += 4 + 16 * n
    brush, color, rop, mask_flags, _mx, _my, mask = struct.unpack_from("<BIHBiiI", body, at)
    assert (brush, rop, mask_flags, mask) == (1, 0x0008, 0, 0)
    assert at + 20 == len(body)
    for t, lf, b, r in parts:
        canvas[max(t, top):min(b, bottom), max(lf, left):min(r, right)] = color


SCENES = {  # name: (fills, screen w, h, largest side, colours, drawn colour by colour)
    "many-small-fills": (333, 1024, 744, 32, 64, False),
    "x-scene-order": (333, 1024, 744, 32, 64, True),
    "dense-few-colours": (400, 200, 150, 80, 3, False),
    "crowded-two-colours": (300, 40, 30, 12, 2, False),
    "one-colour": (50, 100, 100, 30, 1, False),
}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scene", sorted(SCENES))
def test_batched_fills_on_the_wire_paint_what_the_fills_painted(scene, seed):
    n, w, h, side, colours, by_colour = SCENES[scene]
    rng = np.random.default_rng(seed)
    rects, colors = random_fills(rng, n, w, h, side, colours, by_colour)
    cmds = batch_fills(rects, colors)
    canvas = np.zeros((h, w), np.uint32)
    sent = 0
    for cmd in cmds:
        body = b"".join(draw_fill_parts(cmd))
        sent += 6 + len(body)
        paint_wire(canvas, body)
        if cmd.clip:
            rs = cmd.clip_rects
            assert len(rs) >= 2  # a group of one is a plain fill: cheaper
            assert cmd.rect == Rect(min(r.left for r in rs), min(r.top for r in rs),
                                    max(r.right for r in rs), max(r.bottom for r in rs))
    assert np.array_equal(canvas, paint_in_order(w, h, rects, colors))
    # the shadow canvas (the pipeline tests' client model) agrees
    shadow = ShadowCanvas(w, h)
    shadow.apply(cmds)
    assert np.array_equal(shadow.bgr(), canvas)
    assert sent <= n * UNBATCHED_BYTES
    if scene == "many-small-fills":
        assert sent < 0.7 * n * UNBATCHED_BYTES
    if scene in ("x-scene-order", "one-colour"):  # nothing to keep in order: one command per colour
        assert len(cmds) <= colours


def test_a_fill_does_not_jump_over_a_later_overlapping_one():
    rects = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [8, 8, 20, 20], [30, 30, 40, 40]])
    colors = np.array([1, 2, 1, 1])
    cmds = batch_fills(rects, colors)
    # fill 2 (colour 1) overlaps fill 1 (colour 2): it cannot join fill 0; fill 3 joins it
    assert [(c.color, len(c.clip_rects) or 1) for c in cmds] == [(1, 1), (2, 1), (1, 2)]
    canvas = np.zeros((40, 40), np.uint32)
    for cmd in cmds:
        paint_wire(canvas, b"".join(draw_fill_parts(cmd)))
    assert np.array_equal(canvas, paint_in_order(40, 40, rects, colors))


def test_a_fill_hidden_by_a_later_one_is_dropped():
    rects = np.array([[2, 2, 6, 6], [0, 0, 10, 10], [20, 0, 30, 10]])
    cmds = batch_fills(rects, np.array([5, 7, 7]))
    assert len(cmds) == 1 and cmds[0].color == 7
    assert set(cmds[0].clip_rects) == {Rect(0, 0, 10, 10), Rect(20, 0, 30, 10)}


def test_overlapping_pairs_match_brute_force():
    rng = np.random.default_rng(5)
    rects, _ = random_fills(rng, 200, 120, 90, 30, 1)
    rects[:20, 1] = 7  # ties on top
    i, j = overlapping_pairs(rects)  # type: ignore[misc]
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    want = {(a, b) for a in range(len(rects)) for b in range(a + 1, len(rects))
            if not Rect(*rects[a]).intersect(Rect(*rects[b])).is_empty()}
    assert got == want


@pytest.mark.parametrize("count", [300, 5])  # many: prefix sums; a few: painted by slicing
@pytest.mark.parametrize("size", [(96, 64), (101, 67)])
def test_cell_masks_match_the_cell_grid(size, count):
    w, h = size
    grid = CellGrid(w, h, 8)
    rng = np.random.default_rng(w)
    rects, _ = random_fills(rng, count, w, h, 40, 1)
    rects[:2, 2], rects[2:4, 3] = w, h  # reaching the screen edge
    outer, inner = cell_masks(grid, rects)
    want_outer, want_inner = grid.new_mask(), grid.new_mask()
    for r in rects.tolist():
        want_outer[grid.outer(Rect(*r))] = True
        want_inner[grid.inner(Rect(*r))] = True
    assert np.array_equal(outer, want_outer)
    assert np.array_equal(inner, want_inner)


def caps(profile: str = "spice-gtk") -> ImageCaps:
    return ImageCaps.from_caps({0, 2, 3}, {0, 1, 2, 3, 4, 5, 7, 8, 9}, profile)


@pytest.mark.parametrize("profile", ["spice-gtk", "web", "spice-html5"])
@pytest.mark.parametrize("frames_per_take", [1, 3, 6])  # 6: more than max_passthrough_frames (degrades)
def test_pipeline_sends_batched_fills_and_the_client_sees_the_guest(frames_per_take, profile):
    g = FakeGuest(160, 120, seed=frames_per_take)
    p = DisplayPipeline(g)
    c = p.attach(caps(profile), lambda: None)
    shadow = ShadowCanvas(160, 120)
    shadow.apply(c.take())
    palette = [0x102030, 0xFF0000, 0x00FF00, 0x0000FF]
    grouped = 0
    for _ in range(12):
        for _ in range(frames_per_take):
            for _ in range(int(g.rng.integers(0, 3))):
                g.random_op()  # damage / fills / copies between the runs of fills
            for _ in range(int(g.rng.integers(5, 40))):
                g.fill(g.rand_rect(24, 24), palette[int(g.rng.integers(0, len(palette)))] | 0xFF000000)
            g.random_op()
            g.finish()
        cmds = c.take()
        grouped += sum(1 for x in cmds if isinstance(x, DrawFill) and x.clip)
        shadow.apply(cmds)
        assert np.array_equal(shadow.bgr(), visible(g.fb))
        assert not c.pending
    if profile == "spice-html5":  # it fills the whole box whatever the clip: plain fills only
        assert grouped == 0
    elif frames_per_take <= p.max_passthrough_frames:
        assert grouped > 10


def test_heavily_overlapping_runs_are_halved_and_stay_exact(monkeypatch):
    import spice.display.fills as fills

    monkeypatch.setattr(fills, "PAIR_BUDGET", 500)
    rng = np.random.default_rng(9)
    rects, colors = random_fills(rng, 600, 64, 48, 48, 3)
    assert fills.overlapping_pairs(rects, fills.PAIR_BUDGET) is None
    cmds = batch_fills(rects, colors)
    canvas = np.zeros((48, 64), np.uint32)
    for cmd in cmds:
        paint_wire(canvas, b"".join(draw_fill_parts(cmd)))
    assert np.array_equal(canvas, paint_in_order(64, 48, rects, colors))
