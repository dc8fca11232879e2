"""The built-in guest: an in-process desktop (terminal, clock, device panel) drawn with Pillow/numpy.

What other parts use (all on the event-loop thread)::

    g = BuiltinGuest(width=1024, height=768, workload=None)   # workload: see WORKLOADS
    await g.start(); ...; await g.stop()                      # clock + workload tasks
    g.terminal.lines          # all text lines (scrollback + live prompt line "$ ...")
    g.terminal.screen_lines   # the visible rows
    g.terminal.type_text("echo hi\\n")                         # typed without scancodes
    g.shell.register("lsusb", handler, "list USB devices")    # handler(argv, out) -> None | awaitable
    g.set_usb_devices(rows)   # strings or UsbSubsystem.rows() dicts; [] -> "No USB devices"
    g.button.clicks, g.button.pressed, g.button.screen_rect, g.button.center
    g.panel / g.terminal / g.topbar                           # windows: .x .y .rect .title_rect
    await g.settle()          # running shell command finished and all drawing went out as frames
    g.flush()                 # the same synchronously (no event loop needed)

Tests pass ``clock=lambda: datetime(...)`` and ``uptime=lambda: secs`` for stable pixels, and
``repeat_delay`` / ``repeat_rate`` for typematic repeat.
"""

from .guest import BuiltinGuest
from .workloads import WORKLOADS

__all__ = ["BuiltinGuest", "WORKLOADS"]
