"""Test helpers for the built-in guest: a shadow framebuffer that replays every frame's ops."""

from __future__ import annotations

import numpy as np

from spice.guests.base import CopyRect, Damage, Fill, Frame, GuestListener, Rect

# US layout, set-1 make codes: char -> (code, shift)
_ROWS = ((0x02, "1234567890-=", "!@#$%^&*()_+"), (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
         (0x1E, "asdfghjkl;'`", 'ASDFGHJKL:"~'), (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?"))
KEYS: dict[str, tuple[int, bool]] = {" ": (0x39, False), "\n": (0x1C, False)}
for start, plain, shifted in _ROWS:
    for i, (a, b) in enumerate(zip(plain, shifted, strict=True)):
        KEYS[a] = (start + i, False)
        KEYS[b] = (start + i, True)
LSHIFT, LCTRL, CAPS, NUM, SCROLL = 0x2A, 0x1D, 0x3A, 0x45, 0x46
UP, DOWN, LEFT, RIGHT, HOME, END, DELETE = 0x148, 0x150, 0x14B, 0x14D, 0x147, 0x14F, 0x153
BACKSPACE, ENTER = 0x0E, 0x1C


def tap(guest, code: int) -> None:
    guest.key_event(code, True)
    guest.key_event(code, False)


def type_keys(guest, text: str) -> None:
    """Type ``text`` through scancodes (Shift pressed around shifted characters)."""
    for ch in text:
        code, shift = KEYS[ch]
        if shift:
            guest.key_event(LSHIFT, True)
        tap(guest, code)
        if shift:
            guest.key_event(LSHIFT, False)


def ctrl(guest, letter: str) -> None:
    guest.key_event(LCTRL, True)
    tap(guest, KEYS[letter][0])
    guest.key_event(LCTRL, False)


class Shadow:
    """Keeps a copy of the framebuffer, applies each Frame's ops to it and compares."""

    def __init__(self, guest) -> None:
        self.guest = guest
        self.fb = guest.framebuffer
        self.shadow = self.fb.copy()
        self.frames: list[Frame] = []
        self._mark = 0
        self.errors: list[str] = []
        self.cursor_events: list = []
        self.leds: list[int] = []
        guest.add_listener(GuestListener(on_frame=self.on_frame, on_cursor=self.cursor_events.append,
                                         on_leds=self.leds.append))

    def on_frame(self, frame: Frame) -> None:
        fb, s = self.guest.framebuffer, self.shadow
        if fb is not self.fb:  # a slid view of the same backing array (RowSlider) is the same framebuffer
            if fb.base is None or fb.base is not self.fb.base:
                self.errors.append("framebuffer object replaced")
            self.fb = fb
        if self.frames and frame.serial <= self.frames[-1].serial:
            self.errors.append(f"serial {frame.serial} not increasing")
        if not frame.ops:
            self.errors.append(f"frame {frame.serial} without ops")
        h, w = fb.shape[:2]
        screen = Rect(0, 0, w, h)
        for op in frame.ops:
            r = op.rect if isinstance(op, Damage | Fill) else op.src
            dest = op.dest if isinstance(op, CopyRect) else r
            if r.is_empty() or r.intersect(screen) != r or dest.intersect(screen) != dest:
                self.errors.append(f"frame {frame.serial}: bad op {op}")
                continue
            if isinstance(op, Damage):
                s[r.top:r.bottom, r.left:r.right] = fb[r.top:r.bottom, r.left:r.right]
            elif isinstance(op, Fill):
                s.view(np.uint32)[r.top:r.bottom, r.left:r.right, 0] = op.color
            else:
                s[dest.top:dest.bottom, dest.left:dest.right] = s[r.top:r.bottom, r.left:r.right].copy()
        if not np.array_equal(s, fb):
            ys, xs = np.nonzero((s != fb).any(axis=2))
            self.errors.append(f"frame {frame.serial}: shadow differs in x {xs.min()}..{xs.max()} "
                               f"y {ys.min()}..{ys.max()} ops {frame.ops}")
            s[:] = fb
        self.frames.append(frame)

    def check(self) -> None:
        assert not self.errors, self.errors[:3]
        assert np.array_equal(self.shadow, self.guest.framebuffer)

    def take(self) -> list[Frame]:
        """Frames received since the previous call."""
        frames = self.frames[self._mark:]
        self._mark = len(self.frames)
        return frames

    @staticmethod
    def ops(frames: list[Frame]) -> list:
        return [op for f in frames for op in f.ops]

    @staticmethod
    def area(frames: list[Frame]) -> int:
        """Pixels sent by Damage ops (Fill and CopyRect cost no pixel data)."""
        return sum(op.rect.area for f in frames for op in f.ops if isinstance(op, Damage))
