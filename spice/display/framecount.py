"""Counting the scene's pictures a viewer was sent, from the times and areas of its display updates.

Plain Python with no imports, so the probe viewer (run by the system Python) can load it too.
"""

from __future__ import annotations

BURST_GAP = 0.004  # a pause this long between updates ends a burst
HALF_REFRESH = 1 / 120  # the least spacing of two pictures: half a 60 Hz refresh

Area = tuple[int, int, int, int]


def inside(area: Area | None, x: int, y: int, w: int, h: int) -> bool:
    """Whether the rectangle x, y, w, h lies wholly inside ``area`` (X, Y, W, H)."""
    if area is None:
        return False
    ax, ay, aw, ah = area
    return ax <= x and ay <= y and x + w <= ax + aw and y + h <= ay + ah


class FrameCounter:
    """Pictures of a scene played at ``scene_fps`` (None: unknown).

    A picture starts with an update after a pause of more than BURST_GAP, unless it comes less than
    half a scene frame (at least half a 60 Hz refresh) after the previous picture began: then it is
    the rest of one of the scene's frames.  libspice-server sends some frames in two parts, 6 to 23 ms
    apart; counted apart, a server that splits frames would seem to deliver more than the scene has.
    Updates wholly inside ``ignore`` (a clock each guest draws in its own phase) are left out.
    ``bursts`` is the plain count of BURST_GAP-separated bursts of every update, for reference;
    ``span`` the time from the first picture's start to the last's, so ``(frames - 1) / span`` is the
    delivered rate without the window's phase."""

    def __init__(self, ignore: Area | None = None, scene_fps: float | None = None) -> None:
        self.ignore = ignore
        self.spacing = max(HALF_REFRESH, 0.5 / scene_fps) if scene_fps else HALF_REFRESH
        self.frames = self.bursts = 0
        self._first = None
        self._last = self._last_counted = self._frame_start = float("-inf")

    @property
    def span(self) -> float:
        return 0.0 if self._first is None else self._frame_start - self._first

    def update(self, now: float, x: int, y: int, w: int, h: int) -> None:
        """One display update (``display-invalidate``) at time ``now`` in seconds."""
        if now - self._last > BURST_GAP:
            self.bursts += 1
        self._last = now
        if inside(self.ignore, x, y, w, h):
            return
        if now - self._last_counted > BURST_GAP and now - self._frame_start >= self.spacing:
            self.frames += 1
            self._frame_start = now
            if self._first is None:
                self._first = now
        self._last_counted = now
