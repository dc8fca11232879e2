"""Built-in guest workloads (issue 6): each plays, and every frame it produces replays exactly."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime

import numpy as np
import pytest
from guest_helpers import Shadow

from spice.guests.base import CopyRect, Damage, Fill
from spice.guests.builtin import WORKLOADS, BuiltinGuest


async def play(workload: str, frames: int, size=(480, 360), limit: float = 20.0) -> tuple[BuiltinGuest, Shadow]:
    g = BuiltinGuest(*size, workload=workload, clock=lambda: datetime(2026, 1, 1, 12, 0, 0))
    s = Shadow(g)
    await g.start()
    try:
        deadline = time.monotonic() + limit
        while len(s.frames) < frames and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await g.stop()
    await g.settle()
    s.check()
    assert len(s.frames) >= frames, f"{workload}: {len(s.frames)} frames"
    return g, s


def test_workload_names():
    assert set(WORKLOADS) == {"idle-clock", "typing", "window-drag", "scroll", "video-320x240", "video-1080p",
                              "many-small-fills", "photo-slideshow"}
    with pytest.raises(ValueError):
        BuiltinGuest(320, 240, workload="nope")


async def test_typing_types_into_the_terminal():
    g, s = await play("typing", 6)
    assert "echo the quick brown fox"[:len(g.terminal.input)] == g.terminal.input or len(g.terminal.lines) > 2
    w, h = g.size
    assert all(Shadow.area([f]) < 0.01 * w * h for f in s.frames)


async def test_window_drag_is_copyrect():
    g, s = await play("window-drag", 10)
    ops = Shadow.ops(s.frames)
    copies = [op for op in ops if isinstance(op, CopyRect)]
    assert len(copies) >= 9 and all(c.src.width == g.panel.w for c in copies)
    panel_area = g.panel.w * g.panel.h  # only uncovered strips are sent, never the moved window
    assert all(Shadow.area([f]) < panel_area // 2 for f in s.frames)


async def test_scroll_is_copyrect_plus_new_line():
    g, s = await play("scroll", 26)  # 480x360: 16 rows, so the last frames all scroll
    t = g.terminal
    assert t.rect.width == g.size[0] and t.rows == 16  # maximised
    per_frame = s.frames[-8:]
    assert all(any(isinstance(op, CopyRect) for op in f.ops) for f in per_frame)
    # each frame: one or two new lines (the loop may catch up) plus the cursor row
    assert all(Shadow.area([f]) <= 3 * t.area.width * t.font.cell_h for f in per_frame)


@pytest.mark.parametrize("workload", ["video-320x240", "video-1080p"])
async def test_video_new_pixels_every_frame(workload):
    g, s = await play(workload, 5)
    areas = [Shadow.area([f]) for f in s.frames]
    w, h = g.size
    full = w * h if workload == "video-1080p" else 320 * 240
    assert all(a >= full * 0.9 for a in areas[1:])
    assert all(a <= full for a in areas)


async def test_many_small_fills():
    g, s = await play("many-small-fills", 4)
    fills = [[op for op in f.ops if isinstance(op, Fill)] for f in s.frames]
    assert all(len(f) >= 300 for f in fills[1:])
    assert all(op.rect.area <= 32 * 32 for f in fills for op in f)


async def test_photo_slideshow_and_idle_clock():
    g, s = await play("photo-slideshow", 1)
    w, h = g.size
    assert Shadow.area(s.frames) >= w * h * 0.9
    before = g.framebuffer.copy()
    g.workload.step()
    await g.settle()
    assert (g.framebuffer != before).any(axis=2).mean() > 0.5
    g2 = BuiltinGuest(320, 240, workload="idle-clock")
    s2 = Shadow(g2)
    await g2.start()
    try:
        for _ in range(300):
            if s2.frames:
                break
            await asyncio.sleep(0.01)
    finally:
        await g2.stop()
    s2.check()
    clock = g2.topbar.clock_rect  # a tick redraws clock cells: pixels or copies of other clock cells
    assert s2.frames and all(isinstance(op, Damage | CopyRect) for op in Shadow.ops(s2.frames))
    assert all((op.rect if isinstance(op, Damage) else op.dest).intersect(clock).area > 0
               for op in Shadow.ops(s2.frames))


@pytest.mark.bench
@pytest.mark.skipif(not os.environ.get("AIOSPICE_BENCH"), reason="set AIOSPICE_BENCH=1 to print figures")
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
async def test_bench_guest_cpu(workload):
    """Guest-side CPU per frame at 1920x1080 (prints figures; no asserts on time)."""
    g = BuiltinGuest(1920, 1080, workload=workload)
    frames = []
    g.add_listener(type("L", (), {"on_frame": frames.append, "on_cursor": None, "on_cursor_move": None,
                                  "on_leds": None, "on_resize": None})())
    await g.start()
    await asyncio.sleep(0.6)  # let prepare() finish
    frames.clear()
    t0, c0 = time.monotonic(), time.process_time()
    await asyncio.sleep(3.0)
    dt, cpu = time.monotonic() - t0, time.process_time() - c0
    await g.stop()
    ops = sum(len(f.ops) for f in frames)
    px = sum(op.rect.area for f in frames for op in f.ops if isinstance(op, Damage))
    print(f"\n{workload:18s} {len(frames) / dt:6.1f} frames/s  cpu {100 * cpu / dt:5.1f}%  "
          f"{1000 * cpu / max(1, len(frames)):6.2f} ms/frame  ops/frame {ops / max(1, len(frames)):7.1f}  "
          f"damage px/frame {px / max(1, len(frames)):10.0f}")
    assert np.shape(g.framebuffer) == (1080, 1920, 4)


async def test_workload_with_user_input_stays_exact():
    """window-drag and video playing while someone types, drags the terminal and clicks."""
    import random

    from guest_helpers import type_keys

    from spice.guests.base import MouseButton

    for workload in ("window-drag", "video-320x240"):
        g = BuiltinGuest(800, 600, workload=workload, clock=lambda: datetime(2026, 1, 1))
        s = Shadow(g)
        rnd = random.Random(5)
        await g.start()
        try:
            for _ in range(60):
                type_keys(g, rnd.choice("abc \n"))
                t = g.terminal
                g.pointer_position(t.x + 40, t.y + 8, 0)
                g.pointer_button(MouseButton.LEFT, True, 1)
                g.pointer_motion(rnd.randint(-30, 30), rnd.randint(-20, 20), 1)
                g.pointer_button(MouseButton.LEFT, False, 0)
                t.write_line("x" * rnd.randint(0, 100))
                await asyncio.sleep(0.01)
        finally:
            await g.stop()
        await g.settle()
        s.check()
        assert len(s.frames) >= 30


@pytest.mark.parametrize("size", [(320, 200), (333, 777), (3000, 200)])
async def test_odd_sizes_with_input_and_workloads(size):
    import random

    from guest_helpers import type_keys

    with pytest.raises(ValueError):
        BuiltinGuest(319, 200)
    for wl in (None, "scroll", "window-drag", "video-320x240", "many-small-fills"):
        g = BuiltinGuest(*size, workload=wl, clock=lambda: datetime(2026, 1, 1))
        s = Shadow(g)
        rnd = random.Random(1)
        if g.workload is not None:
            await g.workload.prepare()
        for i in range(40):
            if g.workload is not None:
                g.workload.step()
                g.workload.steps += 1
            type_keys(g, rnd.choice("ab \n"))
            g.pointer_position(rnd.randrange(size[0]), rnd.randrange(size[1]), 0)
            g.pointer_button(1, True, 1)
            g.pointer_motion(rnd.randint(-50, 50), rnd.randint(-50, 50), 1)
            g.pointer_button(1, False, 0)
            g.pointer_button(4, True, 0)
            if i % 3 == 0:
                g.flush()
        g.flush()
        s.check()
        assert s.frames  # windows overlap at small sizes: what shows depends on the clicks
