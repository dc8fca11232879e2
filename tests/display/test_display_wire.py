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


def test_proc_cpu_counts_live_threads_finely_and_exited_threads_too():
    """The benchmark's CPU figure: a child that burnt CPU in its main thread and in a thread that has
    ended reports the process time ``proc_cpu`` reads (the kernel's per-process CPU clock)."""
    import subprocess
    import sys

    code = ("import threading, time, sys\n"
            "def burn(s):\n    t = time.process_time()\n    while time.process_time() - t < s: pass\n"
            "th = threading.Thread(target=burn, args=(0.15,)); th.start(); th.join()\n"
            "burn(0.123)\nprint(time.process_time(), flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        own = float(proc.stdout.readline())
        assert abs(wirebench.proc_cpu(proc.pid) - own) < 0.002  # (the 10 ms ticks of /proc/PID/stat: not enough)
    finally:
        proc.communicate("")


async def test_compare_probe_counts_video_frames_without_the_clock(monkeypatch):
    """spice-gtk on our video-320x240 (25 fps): the probe's pictures are the video's frames; with the
    clock box widened to the whole screen nothing is a picture, though every burst is still seen."""
    from spice.display import compare

    r = await compare.measure_ours("video-320x240", 640, 480, 3.0)
    assert not r.get("errors"), r
    fps = (r["frames"] - 1) / r["span"]
    assert 21 <= fps <= 25.5, r
    assert r["bursts"] >= r["frames"]
    monkeypatch.setattr(compare, "CLOCK_BOX", (640, 480))
    r = await compare.measure_ours("video-320x240", 640, 480, 2.0)
    assert not r.get("errors") and r["frames"] == 0 and r["bursts"] > 40, r
