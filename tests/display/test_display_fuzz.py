"""Randomised end-to-end check of the pipeline: random frames (damage, fills, copies, resizes), three
kinds of clients (spice-gtk with pixmap cache, spice-html5, lossy), random take patterns and byte
budgets.  Lossless clients must be exact after every complete take; everyone after the refreshes."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fakeguest import FakeGuest

from spice.display.caps import ImageCaps
from spice.display.pipeline import DisplayPipeline
from spice.display.shadow import ShadowCanvas, visible

GTK = {0, 1, 2, 3, 4, 5, 7, 8, 9}
HTML5 = {0, 4, 8, 9, 10}


@pytest.mark.parametrize("seed", range(12))
def test_random_sessions_stay_exact(seed):
    rng = np.random.default_rng(seed)
    g = FakeGuest(int(rng.integers(20, 140)), int(rng.integers(20, 100)), seed)
    p = DisplayPipeline(g, max_passthrough_frames=int(rng.integers(1, 5)),
                        max_passthrough_cmds=int(rng.integers(1, 50)))
    kinds = [("spice-gtk", GTK, False), ("spice-html5", HTML5, False), ("spice-gtk", GTK, True)]
    clients = []
    for profile, caps, lossy in kinds:
        c = p.attach(ImageCaps.from_caps({3}, caps, profile, lossy=lossy,
                                         cache_pixels=int(rng.integers(0, 3000))), lambda: None)
        clients.append((c, ShadowCanvas(*g.size)))
    for c, sh in clients:
        sh.apply(c.take())
    for step in range(60):
        for _ in range(int(rng.integers(0, 4))):
            g.random_op()
        if rng.random() < 0.3:
            g.damage(g.rand_rect(), "noise")
        g.finish()
        if rng.random() < 0.04:
            g.resize(int(rng.integers(20, 140)), int(rng.integers(20, 100)))
        for c, sh in clients:
            assert c._maybe_dirty or not c._dirty.any(), step  # the emptiness shortcut's invariant
            if rng.random() < 0.6:
                budget = None if rng.random() < 0.5 else int(rng.integers(1, 5000))
                sh.apply(c.take(budget))
                assert c._maybe_dirty or not c._dirty.any(), step
                if not c.caps.lossy and not c.pending:
                    assert np.array_equal(sh.bgr(), visible(p.snapshot)), (step, c.caps.profile)
    p.tick(time.monotonic() + 1000)  # streams end, JPEG areas are refreshed losslessly
    for c, sh in clients:
        while c.pending:
            sh.apply(c.take(3000))
        assert np.array_equal(sh.bgr(), visible(g.fb)), c.caps.profile
