"""asyncio glue for :class:`~usbredir.ehci.controller.EhciController`.

* Device transfers: the coroutine is stepped once right away; a device that answers without
  waiting (virtual devices, interrupt NAKs) completes inside the schedule pass, no Task created.
  Otherwise the half-run coroutine continues in a Task and its result reaches
  ``controller.complete(key, result)``.
* Kicks (register writes that start schedules, completions) run the controller on the next loop
  iteration; a timer runs it every 1 ms while the schedules have work (QEMU's frame timer),
  backing off to 16 ms while they are idle, and not at all while both are disabled.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Coroutine
from typing import Any

from usbredir.device import Status, TransferResult
from usbredir.ehci import regs as R
from usbredir.ehci.controller import EhciController

log = logging.getLogger(__name__)

MIN_TICK = 0.001
ASYNC_BUSY_TICK = 0.00025  # async ring poll right after activity: the guest's next qTDs are found fast
MAX_TICK = 0.016


@types.coroutine
def _resume(coro, pending):
    """Continue a coroutine that was already stepped once outside a Task."""
    while True:
        try:
            value = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - forwarded into the coroutine (cancellation)
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                pending = coro.send(value)
            except StopIteration as stop:
                return stop.value


async def _continue(coro, pending):
    return await _resume(coro, pending)


class EhciRuntime:
    """Drives one controller from the running asyncio loop (construct inside the loop)."""

    def __init__(self, controller: EhciController) -> None:
        self.controller = controller
        controller.backend = self
        self.loop = asyncio.get_running_loop()
        self.tasks: dict[int, asyncio.Task] = {}
        self._spawned: set[asyncio.Task] = set()
        self._kick_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tick = MIN_TICK
        self._async_due = 0.0
        self._last_qtds = 0
        self.closed = False

    # --- Backend ---------------------------------------------------------------------
    def submit(self, key: int, coro: Coroutine[Any, Any, TransferResult]) -> TransferResult | None:
        try:
            pending = coro.send(None)
        except StopIteration as stop:
            return stop.value if isinstance(stop.value, TransferResult) else TransferResult(Status.IOERROR)
        except Exception:  # a device bug must not take the controller down
            log.exception("device transfer failed")
            return TransferResult(Status.IOERROR)
        task = self.loop.create_task(_continue(coro, pending))
        self.tasks[key] = task
        task.add_done_callback(lambda t, k=key: self._done(k, t))
        return None

    def _done(self, key: int, task: asyncio.Task) -> None:
        if self.tasks.pop(key, None) is None or task.cancelled() or self.closed:
            return
        exc = task.exception()
        if exc is not None:
            log.warning("device transfer failed: %r", exc)
        result = task.result() if exc is None else TransferResult(Status.IOERROR)
        if not isinstance(result, TransferResult):
            result = TransferResult(Status.IOERROR)
        self.controller.complete(key, result)
        self._tick = ASYNC_BUSY_TICK
        self._async_due = 0.0
        self.kick()

    def cancel(self, key: int) -> None:
        task = self.tasks.pop(key, None)
        if task is not None:
            task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start ``coro`` now (a device reset that needs no waiting is over before this returns)."""
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        except Exception:
            log.exception("device reset failed")
            return
        task = self.loop.create_task(_continue(coro, pending))
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def kick(self) -> None:
        if self._kick_handle is None and not self.closed:
            self._kick_handle = self.loop.call_soon(self._run_kick)

    # --- running ---------------------------------------------------------------------
    def _run_kick(self) -> None:
        self._kick_handle = None
        self._run(kicked=True)

    def _run(self, kicked: bool = False) -> None:
        """One controller run.  The periodic schedule is walked every frame while enabled; the
        async ring when kicked or when its own poll interval (0.25 ms right after progress, 1 ms
        while a device works, doubling to 16 ms while idle) is due — qTDs a guest appends without touching a register are noticed
        within that interval, as QEMU's backing-off worker does."""
        if self.closed:
            return
        c = self.controller
        now = self.loop.time()
        do_async = kicked or now >= self._async_due
        c.run(do_async=do_async)
        if do_async:
            progressed = c.stats["async_qtds"] != self._last_qtds
            self._last_qtds = c.stats["async_qtds"]
            if progressed:
                self._tick = ASYNC_BUSY_TICK
            elif self.tasks:  # a device is still working: its completion kicks; keep looking each frame
                self._tick = MIN_TICK
            else:
                self._tick = min(MAX_TICK, max(MIN_TICK, self._tick * 2))
            self._async_due = now + self._tick
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        cmd = self.controller.usbcmd
        if self.closed or not cmd & R.CMD_RS:
            return
        delays = []
        if self.controller._pending or cmd & R.CMD_PSE:  # a frame, or an interrupt waiting for its ITC slot
            delays.append(MIN_TICK)
        if cmd & R.CMD_ASE:
            delays.append(max(0.0, self._async_due - self.loop.time()))
        if delays:
            self._timer = self.loop.call_later(max(min(delays), ASYNC_BUSY_TICK), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._run()

    async def close(self) -> None:
        """Stop timers and cancel every in-flight transfer."""
        self.closed = True
        if self._timer:
            self._timer.cancel()
        if self._kick_handle:
            self._kick_handle.cancel()
        tasks = list(self.tasks.values()) + list(self._spawned)
        for t in tasks:
            t.cancel()
        self.tasks.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
