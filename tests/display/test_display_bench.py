"""The display benchmark runs end to end (short) and its self-check passes."""

from __future__ import annotations

import pytest

from spice.cli import build_parser


@pytest.mark.bench
def test_bench_display_runs_and_verifies(capsys):
    args = build_parser().parse_args(["bench", "display", "--size", "320x200", "--seconds", "0.3",
                                      "--guest", "synthetic", "--verify", "--types", "BITMAP,LZ_RGB,LZ4",
                                      "--workloads", "typing,window-drag", "--clients", "2"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("typing", "window-drag"))]
    assert len(rows) == 6 and all(line.split()[-1] == "ok" for line in rows)
