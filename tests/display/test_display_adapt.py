"""Stream adaptation from STREAM_REPORT: drops lower the MJPEG quality, then the frame rate; good reports
win them back; a client that cannot decode gets no more streams (lossless pictures instead)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_display_streams import streaming_client, video_frame

from spice.display.commands import StreamData, StreamDestroy
from spice.display.pipeline import STREAM_QUALITY_MIN, STREAM_QUALITY_STEP, stream_quality
from spice.display.shadow import visible


def frame_data(g, c, sh, t) -> bytes:
    video_frame(g, t)
    g.finish()
    cmds = c.take()
    sh.apply(cmds)
    return b"".join(x.data for x in cmds if isinstance(x, StreamData))


def test_drops_lower_quality_then_rate_and_good_reports_restore():
    g, p, c, sh = streaming_client()
    s = p.active_stream
    base = stream_quality(s.rect)
    assert frame_data(g, c, sh, 100) == p.stream_frame(s, base).data
    c.stream_report(3, 2, 40)  # 40 % dropped: one quality step down
    sent = frame_data(g, c, sh, 101)
    assert sent == p.stream_frame(s, base - STREAM_QUALITY_STEP).data != p.stream_frame(s, base).data
    for _ in range(10):
        c.stream_report(5, 0, -20)  # late frames: quality to the floor, then fewer frames
    assert c.stream_interval > 0
    time.sleep(c.stream_interval)
    assert frame_data(g, c, sh, 102) == p.stream_frame(s, STREAM_QUALITY_MIN).data
    assert frame_data(g, c, sh, 103) == b""  # too soon after the previous frame
    for _ in range(40):
        c.stream_report(5, 0, 80)
    assert c.stream_interval == 0 and c.stream_quality_drop == 0
    assert frame_data(g, c, sh, 104) == p.stream_frame(s, base).data


def test_client_that_cannot_decode_gets_lossless_pictures():
    g, p, c, sh = streaming_client()
    c.stream_report(0, 0xFFFFFFFF, 0)
    cmds = c.take()
    assert any(isinstance(x, StreamDestroy) for x in cmds)
    sh.apply(cmds)
    for t in range(20, 40):
        video_frame(g, t)
        g.finish()
        cmds = c.take()
        assert not any(isinstance(x, StreamData) for x in cmds)
        sh.apply(cmds)
    p.tick(time.monotonic() + 1000)  # JPEG stills (lossy client) get their lossless refresh
    sh.apply(c.take())
    assert np.array_equal(sh.bgr(), visible(g.fb))


@pytest.mark.peer
@pytest.mark.timeout(120)
async def test_spice_gtk_reports_on_our_streams():
    """spice-gtk gets STREAM_ACTIVATE_REPORT with every stream and answers with STREAM_REPORTs we accept."""
    from spice.display import wirebench
    from spice.guests.builtin.guest import BuiltinGuest
    from spice.server.config import ServerConfig
    from spice.server.server import SpiceServer

    srv = SpiceServer(BuiltinGuest(640, 480, workload="video-320x240"),
                      ServerConfig(port=0, disable_ticketing=True, streaming="mjpeg"))

    def reports() -> int:
        return sum(getattr(conn.channel, "stream_reports", 0) for conn in list(srv.connections))

    await srv.start()
    try:
        r = await wirebench.probe(f"spice://127.0.0.1:{srv.ports['plain']}", 3.0, lambda: (0.0, reports()))
    finally:
        await srv.close()
    assert not r["errors"], r
    assert srv.display_pipeline.stats.streams >= 1
    assert r["server_frames"] >= 2  # reports counted during the 3 s window (5 frames / 1 s each)
