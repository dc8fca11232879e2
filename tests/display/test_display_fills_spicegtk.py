"""Real spice-gtk draws our batched DRAW_FILLs (RECTS clips) pixel-exactly: the many-small-fills scene."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
import spicegtk  # noqa: E402
from scenes import many_fills_guest  # noqa: E402

from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120),
              pytest.mark.skipif(not spicegtk.have_spice_glib(), reason="SpiceClientGLib (gi) missing")]

W, H = 640, 480


async def test_spice_gtk_shows_the_many_small_fills_scene_exactly(tmp_path, monkeypatch):
    guest, grouped = many_fills_guest(monkeypatch, W, H)
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw"))
    await srv.start()
    try:
        client = await spicegtk.watch_dump(srv, tmp_path, settle=4)
        steps = guest.workload.steps
        await asyncio.sleep(1.5)  # fills drawn while it watches
        await guest.stop()  # then still: the dump must equal the framebuffer
        assert guest.workload.steps - steps >= 10
        rep = await client
    finally:
        await srv.close()
    assert not rep["errors"], rep
    assert len(grouped) > 100 and sum(grouped) > 3 * len(grouped), grouped[:20]
    shown = spicegtk.read_dump(tmp_path / "fb.raw", W, H)
    fb = guest.framebuffer
    assert np.array_equal(shown[..., :3], fb[..., :3]), int((shown[..., :3] != fb[..., :3]).any(axis=2).sum())
