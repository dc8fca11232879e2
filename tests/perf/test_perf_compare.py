"""``aiospice bench compare``, short: aiospice and Xspice measured side by side by the same spice-gtk
client; prints the table (figures, no timed asserts)."""

from __future__ import annotations

import pytest

from spice.display import browserbench, compare, wirebench

pytestmark = [pytest.mark.peer, pytest.mark.bench, pytest.mark.timeout(300)]


@pytest.mark.skipif(not wirebench.xspice_available(), reason="xserver-xspice not installed")
async def test_perf_compare_short_table():
    rows = await compare.compare(["typing", "video-320x240", "echo"], 800, 600, 2.5, warmup=1.0,
                                 latency_keys=0)
    print()
    for line in compare.format_table(rows):
        print(line)
    got = {(wl, server): s for wl, server, s in rows}
    assert all(isinstance(s, dict) for s in got.values()), got
    for server in ("aiospice", "Xspice"):
        assert got["typing", server]["display_kb10"] > 0  # both servers drew the typed text
        assert got["video-320x240", server]["fps"] > 0
        assert got["echo", server]["n_lat"] > 0, got["echo", server]  # key presses came back as pixels


@pytest.mark.skipif(not (wirebench.xspice_available() and browserbench.available()),
                    reason="xserver-xspice or chromium/playwright missing")
async def test_perf_browser_latency_row():
    rows = await compare.compare([], 800, 600, 3.0, browser=True, latency_keys=0)
    print()
    for line in compare.format_table(rows):
        print(line)
    got = {server: s for wl, server, s in rows if wl == "echo-browser"}
    assert set(got) == {"aiospice", "Xspice"} and all(isinstance(s, dict) for s in got.values()), got
    assert got["aiospice"]["n_lat"] > 0 and got["Xspice"]["n_lat"] > 0  # both clients drew the echoed keys


def test_perf_table_ratios():
    a = {"kb10": 7.0, "display_kb10": 7.0, "cpu10": 0.2, "fps": 30.0, "p50": 1.0, "p99": 2.0, "n_lat": 3}
    x = {"kb10": 10.0, "display_kb10": 10.0, "cpu10": 0.1, "fps": 30.0, "p50": 2.0, "p99": 2.0, "n_lat": 3}
    lines = compare.format_table([("typing", "aiospice", a), ("typing", "Xspice", x), ("scroll", "Xspice", "boom")])
    ours = next(line for line in lines if line.startswith("typing") and "aiospice" in line)
    assert ours.split()[-5:] == ["0.70", "2.00", "1.00", "0.50", "1.00"]
    assert any("error: boom" in line for line in lines)
    assert compare.percentile([5.0, 1.0, 3.0], 0.5) == 3.0 and compare.percentile([], 0.5) is None


def test_pool_adds_windows_and_keeps_errors():
    a = {"bytes": {"2": 100, "1": 5}, "seconds": 10.0, "cpu": 0.2, "frames": 30, "bursts": 31, "span": 2.9,
         "latency_ms": [1.0], "key_misses": 1}
    b = {"bytes": {"2": 300}, "seconds": 9.0, "cpu": 0.1, "frames": 20, "bursts": 20, "span": 1.9,
         "latency_ms": [2.0, 3.0], "key_misses": 0}
    r = compare.pool([a, b])
    assert r == {"bytes": {"2": 400, "1": 5}, "seconds": 19.0, "cpu": pytest.approx(0.3), "frames": 50,
                 "bursts": 51, "intervals": 48, "span": pytest.approx(4.8), "latency_ms": [1.0, 2.0, 3.0],
                 "key_misses": 1}
    s = compare.summarise(r, 20.0)
    assert s["display_kb10"] == pytest.approx(400 * 10 / 19.0 / 1000) and s["p50"] == 2.0 and s["n_lat"] == 3
    assert s["fps"] == pytest.approx(10.0) and s["bursts_per_s"] == pytest.approx(51 / 19.0)  # first to last
    assert compare.pool([a, {"errors": ["boom"]}]) == {"errors": ["boom"]}
