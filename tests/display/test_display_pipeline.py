"""Pipeline: the commands a client takes reproduce the guest's framebuffer exactly."""

from __future__ import annotations

import numpy as np
import pytest
from fakeguest import FakeGuest

from spice.display.caps import ImageCaps, ImageType
from spice.display.commands import CopyBits, DrawCopy, DrawFill, Resize
from spice.display.pipeline import DisplayPipeline, command_size
from spice.display.shadow import ShadowCanvas, visible
from spice.guests.base import Rect

GTK_CAPS = {0, 1, 2, 3, 4, 5, 7, 8, 9}


def caps(t: ImageType | None = None, cache_pixels: int = 0) -> ImageCaps:
    return ImageCaps.from_caps({0, 2, 3}, GTK_CAPS, "spice-gtk", force=t, cache_pixels=cache_pixels)


@pytest.mark.parametrize("image_type", [ImageType.BITMAP, ImageType.LZ4, ImageType.LZ_RGB, None])
@pytest.mark.parametrize("seed", [1, 2])
def test_every_take_reproduces_the_framebuffer(image_type, seed):
    g = FakeGuest(96, 64, seed)
    p = DisplayPipeline(g)
    if image_type is not None:
        p.force_type = image_type
    wakes = []
    c = p.attach(caps(cache_pixels=4096 if seed == 2 else 0), lambda: wakes.append(1))
    shadow = ShadowCanvas(96, 64)
    shadow.apply(c.take())
    assert np.array_equal(shadow.bgr(), visible(g.fb))
    assert not c.pending
    kinds = set()
    for frame_no in range(60):
        nframes = int(g.rng.integers(1, 4)) if frame_no % 3 else 1
        for _ in range(nframes):
            for _ in range(int(g.rng.integers(1, 5))):
                g.random_op()
            g.finish()
        cmds = c.take()
        kinds |= {type(x) for x in cmds}
        shadow.apply(cmds)
        assert np.array_equal(shadow.bgr(), visible(g.fb)), frame_no
        assert not c.pending
    assert {DrawCopy, DrawFill, CopyBits} <= kinds


def test_wakeup_once_per_frame_and_not_when_nothing_changed():
    g = FakeGuest(64, 32)
    p = DisplayPipeline(g)
    wakes = []
    c = p.attach(caps(), lambda: wakes.append(g.serial))
    c.take()
    for _ in range(5):
        g.damage(Rect(0, 0, 8, 8))
        g.damage(Rect(10, 10, 20, 20))
    g.finish()
    assert wakes == [1]
    c.take()
    g.damage(Rect(0, 0, 8, 8), kind="none")  # reported but the pixels did not change
    g.fb[0:8, 0:8] = p.snapshot[0:8, 0:8]
    g.finish()
    assert wakes == [1] and not c.pending


def test_slow_client_gets_coalesced_damage():
    g = FakeGuest(128, 96, 3)
    p = DisplayPipeline(g)
    fast = p.attach(caps(ImageType.LZ4), lambda: None)
    slow = p.attach(caps(ImageType.LZ4), lambda: None)
    fs, ss = ShadowCanvas(128, 96), ShadowCanvas(128, 96)
    fs.apply(fast.take())
    ss.apply(slow.take())
    fast_cmds = 0
    for _ in range(200):
        g.random_op()
        g.random_op()
        g.finish()
        cmds = fast.take()
        fast_cmds += len(cmds)
        fs.apply(cmds)
    cmds = slow.take()
    ss.apply(cmds)
    assert np.array_equal(ss.bgr(), visible(g.fb))
    assert np.array_equal(fs.bgr(), visible(g.fb))
    # bounded: no pass-through backlog, at most one image per dirty band of the screen
    assert not any(isinstance(x, CopyBits) for x in cmds)
    assert len(cmds) <= (128 // 8) * (96 // 8)
    assert len(cmds) < fast_cmds


def test_two_clients_share_encodes():
    g = FakeGuest(200, 120, 4)
    p = DisplayPipeline(g)
    a = p.attach(caps(ImageType.LZ_RGB), lambda: None)
    b = p.attach(caps(ImageType.LZ_RGB), lambda: None)
    html5 = p.attach(ImageCaps.from_caps({3}, {0, 4, 8, 9, 10}, "spice-html5"), lambda: None)
    ta, tb, th = a.take(), b.take(), html5.take()
    assert [x.image for x in ta if isinstance(x, DrawCopy)] == [x.image for x in tb if isinstance(x, DrawCopy)]
    imgs_a = {id(x.image) for x in ta if isinstance(x, DrawCopy)}
    assert imgs_a == {id(x.image) for x in tb if isinstance(x, DrawCopy)}  # the very same bytes objects
    assert imgs_a == {id(x.image) for x in th if isinstance(x, DrawCopy)}  # html5 also gets LZ_RGB
    encodes = p.stats.encodes
    g.damage(Rect(3, 5, 150, 70))
    g.finish()
    a.take()
    assert p.stats.encodes > encodes
    encodes = p.stats.encodes
    b.take()
    assert p.stats.encodes == encodes


def test_lz4_only_for_clients_that_announce_it():
    g = FakeGuest(200, 120)
    g.fb[..., :3] = np.arange(200, dtype=np.uint8)[None, :, None] // 16  # compressible UI-like bands
    p = DisplayPipeline(g)
    no_lz4 = p.attach(ImageCaps.from_caps({3}, GTK_CAPS - {5}, "spice-gtk"), lambda: None)
    with_lz4 = p.attach(caps(), lambda: None)
    web = p.attach(ImageCaps.from_caps({3}, set(), "web"), lambda: None)
    html5 = p.attach(ImageCaps.from_caps({3}, {0, 4, 8, 9, 10}, "spice-html5"), lambda: None)

    def types(c):
        return {x.image[8] for x in c.take() if isinstance(x, DrawCopy)}

    assert types(no_lz4) == {ImageType.LZ_RGB}
    assert types(with_lz4) == {ImageType.LZ4}
    assert types(web) == {ImageType.LZ4}
    assert types(html5) == {ImageType.LZ_RGB}
    # small pieces: LZ4 (the high-compression coder at this size), LZ_RGB only where LZ4 cannot compress
    from spice.display import images
    c = p.attach(caps(), lambda: None)
    c.take()
    g.damage(Rect(0, 0, 30, 20), "text")
    g.finish()
    with_lz4.take()
    small = [x for x in c.take() if isinstance(x, DrawCopy)]
    assert small and all(x.image[8] == ImageType.LZ4 for x in small)
    px = p.snapshot[small[0].rect.top:small[0].rect.bottom, small[0].rect.left:small[0].rect.right]
    assert small[0].image == images.encode_lz4(px, int.from_bytes(small[0].image[:8], "little"))
    g.fb[40:60, 0:30, :3] = np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8)  # noise
    g.damage(Rect(0, 40, 30, 60), "noise")
    g.finish()
    with_lz4.take()
    noisy = [x for x in c.take() if isinstance(x, DrawCopy)]
    assert noisy and all(x.image[8] == ImageType.LZ_RGB for x in noisy)


def test_max_bytes_splits_a_take_and_the_rest_stays_pending():
    g = FakeGuest(256, 128, 5)
    p = DisplayPipeline(g, max_band_pixels=2048)
    c = p.attach(caps(ImageType.BITMAP), lambda: None)
    shadow = ShadowCanvas(256, 128)
    sizes = []
    while c.pending:
        cmds = c.take(max_bytes=40_000)
        sizes.append(sum(command_size(x) for x in cmds))
        shadow.apply(cmds)
    assert len(sizes) > 3
    assert max(sizes) < 40_000 + 2048 * 4 + 200
    assert np.array_equal(shadow.bgr(), visible(g.fb))


def test_solid_damage_becomes_fill_and_large_damage_is_banded():
    g = FakeGuest(640, 400)
    p = DisplayPipeline(g)
    c = p.attach(caps(ImageType.BITMAP), lambda: None)
    c.take()
    g.fb[:, :, :3] = (1, 2, 3)
    g.report(Rect(0, 0, 640, 400))
    g.finish()
    cmds = c.take()
    assert cmds and all(isinstance(x, DrawFill) and x.color == 0x030201 for x in cmds)
    g.damage(Rect(0, 0, 640, 400))
    g.finish()
    cmds = c.take()
    assert all(isinstance(x, DrawCopy) and x.rect.area * 4 <= 256 * 1024 for x in cmds)
    assert sum(x.rect.area for x in cmds) == 640 * 400


def test_resize_gives_resize_then_full_screen():
    g = FakeGuest(64, 32)
    p = DisplayPipeline(g)
    c = p.attach(caps(), lambda: None)
    c.take()
    g.resize(80, 48)
    cmds = c.take()
    assert cmds[0] == Resize(80, 48)
    shadow = ShadowCanvas(1, 1)
    shadow.apply(cmds)
    assert np.array_equal(shadow.bgr(), visible(g.fb))


def test_detach_stops_updates():
    g = FakeGuest(64, 32)
    p = DisplayPipeline(g)
    calls = []
    c = p.attach(caps(), lambda: calls.append(1))
    c.take()
    c.detach()
    g.damage(Rect(0, 0, 10, 10))
    g.finish()
    assert calls == [] and p.clients == ()


def test_in_step_client_gets_copies_then_the_exact_changed_box():
    """A frame that copies and then draws a little (a typed letter: the cursor cell copied, the letter
    drawn) sends the copy and the exact changed pixels, not the 8-pixel cells around them."""
    g = FakeGuest(128, 96, 9)
    p = DisplayPipeline(g)
    c = p.attach(caps(ImageType.BITMAP), lambda: None)
    shadow = ShadowCanvas(128, 96)
    shadow.apply(c.take())
    g.copy(Rect(3, 5, 12, 23), 40, 5)
    g.fb[13:20, 21:30, 0] ^= 0xFF
    g.report(Rect(19, 10, 31, 22))  # reported a bit larger than what changed
    g.finish()
    cmds = c.take()
    assert [type(x) for x in cmds] == [CopyBits, DrawCopy] and cmds[1].rect == Rect(21, 13, 30, 20)
    shadow.apply(cmds)
    assert np.array_equal(shadow.bgr(), visible(g.fb))
    g.fill(Rect(60, 60, 70, 70), 0xFF123456)  # damage over this frame's fill is sent whole
    g.copy(Rect(0, 0, 8, 8), 100, 80)
    g.fb[62:64, 62:64, 1] ^= 0xFF
    g.report(Rect(61, 61, 66, 66))
    g.damage(Rect(100, 84, 104, 88), "flat")  # ... and so is damage over a copy's destination
    g.finish()
    cmds = c.take()
    assert Rect(61, 61, 66, 66) in [x.rect for x in cmds] and Rect(100, 84, 104, 88) in [x.rect for x in cmds]
    shadow.apply(cmds)
    assert np.array_equal(shadow.bgr(), visible(g.fb))


def test_in_step_client_gets_the_exact_changed_box():
    g = FakeGuest(128, 96, 9)
    p = DisplayPipeline(g)
    c = p.attach(caps(ImageType.BITMAP), lambda: None)
    lagging = p.attach(caps(ImageType.BITMAP), lambda: None)
    c.take()
    lagging.take()
    g.fb[13:20, 21:30, 0] ^= 0xFF  # 9x7 pixels really change ...
    g.report(Rect(10, 10, 60, 40))  # ... inside a larger reported damage
    g.finish()
    cmds = c.take()
    assert [x.rect for x in cmds] == [Rect(21, 13, 30, 20)]
    g.fb[50:52, 50:52, 1] ^= 0xFF
    g.report(Rect(50, 50, 52, 52))
    g.finish()  # two frames since its last take: cell-aligned coalesced damage instead
    rects = [x.rect for x in lagging.take()]
    assert Rect(16, 8, 32, 24) in rects or any(r.left <= 21 and r.right >= 30 for r in rects)
    assert all(r.left % 8 == 0 and r.top % 8 == 0 for r in rects)


def test_marked_is_any_for_every_single_mark_and_for_none():
    from spice.display.region import marked

    for shape in ((96, 128), (1, 1), (3, 5)):
        mask = np.zeros(shape, bool)
        assert not marked(mask)
        for i in range(mask.size):
            one = mask.copy()
            one.flat[i] = True
            assert marked(one)
            assert marked(one[:, ::-1]) and not marked(mask[:, ::-1])  # views too


def test_cell_grid_rects_cover_exactly_the_marked_cells():
    """rects(): disjoint rectangles whose cells are exactly the marked ones (few or many marks, edge cells)."""
    from spice.display.region import MAX_RECTS, CellGrid

    rng = np.random.default_rng(5)
    for _ in range(300):
        w, h = int(rng.integers(8, 300)), int(rng.integers(8, 200))
        grid = CellGrid(w, h, 8)
        mask = rng.random(grid.shape) < rng.choice([0.0, 0.02, 0.3, 0.9])
        rects = grid.rects(mask)
        covered = np.zeros(grid.shape, int)
        for r in rects:
            assert r.intersect(Rect(0, 0, w, h)) == r
            ys, xs = grid.outer(r)
            covered[ys, xs] += 1
        if len(rects) <= MAX_RECTS and (covered <= 1).all():
            assert np.array_equal(covered > 0, mask)
        else:  # merged into one span per row: covers every mark
            assert (covered[mask] > 0).all()
