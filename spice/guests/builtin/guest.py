"""The built-in guest: a desktop with a terminal, a clock, a device panel and a button."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache

import numpy as np

from ..base import CursorState, Frame, Guest, MouseButton
from .cursor import shapes
from .desktop import Desktop
from .keyboard import Keyboard
from .panels import DevicePanel, TopBar
from .shell import Shell
from .terminal import Terminal
from .window import TITLE_H, Window
from .workloads import WORKLOADS, Workload

_SECONDS = tuple(f"{s:02d}" for s in range(60))


@lru_cache(maxsize=2)
def _minute_text(year: int, month: int, day: int, hour: int, minute: int) -> str:
    return f"{datetime(year, month, day, hour, minute):%a %Y-%m-%d %H:%M:}"


def clock_text(t: datetime) -> str:
    """``t`` as the top bar shows it, ``%a %Y-%m-%d %H:%M:%S``: the minute's text is formatted once (a
    ``strftime`` costs several times the rest of an idle clock tick)."""
    return _minute_text(t.year, t.month, t.day, t.hour, t.minute) + _SECONDS[t.second]


class BuiltinGuest(Guest):
    """An in-process machine drawn with Pillow/numpy; every change is reported as exact ops.

    ``clock``/``uptime`` replace the wall clock and the uptime source (tests freeze them);
    ``repeat_delay``/``repeat_rate`` set typematic repeat; ``workload`` plays a benchmark scene.
    """

    name = "builtin"
    #: the framebuffer changes only while a frame is rendered (between frames it is the last frame), and
    #: every Damage covers only changed pixels: the display pipeline reads it directly, no snapshot copy
    stable_framebuffer = True

    def __init__(self, width: int = 1024, height: int = 768, workload: str | None = None, *,
                 clock: Callable[[], datetime] | None = None, uptime: Callable[[], float] | None = None,
                 repeat_delay: float = 0.5, repeat_rate: float = 30.0, seed: int = 0) -> None:
        super().__init__()
        if workload not in (None, "", "none") and workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(sorted(WORKLOADS))}")
        if width < 320 or height < 200 or width > 8192 or height > 8192:
            raise ValueError(f"unsupported size {width}x{height}")
        self._scheduled = False
        self._flush_handle: asyncio.Handle | None = None
        self._rendering = False
        self._serial = 0
        self.seed = seed
        self.clock = clock or datetime.now
        self.desktop = Desktop(width, height, self._schedule)
        self.desktop.top_margin = TITLE_H
        self.topbar = TopBar(width)
        maximise = workload == "scroll"
        if maximise:
            tx, ty, tw, th = 0, TITLE_H, width, height - TITLE_H
        else:
            tw = max(300, min(width - DevicePanel.WIDTH - 48, int(width * 0.62)))
            th = max(160, min(height - 64, int(height * 0.75)))
            tx, ty, tw, th = 16, TITLE_H + 16, min(tw, width - 16), min(th, height - TITLE_H - 16)
        self.terminal = Terminal(tx, ty, tw, th)
        self.panel = DevicePanel(max(0, width - DevicePanel.WIDTH - 16), TITLE_H + 16)
        self.button = self.panel.button
        self.shell = Shell(self.terminal, self.clock, uptime)
        self.keyboard = Keyboard(self.terminal.key, self._emit_leds, repeat_delay, repeat_rate)
        for win in ((self.panel, self.terminal) if maximise else (self.terminal, self.panel)):
            self.desktop.add(win)
        self.desktop.add(self.topbar, on_top=True)
        self.terminal.write_line("aiospice built-in guest. Type 'help' for commands.")
        self._update_clock()
        self.workload: Workload | None = WORKLOADS[workload](self) if workload in WORKLOADS else None
        self.desktop.render()
        self.desktop.surface.take_ops()  # the first picture is the framebuffer itself
        w, h = width, height
        self._cursor = CursorState(w // 2, h // 2, True, shapes()["arrow"])
        self._buttons = 0
        self._drag: tuple[Window, int, int] | None = None
        self._pressed_in: Window | None = None
        self._tasks: list[asyncio.Task] = []
        self._update_shape()  # the shape that fits where the pointer starts

    # -- lifecycle
    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._clock_loop(), name="builtin-clock"))
        if self.workload is not None:
            self._tasks.append(asyncio.create_task(self.workload.run(), name="builtin-workload"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.keyboard.release_all()
        self.shell.cancel()

    # -- display
    @property
    def framebuffer(self) -> np.ndarray:
        return self.desktop.fb

    @property
    def frame_serial(self) -> int:
        return self._serial

    def _schedule(self) -> None:
        if self._scheduled or self._rendering:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (plain sync use): the caller calls flush()
        self._scheduled = True
        self._flush_handle = loop.call_soon(self.flush)

    def flush_pending(self) -> None:
        """Make the frame now if drawing is pending (instead of on the next loop turn)."""
        if self._scheduled:
            self.flush()

    def flush(self) -> Frame | None:
        """Render pending changes and emit them as one frame (returns it, or None if nothing changed)."""
        self._scheduled = False
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._rendering = True
        try:
            self.desktop.render()
        finally:
            self._rendering = False
        ops = self.desktop.surface.take_ops()
        if not ops:
            return None
        self._serial += 1
        frame = Frame(ops, self._serial, time.monotonic())
        self._emit_frame(frame)
        return frame

    async def settle(self) -> None:
        """Wait for a running shell command, then until all pending drawing went out as frames."""
        await self.shell.wait_idle()
        await asyncio.sleep(0)
        while self._scheduled:
            await asyncio.sleep(0)
        self.flush()

    # -- clock
    def _update_clock(self) -> None:
        self.topbar.set_clock(clock_text(self.clock()))

    async def _clock_loop(self) -> None:
        """Tick the clock just after each wall-clock second until cancelled."""
        await self.drive(self._update_clock, lambda: 1.0 - time.time() % 1.0 + 0.002)

    async def drive(self, draw: Callable[[], None], delay: Callable[[], float]) -> None:
        """Call ``draw`` and make its frame at once, then again ``delay()`` s later, until cancelled.

        A timer callback, not a sleeping task: one event-loop turn per frame (a sleeping task takes two,
        the timer and then the task's wake-up), and the drawing schedules no flush callback of its own."""
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()
        timer: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal timer
            try:
                self._scheduled = True  # the drawing asks for no flush callback: the frame is made here
                draw()
                self.flush()
            except Exception as err:
                failed.set_exception(err)
                return
            timer = loop.call_at(loop.time() + delay(), tick)  # (call_later's own frame saved)

        tick()
        try:
            await failed
        finally:
            if timer is not None:
                timer.cancel()

    # -- devices
    def set_usb_devices(self, rows: list[str | dict]) -> None:
        """Show ``rows`` (strings, or ``UsbSubsystem.rows()`` dicts) in the device panel; [] -> "No USB devices"."""
        self.panel.set_rows(rows)

    # -- keyboard
    def key_event(self, scancode: int, pressed: bool) -> None:
        self.keyboard.event(scancode, pressed)

    @property
    def leds(self) -> int:
        return self.keyboard.leds

    def set_leds(self, leds: int) -> None:
        """Adopt the client's lock-key state (SPICE modifier flags)."""
        self.keyboard.set_leds(leds)

    # -- cursor and pointer
    @property
    def cursor(self) -> CursorState:
        return self._cursor

    def pointer_motion(self, dx: int, dy: int, buttons: int) -> None:
        self._pointer_to(self._cursor.x + dx, self._cursor.y + dy, buttons)

    def pointer_position(self, x: int, y: int, buttons: int) -> None:
        self._pointer_to(x, y, buttons)

    def pointer_button(self, button: int, pressed: bool, buttons: int) -> None:
        if button in (MouseButton.UP, MouseButton.DOWN):
            if pressed and self.desktop.window_at(self._cursor.x, self._cursor.y) is self.terminal:
                self.terminal.scroll_view(3 if button == MouseButton.UP else -3)
            return
        if pressed:
            self._press(button)
        else:
            self._release(button)
        self._buttons = buttons
        self._update_shape()

    def _pointer_to(self, x: int, y: int, buttons: int) -> None:
        w, h = self.size
        x, y = max(0, min(int(x), w - 1)), max(0, min(int(y), h - 1))
        c = self._cursor
        if (x, y) != (c.x, c.y):
            self._cursor = CursorState(x, y, c.visible, c.shape)
            self._emit_cursor_move(x, y)
            if self._drag is not None:
                win, ox, oy = self._drag
                self.desktop.move(win, x - ox, y - oy)
        if self._buttons & MouseButton.MASK_LEFT and not buttons & MouseButton.MASK_LEFT:
            self._release(MouseButton.LEFT)  # the release message was lost
        self._buttons = buttons
        self._update_shape()

    def _press(self, button: int) -> None:
        x, y = self._cursor.x, self._cursor.y
        win = self.desktop.window_at(x, y)
        if win is None:
            return
        if not getattr(win, "always_on_top", False):
            self.desktop.raise_(win)
        t = win.title_rect
        if button == MouseButton.LEFT and win.movable and t.left <= x < t.right and t.top <= y < t.bottom:
            self._drag = (win, x - win.x, y - win.y)
            return
        self._pressed_in = win
        win.on_press(x - win.x, y - win.y, button)

    def _release(self, button: int) -> None:
        if button == MouseButton.LEFT and self._drag is not None:
            self._drag = None
            return
        win, self._pressed_in = self._pressed_in, None
        if win is not None:
            win.on_release(self._cursor.x - win.x, self._cursor.y - win.y, button)

    def _update_shape(self) -> None:
        x, y = self._cursor.x, self._cursor.y
        kind = "arrow"
        win = self._drag[0] if self._drag else self.desktop.window_at(x, y)
        if win is not None:
            t = win.title_rect
            if self._drag or (win.movable and t.left <= x < t.right and t.top <= y < t.bottom):
                kind = "move"
            else:
                kind = win.cursor_kind(x - win.x, y - win.y)
        shape = shapes()[kind]
        c = self._cursor
        if shape is not c.shape:
            self._cursor = CursorState(c.x, c.y, c.visible, shape)
            self._emit_cursor(self._cursor)
