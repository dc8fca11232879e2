"""The wire benchmark measures real spice-gtk traffic from our server and from Xspice."""

from __future__ import annotations

import pytest

from spice.display import wirebench

pytestmark = [pytest.mark.peer, pytest.mark.bench, pytest.mark.timeout(120)]


async def test_wire_measure_ours_counts_display_bytes():
    r = await wirebench.measure_ours("typing", 640, 480, 1.5, "LZ4", False)
    assert not r["errors"], r
    assert r["size"] == [640, 480]
    assert r["bytes"][wirebench.DISPLAY_CHANNEL] > 0 and r["frames"] > 0


@pytest.mark.skipif(not wirebench.xspice_available(), reason="xserver-xspice not installed")
async def test_wire_measure_xspice_reference():
    r = await wirebench.measure_xspice("typing", 800, 600, 1.5)
    assert not r["errors"], r
    assert r["size"] == [800, 600]
    assert r["bytes"][wirebench.DISPLAY_CHANNEL] > 0
