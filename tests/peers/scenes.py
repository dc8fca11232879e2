"""Guest scenes the peer tests (spice-gtk, Chromium) share."""

from __future__ import annotations

from datetime import datetime

import spice.display.fills as fills_module
from spice.guests.builtin import BuiltinGuest


def many_fills_guest(monkeypatch, width: int, height: int) -> tuple[BuiltinGuest, list[int]]:
    """A built-in guest playing many-small-fills at a fixed time, and the list that collects how many
    rects each grouped DRAW_FILL the pipeline makes holds (so a test can check batching happened)."""
    grouped: list[int] = []
    real_batch = fills_module.batch_fills

    def counting_batch(rects, colors):
        cmds = real_batch(rects, colors)
        grouped.extend(len(c.clip) // 16 for c in cmds if c.clip)
        return cmds

    monkeypatch.setattr(fills_module, "batch_fills", counting_batch)
    guest = BuiltinGuest(width, height, workload="many-small-fills", clock=lambda: datetime(2026, 1, 2, 3, 4, 5),
                         uptime=lambda: 42.0)
    return guest, grouped
