"""A minimal display pipeline (32-bit BITMAP of the dirty bounding box): the fallback used
when ``spice.display.pipeline`` is not installed, and a reference in tests.

Same interface as :class:`spice.display.pipeline.DisplayPipeline`: ``attach(caps, wakeup)``
returns a client with ``take(max_bytes=None)``, ``pending`` and ``detach()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spice.display.commands import DrawCopy, Resize
from spice.guests.base import CopyRect, Frame, Guest, GuestListener, Rect
from spice.proto.display import build_bitmap_image


class SimpleDisplayClient:
    def __init__(self, pipeline: SimpleDisplayPipeline, wakeup: Callable[[], None]) -> None:
        self.pipeline = pipeline
        self.wakeup = wakeup
        w, h = pipeline.guest.size
        self.dirty: Rect | None = Rect(0, 0, w, h)
        self.size = (w, h)
        self.resized = False

    @property
    def pending(self) -> bool:
        return self.dirty is not None

    def add(self, rect: Rect) -> None:
        self.dirty = rect if self.dirty is None else self.dirty.union(rect)

    def take(self, max_bytes: int | None = None) -> list[Any]:
        if self.dirty is None:
            return []
        fb = self.pipeline.guest.framebuffer
        h, w = fb.shape[:2]
        r = self.dirty.intersect(Rect(0, 0, w, h))
        self.dirty = None
        out: list[Any] = []
        if self.resized:
            out.append(Resize(w, h))
            self.resized = False
        if not r.is_empty():
            out.append(DrawCopy(r, build_bitmap_image(fb[r.top:r.bottom, r.left:r.right])))
        return out

    def detach(self) -> None:
        self.pipeline.clients.discard(self)


class SimpleDisplayPipeline:
    def __init__(self, guest: Guest) -> None:
        self.guest = guest
        self.clients: set[SimpleDisplayClient] = set()
        self.listener = GuestListener(on_frame=self._on_frame, on_resize=self._on_resize)
        guest.add_listener(self.listener)

    def attach(self, caps: Any, wakeup: Callable[[], None]) -> SimpleDisplayClient:
        c = SimpleDisplayClient(self, wakeup)
        self.clients.add(c)
        return c

    def _on_frame(self, frame: Frame) -> None:
        for op in frame.ops:
            rect = op.dest if isinstance(op, CopyRect) else op.rect
            for c in self.clients:
                c.add(rect)
        for c in list(self.clients):
            c.wakeup()

    def _on_resize(self, width: int, height: int) -> None:
        for c in list(self.clients):
            c.resized = True
            c.dirty = Rect(0, 0, width, height)
            c.wakeup()

    def close(self) -> None:
        self.guest.remove_listener(self.listener)
