"""GLZ references into earlier images (spice.display.glzref, glz.encode_ops with refs): the translation
search, the encoder's cross-image matches against the reference decoder, and the window accounting."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakeguest import FakeGuest  # noqa: E402

from spice.display import glz, glzref  # noqa: E402
from spice.display.caps import ImageCaps, ImageType  # noqa: E402
from spice.display.commands import DrawCopy  # noqa: E402
from spice.display.pipeline import DisplayPipeline  # noqa: E402
from spice.display.shadow import ShadowCanvas, visible  # noqa: E402
from spice.guests.base import Rect  # noqa: E402
from spice.guests.builtin.workloads import photo  # noqa: E402

GTK_CAPS = {0, 1, 2, 3, 4, 5, 7, 8, 9}
PHOTO = photo(700, 500, 3)


def _held(history: glzref.GlzHistory, top: int, left: int, px: np.ndarray) -> tuple[int, int]:
    return history.add(top, left, *glzref.picture(px))


@settings(max_examples=200, deadline=None)
@given(st.integers(-120, 120), st.integers(-60, 60), st.integers(0, 2), st.integers(64, 300),
       st.integers(24, 80))
def test_random_translations_decode_exactly_and_shrink(dx, dy, older, w, h):
    """An image that is an earlier one moved by (dy, dx), with ``older`` images sent in between: the search
    finds the move, the stream refers to the held image and decodes (reference decoder) to the pixels."""
    x0, y0 = 200, 150
    old = np.ascontiguousarray(PHOTO[y0:y0 + h, x0:x0 + w])
    new = np.ascontiguousarray(PHOTO[y0 + dy:y0 + dy + h, x0 + dx:x0 + dx + w])
    hist = glzref.GlzHistory(1 << 20)
    window = {}
    for img in [old] + [np.ascontiguousarray(PHOTO[:h, :w][::-1])] * older:  # unrelated images in between
        gid, _ = _held(hist, 0, 0, img)
        window[gid] = glz.decode_rgb32(glz.encode_rgb32(img, gid))[0]
    dist = hist.make_room(w * h)
    found = hist.search(0, 0, glzref.picture(new)[0])
    overlap = max(0, w - abs(dx)) * max(0, h - abs(dy))
    if found is None:  # only when too little overlaps (too few probe patches see it)
        assert overlap < 0.75 * w * h
        return
    refs, ref_map = found
    assert {r.dist for r in refs} <= set(range(1, older + 2))
    stream = glz.encode_rgb32(new, hist.next_id, dist, refs=refs, ref_map=ref_map)
    px, gid, got_dist = glz.decode_rgb32(stream, window)
    assert (gid, got_dist) == (hist.next_id, dist)
    assert np.array_equal(px[..., :3], new[..., :3])
    plain = glz.encode_rgb32(new, hist.next_id, dist)
    assert len(stream) < len(plain) - 2 * np.count_nonzero(ref_map >= 0)  # matched pixels cost little


def test_tokens_use_every_offset_and_distance_form():
    """Matches into images 1..70000 back at offsets below 4096, below 2**17 and above: the three offset
    forms and 0-3 extra distance bytes of decode-glz-tmpl.c."""
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (600, 300, 4), dtype=np.uint8)  # 180000 pixels: offsets past 2**17
    new = np.ascontiguousarray(np.concatenate([big[2:3, :300], big[200:201, :300], big[590:591, :300]]))
    window = {}
    for dist in (1, 63, 64, 300, 16384, 70000):
        gid = 70000
        window = {gid - dist: big}
        refs = [glz.Ref(dist, 2, 0, 300), glz.Ref(dist, 199, 0, 300), glz.Ref(dist, 588, 0, 300)]
        ref_map = np.repeat(np.arange(3, dtype=np.int16)[:, None], 300, axis=1)
        ref_map[:, :5] = -1  # literals first
        stream = glz.encode_rgb32(new, gid, dist, refs=refs, ref_map=ref_map)
        px = glz.decode_rgb32(stream, window)[0]
        assert np.array_equal(px[..., :3], new[..., :3])
    with pytest.raises(glz.GlzError):
        glz.decode_rgb32(stream, {})  # the image is gone: spice-gtk would wait for it for ever


def test_window_accounting_follows_the_clients_size():
    hist = glzref.GlzHistory(3000)
    img = np.zeros((10, 100, 4), np.uint8)
    img[..., 0] = np.arange(100)
    got = [_held(hist, 0, 0, img) for _ in range(5)]
    # 1000 pixels each, 3000 in the window with the new one: two older images stay
    assert got == [(0, 0), (1, 1), (2, 2), (3, 2), (4, 2)]
    assert [h.gid for h in hist.held] == [2, 3, 4] and hist.pixels == 3000
    assert hist.search(0, 0, glzref.picture(img)[0]) is not None
    hist.make_room(1000)
    assert [h.gid for h in hist.held] == [3, 4]
    refs, _ = hist.search(0, 0, glzref.picture(img)[0])
    assert min(r.dist for r in refs) >= 1 and max(r.dist for r in refs) <= 2  # ids 3 and 4 from id 5
    none = glzref.GlzHistory(0)
    assert [_held(none, 0, 0, img) for _ in range(3)] == [(0, 0), (1, 0), (2, 0)] and not none.held


def _slides(g: FakeGuest, n: int, m: int = 48) -> None:
    w, h = g.size
    rng = np.random.default_rng(n)
    ox, oy = int(rng.integers(0, 2 * m)), int(rng.integers(0, 2 * m))
    img = photo(w + 2 * m, h + 2 * m, 1 + n % 2)[oy:oy + h, ox:ox + w]
    g.fb[:] = img[:, ::-1] if n // 2 % 2 else img
    g.report(Rect(0, 0, w, h))
    g.finish()


def test_pipeline_refers_only_to_what_each_client_holds(monkeypatch):
    """Two spice-gtk clients, one joining late and one with a small window: every GLZ image decodes
    against that client's own window model (a reference to anything else raises), the late one gets no
    reference to images sent before it came, and references make the repeated pictures small."""
    monkeypatch.setattr(glz, "FAST_DEFLATE", True)
    W, H = 384, 256
    g = FakeGuest(W, H, seed=2)
    p = DisplayPipeline(g, max_band_pixels=16384)
    caps = ImageCaps.from_caps({3}, GTK_CAPS, "spice-gtk")
    clients = {"big": p.attach(caps, lambda: None)}
    clients["big"].glz.set_window(1 << 22)
    shadows = {"big": ShadowCanvas(W, H)}
    sizes: dict[str, list[int]] = {"big": []}
    for n in range(12):
        if n == 5:
            clients["late"] = p.attach(caps, lambda: None)
            clients["late"].glz.set_window(4 * W * H)  # four pictures: n - 4 is gone when n comes
            shadows["late"], sizes["late"] = ShadowCanvas(W, H), []
        _slides(g, n)
        for name, c in clients.items():
            cmds = c.take()
            shadows[name].apply(cmds)  # decode_image with the client's GLZ window: raises on a missing image
            assert np.array_equal(shadows[name].bgr(), visible(g.fb))
            sizes[name].append(sum(len(x.image) for x in cmds if isinstance(x, DrawCopy)))
            assert all(x.image[8] == ImageType.ZLIB_GLZ_RGB for x in cmds if isinstance(x, DrawCopy))
            held = shadows[name].glz_window
            assert sum(v.shape[0] * v.shape[1] for v in held.values()) <= c.glz.limit
    big, late = sizes["big"], sizes["late"]
    assert max(big[4:]) < 0.35 * min(big[:4])  # n and n - 4: the same picture moved
    assert late[:4] == sorted(late[:4], reverse=True) or min(late[:4]) > 0.6 * max(big[:4])  # nothing to refer to yet
    assert min(late[:4]) > 2 * max(big[5:9])
    assert p.stats.glz_refs > 0
