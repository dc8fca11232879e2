"""The guest interface: what any machine behind the display offers the SPICE server.

A guest owns a framebuffer (numpy ``(height, width, 4)`` uint8 in B, G, R, X order — SPICE's
32-bit xRGB little-endian surface format), tells listeners what changed as a list of
:class:`DisplayOp` per frame, takes keyboard input as PC/AT set-1 scancodes and pointer input
in either relative (server mouse mode) or absolute (client mouse mode) form, and publishes its
cursor shape and position.  Built-in, X11 and QEMU guests all implement this; the SPICE side
never knows which one it talks to.

Threading: everything runs on the asyncio event loop thread.  Listeners are called
synchronously right after the guest finished drawing a frame; the framebuffer is consistent
at that moment and stays so until the listener returns.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Values: Rect and the display ops below (and spice.display.commands) are equal and hashable by their
# fields and never changed after construction.  They are not ``frozen`` dataclasses: a frozen
# dataclass's __init__ costs five times as much (object.__setattr__ per field), and a typed key's
# frame builds dozens of them.


@dataclass(slots=True, unsafe_hash=True)  # a value (see above)
class Rect:
    """Half-open rectangle: pixels ``left <= x < right``, ``top <= y < bottom``."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def is_empty(self) -> bool:
        return self.right <= self.left or self.bottom <= self.top

    def intersect(self, other: Rect) -> Rect:
        return Rect(max(self.left, other.left), max(self.top, other.top),
                    min(self.right, other.right), min(self.bottom, other.bottom))

    def union(self, other: Rect) -> Rect:
        return Rect(min(self.left, other.left), min(self.top, other.top),
                    max(self.right, other.right), max(self.bottom, other.bottom))

    def translate(self, dx: int, dy: int) -> Rect:
        return Rect(self.left + dx, self.top + dy, self.right + dx, self.bottom + dy)


# --- display operations a guest reports for one frame -------------------------------------

@dataclass(slots=True, unsafe_hash=True)  # a value (see above)
class Damage:
    """Pixels inside ``rect`` changed arbitrarily: send them from the framebuffer."""

    rect: Rect


@dataclass(slots=True, unsafe_hash=True)  # a value (see above)
class Fill:
    """``rect`` was filled with one colour ``bgrx`` (0xXXRRGGBB as a little-endian u32)."""

    rect: Rect
    color: int


@dataclass(slots=True, unsafe_hash=True)  # a value (see above)
class CopyRect:
    """The pixels of ``src`` (as they were before this op) now also stand at ``dest`` (top-left).

    A scroll or a moved window.  The destination is ``Rect(dx, dy, dx + src.width, ...)``.
    """

    src: Rect
    dest_x: int
    dest_y: int

    @property
    def dest(self) -> Rect:
        return self.src.translate(self.dest_x - self.src.left, self.dest_y - self.src.top)


DisplayOp = Damage | Fill | CopyRect


@dataclass(slots=True)
class Frame:
    """One frame's changes, in order: applying them to the previous framebuffer gives the new one."""

    ops: list[DisplayOp]
    serial: int
    timestamp: float  # time.monotonic() when the frame was finished


@dataclass(frozen=True, slots=True)
class CursorShape:
    """A pointer image: ``pixels`` is ``(height, width, 4)`` uint8 B, G, R, A (premultiplied no)."""

    pixels: np.ndarray
    hot_x: int
    hot_y: int
    serial: int  # changes whenever the shape changes (usable as a cache id)


@dataclass(slots=True)
class CursorState:
    x: int
    y: int
    visible: bool
    shape: CursorShape | None


# --- input ------------------------------------------------------------------------------

class MouseButton:
    """SPICE button numbers and mask bits (spice.md §7.3)."""

    LEFT, MIDDLE, RIGHT, UP, DOWN, SIDE, EXTRA = 1, 2, 3, 4, 5, 6, 7
    MASK_LEFT, MASK_MIDDLE, MASK_RIGHT = 1, 2, 4


@dataclass(slots=True)
class GuestListener:
    """Callbacks a viewer (the SPICE display/cursor/inputs side) registers with a guest."""

    on_frame: Callable[[Frame], None] | None = None
    on_resize: Callable[[int, int], None] | None = None
    on_cursor: Callable[[CursorState], None] | None = None  # shape or visibility changed
    on_cursor_move: Callable[[int, int], None] | None = None
    on_leds: Callable[[int], None] | None = None  # SPICE modifier flags: 1 scroll, 2 num, 4 caps
    extra: dict = field(default_factory=dict)


class Guest(abc.ABC):
    """A machine behind the display."""

    name: str = "guest"
    uuid: bytes = bytes(16)

    def __init__(self) -> None:
        self._listeners: list[GuestListener] = []

    # -- lifecycle
    async def start(self) -> None:
        """Start the guest's own activity (clock, workloads, devices)."""
        return None

    async def stop(self) -> None:
        """Stop everything started by :meth:`start`."""
        return None

    # -- display
    @property
    @abc.abstractmethod
    def framebuffer(self) -> np.ndarray:
        """The current ``(height, width, 4)`` BGRX image; read it only on the event-loop thread."""

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.framebuffer.shape[:2]
        return w, h

    @property
    def frame_serial(self) -> int:
        """Serial of the last finished frame (0 before the first)."""
        return 0

    def add_listener(self, listener: GuestListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: GuestListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit_frame(self, frame: Frame) -> None:
        for lst in list(self._listeners):
            if lst.on_frame:
                lst.on_frame(frame)

    def _emit_cursor(self, state: CursorState) -> None:
        for lst in list(self._listeners):
            if lst.on_cursor:
                lst.on_cursor(state)

    def _emit_cursor_move(self, x: int, y: int) -> None:
        for lst in list(self._listeners):
            if lst.on_cursor_move:
                lst.on_cursor_move(x, y)

    def _emit_leds(self, leds: int) -> None:
        for lst in list(self._listeners):
            if lst.on_leds:
                lst.on_leds(leds)

    # -- cursor
    @property
    @abc.abstractmethod
    def cursor(self) -> CursorState:
        """Current pointer position, visibility and shape."""

    # -- keyboard
    @abc.abstractmethod
    def key_event(self, scancode: int, pressed: bool) -> None:
        """One key: ``scancode`` is the set-1 make code, ``| 0x100`` for 0xE0-prefixed keys."""

    @property
    def leds(self) -> int:
        """Keyboard LED state as SPICE modifier flags (1 scroll, 2 num, 4 caps)."""
        return 0

    # -- pointer
    @abc.abstractmethod
    def pointer_motion(self, dx: int, dy: int, buttons: int) -> None:
        """Relative motion (server mouse mode); ``buttons`` is the SPICE mask after the event."""

    @abc.abstractmethod
    def pointer_position(self, x: int, y: int, buttons: int) -> None:
        """Absolute position in framebuffer pixels (client mouse mode)."""

    @abc.abstractmethod
    def pointer_button(self, button: int, pressed: bool, buttons: int) -> None:
        """Press or release of SPICE button ``button`` (4/5 are wheel up/down)."""

    @property
    def supports_absolute_pointer(self) -> bool:
        """True if the guest takes absolute positions (allows SPICE client mouse mode)."""
        return True


class DisplayOnlyGuest(Guest):
    """A guest that only draws (benchmark scenes, test fixtures): input is ignored, the pointer
    has no shape of its own.  Subclasses keep their framebuffer in ``self.fb`` and count frames in
    ``self.serial``."""

    fb: np.ndarray
    serial: int = 0

    @property
    def framebuffer(self) -> np.ndarray:
        return self.fb

    @property
    def frame_serial(self) -> int:
        return self.serial

    @property
    def cursor(self) -> CursorState:
        return CursorState(0, 0, True, None)

    def key_event(self, scancode: int, pressed: bool) -> None:
        return None

    def pointer_motion(self, dx: int, dy: int, buttons: int) -> None:
        return None

    def pointer_position(self, x: int, y: int, buttons: int) -> None:
        return None

    def pointer_button(self, button: int, pressed: bool, buttons: int) -> None:
        return None
