"""The guest's tiny shell: a command registry driving the terminal.

A handler is ``handler(argv, out)``: ``argv[0]`` is the command name, ``out(line)`` prints one
line.  It may return an awaitable (slow USB commands); the prompt comes back when it finishes
and Ctrl+C cancels it.
"""

from __future__ import annotations

import asyncio
import inspect
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from .terminal import Terminal

Output = Callable[[str], None]
Handler = Callable[[list[str], Output], "None | Awaitable[None]"]


@dataclass(slots=True)
class Command:
    name: str
    handler: Handler
    help: str


class Shell:
    """Parses a line, runs the registered command, prints to the terminal."""

    def __init__(self, terminal: Terminal, clock: Callable[[], datetime] = datetime.now,
                 uptime: Callable[[], float] | None = None) -> None:
        self.terminal = terminal
        terminal.shell = self
        self.clock = clock
        start = time.monotonic()
        self.uptime = uptime or (lambda: time.monotonic() - start)
        self.commands: dict[str, Command] = {}
        self._task: asyncio.Future | None = None
        self.register("help", self._help, "list commands")
        self.register("echo", lambda argv, out: out(" ".join(argv[1:])), "print the arguments")
        self.register("clear", lambda argv, out: terminal.clear(), "clear the screen")
        self.register("date", lambda argv, out: out(self.clock().strftime("%a %b %d %H:%M:%S %Y")),
                      "print the date and time")
        self.register("uptime", self._uptime, "time since the guest started")
        self.register("history", lambda argv, out: [out(f"{i + 1:4d}  {h}") for i, h in
                                                    enumerate(terminal.history)], "list typed commands")

    # -- registry
    def register(self, name: str, handler: Handler, help: str = "") -> None:
        """Add or replace command ``name``."""
        self.commands[name] = Command(name, handler, help)

    def unregister(self, name: str) -> None:
        self.commands.pop(name, None)

    # -- running
    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def run(self, line: str) -> None:
        """Run one command line; shows the prompt again when done."""
        out = self.terminal.write_line
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            out(f"sh: {exc}")
            argv = []
        if not argv:
            self.terminal.show_prompt()
            return
        cmd = self.commands.get(argv[0])
        if cmd is None:
            out(f"{argv[0]}: command not found")
            self.terminal.show_prompt()
            return
        try:
            result = cmd.handler(argv, out)
        except Exception as exc:  # a broken command must not break the guest
            out(f"{argv[0]}: {type(exc).__name__}: {exc}")
            result = None
        if inspect.isawaitable(result):
            self._task = asyncio.ensure_future(result)
            self._task.add_done_callback(lambda t, name=argv[0]: self._finished(t, name))
        else:
            self.terminal.show_prompt()

    def _finished(self, task: asyncio.Future, name: str) -> None:
        if task.cancelled():
            self.terminal.write_line("^C")
        elif task.exception() is not None:
            exc = task.exception()
            self.terminal.write_line(f"{name}: {type(exc).__name__}: {exc}")
        self._task = None
        self.terminal.show_prompt()

    def cancel(self) -> None:
        """Ctrl+C: stop the running command."""
        if self.busy:
            self._task.cancel()

    async def wait_idle(self) -> None:
        """Return once no command is running."""
        while self._task is not None:
            await asyncio.wait({self._task})
            await asyncio.sleep(0)

    # -- built-in commands
    def _help(self, argv: list[str], out: Output) -> None:
        width = max(len(n) for n in self.commands)
        for name in sorted(self.commands):
            out(f"  {name.ljust(width)}  {self.commands[name].help}")

    def _uptime(self, argv: list[str], out: Output) -> None:
        secs = int(self.uptime())
        d, rem = divmod(secs, 86400)
        h, rem = divmod(rem, 3600)
        m, s = divmod(rem, 60)
        days = f"{d} day{'s' if d != 1 else ''}, " if d else ""
        out(f"{self.clock():%H:%M:%S} up {days}{h}:{m:02d}:{s:02d}")
