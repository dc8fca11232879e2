"""The benchmark's picture count: split frames joined, the clock left out, real frames never merged."""

from __future__ import annotations

import pytest

from spice.display import xworkload
from spice.display.framecount import FrameCounter
from spice.guests.builtin.workloads import WORKLOADS

CLOCK = (400, 0, 240, 30)
VIDEO = (100, 100, 320, 240)


def feed(counter: FrameCounter, events: list[tuple[float, tuple[int, int, int, int]]]) -> FrameCounter:
    for t, area in sorted(events):
        counter.update(t, *area)
    return counter


def test_a_frame_drawn_in_two_parts_6_ms_apart_is_one_picture():
    top, bottom = (0, 0, 1024, 672), (0, 672, 1024, 96)
    events = [(i / 30 + dt, part) for i in range(30) for dt, part in ((0.0, top), (0.006, bottom))]
    c = feed(FrameCounter(), events)
    assert (c.frames, c.bursts) == (30, 60)
    assert c.span == pytest.approx(29 / 30)


def test_a_late_fragment_of_a_30_fps_frame_is_not_a_frame_of_its_own():
    """As Xspice sent many-small-fills: a frame, a small part of it 23 ms later, then the next frame."""
    events = [(i / 30, VIDEO) for i in range(30)] + [(i / 30 + 0.023, (5, 5, 8, 8)) for i in range(0, 30, 10)]
    assert feed(FrameCounter(scene_fps=30), events).frames == 30
    assert feed(FrameCounter(), events).frames == 33  # without the scene's rate: half a 60 Hz refresh


def test_clock_updates_are_left_out_but_still_bursts():
    events = [(i / 25, VIDEO) for i in range(25)] + [(0.013, (423, 3, 207, 18))]
    c = feed(FrameCounter(CLOCK, 25), events)
    assert (c.frames, c.bursts) == (25, 26)
    assert feed(FrameCounter(None, 25), events).frames == 25  # 13 ms after a frame: the rest of it
    assert feed(FrameCounter(), events).frames == 26


def test_updates_every_10_ms_are_separate_pictures_and_a_2_ms_stream_is_one():
    assert feed(FrameCounter(), [(i * 0.010, VIDEO) for i in range(50)]).frames == 50
    assert feed(FrameCounter(), [(i * 0.002, VIDEO) for i in range(50)]).frames == 1


def test_the_x_scenes_play_at_the_built_in_scenes_rates():
    """``bench compare`` tells the probe the X scene's rate; the built-in guest must play the same."""
    assert {name: w.rate for name, w in WORKLOADS.items()} == {
        name: rate for name, rate in xworkload.RATES.items() if name in WORKLOADS}
