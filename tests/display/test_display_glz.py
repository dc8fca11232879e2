"""ZLIB_GLZ_RGB (spice.display.glz): codec round trips, per-client GLZ ids, and real spice-gtk."""

from __future__ import annotations

import asyncio
import re
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from fakeguest import FakeGuest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
import spicegtk  # noqa: E402

from spice.display import glz, glzref, images  # noqa: E402
from spice.display.caps import ImageCaps, ImageType  # noqa: E402
from spice.display.commands import DrawCopy  # noqa: E402
from spice.display.decode import decode_image  # noqa: E402
from spice.display.pipeline import DisplayPipeline  # noqa: E402
from spice.display.shadow import ShadowCanvas, visible  # noqa: E402
from spice.guests.base import Rect  # noqa: E402
from spice.guests.builtin.workloads import photo  # noqa: E402
from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

GTK_CAPS = {0, 1, 2, 3, 4, 5, 7, 8, 9}


def ui_image(rng: np.random.Generator, h: int, w: int, colours: int = 3) -> np.ndarray:
    pal = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
    img = pal[rng.integers(0, colours, (h, w))]
    img[h // 3:h // 2] = img[h // 3:h // 3 + 1]  # repeated rows: matches from above
    img[:, w // 4:w // 3] = img[:, w // 4:w // 4 + 1]  # flat columns: runs to the left
    return img


def glz_stream(image: bytes) -> bytes:
    glz_size, data_size = glz.SIZES.unpack_from(image, glz.DESCRIPTOR.size)
    data = image[glz.DESCRIPTOR.size + glz.SIZES.size:]
    assert len(data) == data_size
    stream = zlib.decompress(data)  # zlib checks the Adler-32
    assert len(stream) == glz_size
    return stream


@pytest.mark.parametrize("matches", [None, True, False])
@pytest.mark.parametrize("shape", [(1, 1), (1, 33), (7, 5), (24, 300), (64, 1024), (3, 4100)])
def test_round_trip(shape, matches):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    for img in (ui_image(rng, *shape), rng.integers(0, 256, (*shape, 4), dtype=np.uint8),
                np.full((*shape, 4), 9, np.uint8)):
        data = glz.encode_image(img, image_id=42, flags=images.CACHE_ME, matches=matches)
        d, px = decode_image(data)
        assert (d.id, d.type, d.flags, d.width, d.height) == (42, ImageType.ZLIB_GLZ_RGB, images.CACHE_ME,
                                                              shape[1], shape[0])
        assert np.array_equal(px[..., :3], img[..., :3]) and not px[..., 3].any()
        stream = glz_stream(data)
        magic, version, typ, w, h, stride, gid, dist = glz.GLZ_HEADER.unpack_from(stream)
        assert (magic, version, typ, w, h, stride, gid, dist) == (0x20205A4C, 0x00010001, 8 | 16, shape[1],
                                                                  shape[0], 4 * shape[1], 0, 0)


def test_matches_shrink_ui_and_photographs_stay_literal():
    rng = np.random.default_rng(1)
    ui = np.full((64, 512, 4), 240, np.uint8)  # a window: background, a title bar, sparse text ink
    ui[:12, :, :3] = (120, 60, 30)
    ui[20:60, 10:500][rng.random((40, 490)) < 0.1] = 0
    assert len(glz.encode_ops(ui)) < len(glz.encode_ops(ui, matches=False)) / 4
    ph = np.ascontiguousarray(photo(512, 64, 3))
    ops = glz.encode_ops(ph)
    assert ops.tobytes() == glz.encode_ops(ph, matches=False).tobytes()  # literal runs only
    assert len(ops) == 512 * 64 * 3 + 512 * 64 // 32  # 3 bytes a pixel + a control byte per 32 pixels
    assert np.array_equal(glz.decode_rgb32(glz.encode_rgb32(ph))[0][..., :3], ph[..., :3])


def test_long_and_short_matches_use_the_documented_bytes():
    img = np.zeros((2, 300, 4), np.uint8)
    img[..., :3] = (1, 2, 3)
    ops = glz.encode_ops(img, matches=True).tobytes()
    # a literal pixel; 299 pixels "same as the left one" (261 + 38: ctrl 7 << 5, extension L - 7, offset 0);
    # the second row "same as above" (offset 299 = 0x12B: 0xB in the ctrl byte, 0x12 next; 261 + 39)
    assert ops == bytes([0, 1, 2, 3, 224, 254, 0, 0, 224, 31, 0, 0, 235, 254, 0x12, 0, 235, 32, 0x12, 0])
    assert np.array_equal(glz.decode_rgb32(glz.glz_header(300, 2) + ops)[0][..., :3], img[..., :3])


def test_stamp_writes_the_id_and_keeps_the_checksum_right():
    rng = np.random.default_rng(2)
    img = ui_image(rng, 30, 70)
    data = glz.encode_image(img, 5)
    for gid in (0, 1, 255, 256, 70_000, 2**40 + 3, 2**64 - 1):
        stamped = glz.stamp(data, gid)
        assert len(stamped) == len(data) and glz.glz_id_of(stamped) == gid
        stream = glz_stream(stamped)
        assert glz.GLZ_HEADER.unpack_from(stream)[6] == gid
        assert stream[glz.GLZ_HEADER.size:] == glz_stream(data)[glz.GLZ_HEADER.size:]
        px, got_id, dist = glz.decode_body(memoryview(stamped)[glz.DESCRIPTOR.size:])
        assert (got_id, dist) == (gid, 0) and np.array_equal(px[..., :3], img[..., :3])
    assert glz.stamp(data, 0) is data


def test_decoder_rejects_references_to_other_images():
    ops = bytes([0, 1, 2, 3, 1 << 5, 0, 1])  # a literal, then a match in the previous image (image_dist 1)
    with pytest.raises(glz.GlzError):
        glz.decode_rgb32(glz.glz_header(2, 1, 5) + ops)
    with pytest.raises(glz.GlzError):
        glz.encode_ops(np.zeros((0, 4, 4), np.uint8))


class GlzWindow:
    """spice-gtk 0.42's GLZ decoder window (decode-glz.c), as far as ids and releases go."""

    def __init__(self) -> None:
        self.slots: list[int | None] = [None] * 16
        self.oldest = 0
        self.tail_gap = 0
        self.resizes = 0

    def add(self, gid: int, dist: int) -> None:
        assert dist <= gid, "win_head_dist past image 0: the client would loop over 2**64 ids"
        n = len(self.slots)
        if self.slots[gid % n] is not None:
            self.resizes += 1
            old, self.slots = self.slots, [None] * (2 * n)
            for i in old:
                if i is not None:
                    self.slots[i % len(self.slots)] = i
        n = len(self.slots)
        self.slots[gid % n] = gid
        while self.tail_gap <= gid and self.slots[self.tail_gap % n] is not None:
            self.tail_gap += 1
        head = self.slots[(self.tail_gap - 1) % n]
        assert head is not None, "the client's g_return_if_fail: no image before the gap"
        while self.oldest < head:  # head's win_head_dist is 0 here
            self.slots[self.oldest % n] = None
            self.oldest += 1

    @property
    def held(self) -> int:
        return sum(i is not None for i in self.slots)


@pytest.fixture
def fast_deflate(monkeypatch):
    """Photographs go to GLZ as with ISA-L installed (without it zlib does the work, slower)."""
    monkeypatch.setattr(glz, "FAST_DEFLATE", True)


def test_each_client_numbers_its_glz_images_from_0_and_the_window_keeps_one(fast_deflate):
    g = FakeGuest(256, 160, seed=4)
    g.fb[:] = photo(256, 160, 1)
    p = DisplayPipeline(g, max_band_pixels=8192)
    gtk = ImageCaps.from_caps({3}, GTK_CAPS, "spice-gtk")
    a = p.attach(gtk, lambda: None)
    windows = {"a": GlzWindow()}
    shadows = {"a": ShadowCanvas(256, 160)}
    clients = {"a": a}
    ids: dict[str, list[int]] = {"a": []}
    for step in range(12):
        if step == 5:  # a second client joins mid-way: its own ids from 0
            clients["b"] = p.attach(gtk, lambda: None)
            windows["b"], shadows["b"], ids["b"] = GlzWindow(), ShadowCanvas(256, 160), []
        ox, oy = 7 * step % 40, 3 * step % 30
        g.fb[:] = photo(296, 190, 1 + step % 2)[oy:oy + 160, ox:ox + 256]
        g.report(Rect(0, 0, 256, 160))
        g.finish()
        for name, c in clients.items():
            cmds = c.take()
            shadows[name].apply(cmds)
            for cmd in cmds:
                if isinstance(cmd, DrawCopy) and cmd.image[8] == ImageType.ZLIB_GLZ_RGB:
                    _, gid, dist = glz.decode_body(memoryview(cmd.image)[glz.DESCRIPTOR.size:])
                    windows[name].add(gid, dist)
                    ids[name].append(gid)
                    assert windows[name].held == 1
            assert np.array_equal(shadows[name].bgr(), visible(g.fb))
    assert ids["a"] == list(range(len(ids["a"]))) and len(ids["a"]) >= 12 * 5
    assert ids["b"] == list(range(len(ids["b"]))) and len(ids["b"]) >= 7 * 5
    assert windows["a"].resizes == windows["b"].resizes == 0
    assert p.stats.shared > 0  # one deflate for both clients


def test_only_spice_gtk_gets_zlib_glz(fast_deflate):
    g = FakeGuest(200, 120, seed=5)
    g.fb[:] = photo(200, 120, 2)
    p = DisplayPipeline(g)
    got = {}
    for profile, display_caps in (("spice-gtk", GTK_CAPS), ("web", {5}), ("spice-html5", {0, 4, 8, 9, 10})):
        c = p.attach(ImageCaps.from_caps({3}, display_caps, profile), lambda: None)
        got[profile] = {x.image[8] for x in c.take() if isinstance(x, DrawCopy)}
    assert got == {"spice-gtk": {ImageType.ZLIB_GLZ_RGB}, "web": {ImageType.LZ4},
                   "spice-html5": {ImageType.LZ_RGB}}
    for profile in ("web", "spice-html5"):
        with pytest.raises(ValueError):
            ImageCaps.from_caps({3}, {5}, profile, force=ImageType.ZLIB_GLZ_RGB)


def test_without_a_fast_deflate_photographs_stay_lz4(monkeypatch):
    monkeypatch.setattr(glz, "FAST_DEFLATE", False)
    g = FakeGuest(320, 64, seed=9)
    g.fb[:] = photo(320, 64, 5)
    p = DisplayPipeline(g)
    c = p.attach(ImageCaps.from_caps({3}, GTK_CAPS, "spice-gtk"), lambda: None)
    assert {x.image[8] for x in c.take() if isinstance(x, DrawCopy)} == {ImageType.LZ4}


def test_spice_gtk_gets_glz_for_photographs_and_where_lz4_is_big(fast_deflate):
    g = FakeGuest(320, 64, seed=8)
    g.fb[:] = 240
    g.fb[10:20, 10:300, :3] = (200, 100, 50)  # a plain UI piece: a few hundred bytes of LZ4
    p = DisplayPipeline(g)
    c = p.attach(ImageCaps.from_caps({3}, GTK_CAPS, "spice-gtk"), lambda: None)

    def sent() -> list[DrawCopy]:
        return [x for x in c.take() if isinstance(x, DrawCopy)]

    (ui,) = sent()
    assert ui.image[8] == ImageType.LZ4 and len(ui.image) <= 2048
    g.damage(Rect(0, 0, 320, 64), "text")  # sparse ink: LZ4 needs kilobytes
    g.finish()
    (text,) = sent()
    lz4 = images.encode_lz4(p.snapshot)
    assert len(lz4) > 2048 and text.image[8] == ImageType.ZLIB_GLZ_RGB and len(text.image) < 0.8 * len(lz4)
    g.fb[:] = photo(320, 64, 4)
    g.report(Rect(0, 0, 320, 64))
    g.finish()
    (ph,) = sent()
    assert ph.image[8] == ImageType.ZLIB_GLZ_RGB and len(ph.image) < 0.8 * len(images.encode_lz4(p.snapshot))
    assert [glz.glz_id_of(x.image) for x in (text, ph)] == [0, 1]


# -- real spice-gtk

W, H = 320, 200
DECODE_LINE = re.compile(r"decode_header: (\d+)x(\d+), id (\d+), ref (\d+)")


async def _gtk_client(uri: str, workdir: Path, dump: Path, settle: float) -> dict:
    """gtk_client.py with spice-gtk's debug log (SPICE_DEBUG=1: one ``decode_header`` line per GLZ image)."""
    report = workdir / "gtk-report.json"
    rc, text = await spicegtk.run([spicegtk.SYSTEM_PYTHON, str(spicegtk.GTK_CLIENT), uri, "pw", str(report),
                                   "--settle", str(settle), "--dump", str(dump)], 90, env={"SPICE_DEBUG": "1"})
    import json

    data = json.loads(report.read_text()) if report.exists() else {"errors": ["no report"]}
    data["rc"], data["output"] = rc, text
    return data


@pytest.mark.peer
@pytest.mark.timeout(180)
@pytest.mark.skipif(not spicegtk.have_spice_glib(), reason="SpiceClientGLib (gi) missing")
@pytest.mark.parametrize("history", [None, 20 * 7680])
async def test_spice_gtk_decodes_glz_references_exactly(tmp_path, fast_deflate, monkeypatch, history):
    """A slideshow of translated crops to real spice-gtk: images refer to earlier ones in its GLZ window
    (pixel-exact, no wait for a missing image), a second client joins half-way with its own ids and window,
    a third connects after the first left; ``history``: our bound below the client's window (20 bands of
    24 rows: two pictures and a bit, so the oldest go while later images still refer to others)."""
    if history is not None:
        monkeypatch.setattr(glzref, "MAX_HISTORY_PIXELS", history)
    guest = FakeGuest(W, H, seed=6)
    guest.fb[:] = photo(W, H, 1)
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw"))
    pipeline = srv.display_pipeline
    pipeline.max_band_pixels = 8192  # many GLZ images per picture: references across bands and frames
    await srv.start()
    uri = f"spice://127.0.0.1:{srv.ports['plain']}"
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = asyncio.create_task(_gtk_client(uri, tmp_path / "a", tmp_path / "a.raw", 5.0))
        await spicegtk.wait_attached(pipeline)
        assert pipeline.clients[0].glz.limit == min(glzref.MAX_HISTORY_PIXELS, 32 << 18)  # RAM_HINT / 2
        second = None
        for step in range(16):  # a slideshow of photograph crops, plus a second client half-way
            if step == 8:
                second = asyncio.create_task(_gtk_client(uri, tmp_path / "b", tmp_path / "b.raw", 3.0))
            ox, oy = 11 * step % 60, 5 * step % 40
            guest.fb[:] = photo(W + 60, H + 40, 1 + step % 2)[oy:oy + H, ox:ox + W]
            if step % 3 == 2:
                guest.fb[:] = guest.fb[:, ::-1]
            guest.report(Rect(0, 0, W, H))
            guest.finish()
            await asyncio.sleep(0.15)
        reps = [await first, await second]
        # the first client gone, a third one connects to the same server: ids from 0 again
        third = await _gtk_client(uri, tmp_path / "b", tmp_path / "c.raw", 1.5)
    finally:
        await srv.close()
    assert pipeline.stats.glz_refs > (0 if history else 16)
    band = 7680  # 24 rows of 320
    for rep, dump in zip([*reps, third], ("a.raw", "b.raw", "c.raw"), strict=True):
        assert not rep["errors"], rep["errors"]
        shown = spicegtk.read_dump(tmp_path / dump, W, H)
        assert np.array_equal(shown[..., :3], guest.fb[..., :3])
        out = rep["output"]
        ids = [int(m[3]) for m in DECODE_LINE.finditer(out)]
        oldest = [int(m[4]) for m in DECODE_LINE.finditer(out)]  # id - win_head_dist
        assert ids and ids == list(range(len(ids)))
        assert oldest == sorted(oldest) and all(o <= i for o, i in zip(oldest, ids, strict=True))
        # what the client holds after each image (oldest .. id, 8192-pixel bands) fits our bound
        assert max(i - o + 1 for o, i in zip(oldest, ids, strict=True)) * band <= glzref.MAX_HISTORY_PIXELS
        assert "CRITICAL" not in out and "zlib inflate failed" not in out
    assert len([m for m in DECODE_LINE.finditer(reps[0]["output"])]) > 16
