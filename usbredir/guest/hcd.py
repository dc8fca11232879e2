"""The guest's EHCI host-controller driver: talks to the controller only through MMIO register
accessors and guest memory, and waits on its IRQ line, as an OS driver does (Linux ehci-hcd shape,
spec ehci.md §11).

* Async ring: a halted dummy head QH (H=1) linked to itself; control and bulk QHs are linked in
  after it and unlinked with the async-advance doorbell.
* Periodic schedule: a 1024-entry frame list over a static tree of skeleton QHs for periods
  1, 2, 4 … 32 frames; each interrupt QH hangs below the skeleton of its period and phase.
* A transfer is a chain of qTDs (≤ 20 KiB each, page-aligned buffers); the driver writes the
  idle QH's overlay to start it and learns of completion from USBINT/USBERRINT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from usbredir.device import Speed
from usbredir.ehci import regs as R
from usbredir.ehci.memory import GuestMemory
from usbredir.guest.dma import DmaPool, OutOfDmaMemory

log = logging.getLogger(__name__)

QTD_CHUNK = 5 * 4096
PERIOD_LEVELS = 6  # skeleton periods 1..32 frames
SKEL_PERIOD = 1 << (PERIOD_LEVELS - 1)
DEAD = 1  # T bit


class UsbError(Exception):
    """A failed transfer; ``kind`` is stall, xact, babble, timeout, gone or hse."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind


@dataclass(eq=False)
class DeviceHandle:
    """A device as the driver addresses it."""

    address: int
    speed: Speed
    maxp0: int
    tt_hub: int = 0
    tt_port: int = 0
    ctrl: Pipe | None = None
    pipes: list[Pipe] = field(default_factory=list)
    gone: bool = False
    bytes_moved: int = 0


@dataclass(eq=False)
class Pipe:
    dev: DeviceHandle
    endpoint: int  # with 0x80 for IN
    kind: str  # control|bulk|interrupt
    maxp: int
    qh: int
    period: int = 0
    phase: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(eq=False)
class _Xfer:
    pipe: Pipe
    qtds: list[int]
    lengths: list[int]
    control: bool
    is_in: bool
    fut: asyncio.Future
    buf: int


class EhciHcd:
    """Driver for one EHCI controller."""

    def __init__(self, memory: GuestMemory, mmio_read: Callable[[int], int],
                 mmio_write: Callable[[int, int], None], dma: DmaPool) -> None:
        self.mem = memory
        self.rd = mmio_read
        self.wr = mmio_write
        self.dma = dma
        self.irq_event = asyncio.Event()
        self.port_event = asyncio.Event()
        self._iaa = asyncio.Event()
        self._xfers: list[_Xfer] = []
        self._async_qhs: list[int] = []
        self._periodic: dict[tuple[int, int], list[int]] = {}
        self._skel: dict[tuple[int, int], int] = {}
        self._irq_task: asyncio.Task | None = None
        self._doorbell = asyncio.Lock()
        self.n_ports = 0
        self.dead = False
        self.hse_count = 0
        self.on_fatal: Callable[[], None] | None = None

    # --- IRQ line ------------------------------------------------------------------------
    def irq(self, level: bool) -> None:
        """The controller's interrupt line (wire this as the controller's ``irq`` callback)."""
        if level:
            self.irq_event.set()

    async def _irq_loop(self) -> None:
        while True:
            await self.irq_event.wait()
            self.irq_event.clear()
            sts = self.rd(R.USBSTS)
            ack = sts & R.STS_W1C
            if not ack:
                continue
            self.wr(R.USBSTS, ack)
            if ack & R.STS_PCD:
                self.port_event.set()
            if ack & R.STS_IAA:
                self._iaa.set()
            if ack & (R.STS_INT | R.STS_ERR):
                self._scan()
            if ack & R.STS_HSE:
                self.hse_count += 1
                self.dead = True
                log.error("EHCI host system error: controller halted")
                for x in list(self._xfers):
                    self._end(x, UsbError("hse", "host system error"))
                if self.on_fatal:
                    self.on_fatal()

    # --- bring-up --------------------------------------------------------------------
    async def start(self) -> None:
        """Halt, reset and start the controller (ehci.md §11.1)."""
        caplen = self.rd(R.CAPLENGTH) & 0xFF
        assert caplen == R.OPREG, f"unexpected CAPLENGTH {caplen:#x}"
        self.n_ports = self.rd(R.HCSPARAMS) & 0xF
        self.wr(R.USBCMD, self.rd(R.USBCMD) & ~R.CMD_RS)
        await self._poll(lambda: self.rd(R.USBSTS) & R.STS_HALT, 0.05, "halt")
        self.wr(R.USBCMD, R.CMD_HCRESET)
        await self._poll(lambda: not self.rd(R.USBCMD) & R.CMD_HCRESET, 0.25, "reset")
        self.dead = False
        self._xfers.clear()
        self._async_qhs.clear()
        self._periodic.clear()
        # frame list over the skeleton tree
        self.frame_list = self.dma.alloc(4096)
        self._skel.clear()
        for level in range(PERIOD_LEVELS):
            period = 1 << level
            for phase in range(period):
                qh = self.dma.alloc(48)
                nxt = DEAD if period == 1 else self._skel[(period // 2, phase % (period // 2))] | 2
                self.mem.write_dwords(qh, [nxt, 0, 0, DEAD, DEAD, DEAD, R.TOK_HALTED] + [0] * 5)
                self._skel[(period, phase)] = qh
        entries = [self._skel[(SKEL_PERIOD, f % SKEL_PERIOD)] | 2 for f in range(1024)]
        self.mem.write_dwords(self.frame_list, entries)
        # async ring: the dummy head
        self.head = self.dma.alloc(48)
        self.mem.write_dwords(self.head, [self.head | 2, R.QH_H | R.EPS_HIGH << 12, 0x4000_0000, 0,
                                          DEAD, DEAD, R.TOK_HALTED, 0, 0, 0, 0, 0])
        self.dead_qtd = self.dma.alloc(32)
        self.mem.write_dwords(self.dead_qtd, [DEAD, DEAD, R.TOK_HALTED, 0, 0, 0, 0, 0])
        self.wr(R.PERIODICLISTBASE, self.frame_list)
        self.wr(R.ASYNCLISTADDR, self.head)
        self.wr(R.USBCMD, 1 << R.CMD_ITC_SHIFT | R.CMD_RS)  # schedules are enabled when they get work
        await self._poll(lambda: not self.rd(R.USBSTS) & R.STS_HALT, 0.05, "run")
        self.wr(R.CONFIGFLAG, 1)
        self.rd(R.USBCMD)
        self.wr(R.USBINTR, 0x37)
        if self._irq_task is None or self._irq_task.done():
            self._irq_task = asyncio.get_running_loop().create_task(self._irq_loop())
        self.port_event.set()  # look at the ports once

    async def stop(self) -> None:
        if self._irq_task:
            self._irq_task.cancel()
            try:
                await self._irq_task
            except asyncio.CancelledError:
                pass
            self._irq_task = None
        self.wr(R.USBCMD, 0)
        for x in list(self._xfers):
            self._end(x, UsbError("gone", "controller stopped"))

    async def _poll(self, cond: Callable[[], object], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            if loop.time() > deadline:
                raise UsbError("timeout", f"EHCI {what} timed out")
            await asyncio.sleep(0.001)

    # --- root ports ------------------------------------------------------------------
    def portsc(self, port: int) -> int:
        return self.rd(R.PORTSC0 + 4 * (port - 1))

    def _portsc_write(self, port: int, value: int) -> None:
        self.wr(R.PORTSC0 + 4 * (port - 1), value)

    def ack_port_change(self, port: int) -> int:
        """Clear CSC/PEDC/OCC on a port; returns the status read before."""
        sc = self.portsc(port)
        if sc & R.PORT_W1C:
            self._portsc_write(port, sc)  # W1C bits written back as 1 clear themselves, PED kept
        return sc

    async def reset_port(self, port: int, reset_time: float = 0.01) -> bool:
        """Port reset; True when the port came out enabled (a high-speed device)."""
        sc = self.portsc(port) & ~(R.PORT_W1C | R.PORT_PED)
        self._portsc_write(port, sc | R.PORT_PR)
        await asyncio.sleep(reset_time)
        self._portsc_write(port, self.portsc(port) & ~(R.PORT_W1C | R.PORT_PR))
        await self._poll(lambda: not self.portsc(port) & R.PORT_PR, 0.01, "port reset")
        return bool(self.portsc(port) & R.PORT_PED)

    def disable_port(self, port: int) -> None:
        self._portsc_write(port, self.portsc(port) & ~(R.PORT_W1C | R.PORT_PED))

    # --- devices and pipes -----------------------------------------------------------
    def _qh_words(self, dev: DeviceHandle, ep: int, maxp: int, *, control: bool, periodic: bool,
                  smask: int = 0) -> list[int]:
        eps = {Speed.HIGH: R.EPS_HIGH, Speed.FULL: R.EPS_FULL, Speed.LOW: R.EPS_LOW}.get(dev.speed, R.EPS_FULL)
        split = eps != R.EPS_HIGH
        rl = 0 if periodic or split else 4
        epchar = rl << 28 | (maxp & 0x7FF) << 16 | eps << 12 | (ep & 0xF) << 8 | dev.address
        if control:
            epchar |= R.QH_DTC | ((1 << 27) if split else 0)
        epcap = 1 << 30 | smask
        if split:
            epcap |= dev.tt_port << 23 | dev.tt_hub << 16 | ((0x1C << 8) if periodic else 0)
        return [DEAD, epchar, epcap, 0, DEAD, DEAD, 0, 0, 0, 0, 0, 0]

    def open_device(self, speed: Speed, tt_hub: int = 0, tt_port: int = 0) -> DeviceHandle:
        """A handle for the device at address 0 with its control pipe linked into the async ring."""
        maxp0 = 8 if speed == Speed.LOW else 64
        dev = DeviceHandle(0, speed, maxp0, tt_hub, tt_port)
        dev.ctrl = self._open_async(dev, 0, "control", maxp0)
        return dev

    def set_address(self, dev: DeviceHandle, address: int, maxp0: int | None = None) -> None:
        """Point the control QH at the device's new address / max packet size (QH is idle)."""
        dev.address = address
        if maxp0:
            dev.maxp0 = maxp0
        words = self._qh_words(dev, 0, dev.maxp0, control=True, periodic=False)
        self.mem.write_dwords(dev.ctrl.qh + 4, [words[1], words[2]])

    def _open_async(self, dev: DeviceHandle, ep: int, kind: str, maxp: int) -> Pipe:
        qh = self.dma.alloc(48)
        words = self._qh_words(dev, ep, maxp, control=kind == "control", periodic=False)
        words[0] = self.mem.read32(self.head)  # new QH's link first, then link it in
        self.mem.write_dwords(qh, words)
        self.mem.write32(self.head, qh | 2)
        self._async_qhs.append(qh)
        self._schedule(R.CMD_ASE, True)
        pipe = Pipe(dev, ep, kind, maxp, qh)
        if kind != "control":
            dev.pipes.append(pipe)
        return pipe

    def open_bulk(self, dev: DeviceHandle, endpoint: int, maxp: int) -> Pipe:
        return self._open_async(dev, endpoint, "bulk", maxp)

    def open_interrupt(self, dev: DeviceHandle, endpoint: int, maxp: int, interval_frames: int) -> Pipe:
        period = 1
        while period * 2 <= min(max(1, interval_frames), SKEL_PERIOD):
            period *= 2
        phase = min(range(period), key=lambda p: len(self._periodic.get((period, p), [])))
        qh = self.dma.alloc(48)
        words = self._qh_words(dev, endpoint, maxp, control=False, periodic=True, smask=0x01)
        chain = self._periodic.setdefault((period, phase), [])
        skel = self._skel[(period, phase)]
        words[0] = self.mem.read32(skel)
        self.mem.write_dwords(qh, words)
        self.mem.write32(skel, qh | 2)
        chain.insert(0, qh)
        self._schedule(R.CMD_PSE, True)
        pipe = Pipe(dev, endpoint, "interrupt", maxp, qh, period, phase)
        dev.pipes.append(pipe)
        return pipe

    async def close_pipe(self, pipe: Pipe) -> None:
        """Unlink a pipe's QH (doorbell for async, a frame for periodic) and free it."""
        for x in [x for x in self._xfers if x.pipe is pipe]:
            self._end(x, UsbError("gone", "pipe closed"))
        if pipe.kind == "interrupt":
            chain = self._periodic.get((pipe.period, pipe.phase), [])
            if pipe.qh in chain:
                i = chain.index(pipe.qh)
                prev = self._skel[(pipe.period, pipe.phase)] if i == 0 else chain[i - 1]
                self.mem.write32(prev, self.mem.read32(pipe.qh))
                chain.remove(pipe.qh)
                await self._wait_frame()
                if not any(self._periodic.values()):
                    self._schedule(R.CMD_PSE, False)
        elif pipe.qh in self._async_qhs:
            ring = [self.head] + self._async_qhs[::-1]  # ring order: head, newest … oldest
            prev = ring[ring.index(pipe.qh) - 1]
            self.mem.write32(prev, self.mem.read32(pipe.qh))
            self._async_qhs.remove(pipe.qh)
            await self._ring_doorbell()
            if not self._async_qhs:
                self._schedule(R.CMD_ASE, False)
        if pipe in pipe.dev.pipes:
            pipe.dev.pipes.remove(pipe)
        self.dma.free(pipe.qh)

    async def close_device(self, dev: DeviceHandle) -> None:
        dev.gone = True
        for pipe in list(dev.pipes):
            await self.close_pipe(pipe)
        if dev.ctrl:
            await self.close_pipe(dev.ctrl)

    def _schedule(self, bit: int, on: bool) -> None:
        """Enable the async/periodic schedule while it has QHs, as Linux does (an idle bus costs
        nothing).  The model reflects ASS/PSS at once, so no status polling is needed here."""
        cmd = self.rd(R.USBCMD)
        if bool(cmd & bit) != on and not self.dead:
            self.wr(R.USBCMD, (cmd | bit) if on else (cmd & ~bit))

    async def _ring_doorbell(self) -> None:
        if self.dead:
            return
        async with self._doorbell:
            self._iaa.clear()
            self.wr(R.USBCMD, self.rd(R.USBCMD) | R.CMD_IAAD)
            try:
                await asyncio.wait_for(self._iaa.wait(), 0.2)
            except TimeoutError:
                log.warning("EHCI: no IAA after the doorbell")

    async def _wait_frame(self) -> None:
        start = self.rd(R.FRINDEX) >> 3
        for _ in range(20):
            await asyncio.sleep(0.001)
            if self.rd(R.FRINDEX) >> 3 != start:
                return

    # --- transfers -------------------------------------------------------------------
    def _build_qtds(self, buf: int, length: int, pid: int, *, dt: int, chunk_alt: int,
                    last_ioc: bool) -> tuple[list[int], list[int]]:
        qtds, lengths = [], []
        pos = 0
        while True:
            n = min(QTD_CHUNK - ((buf + pos) & 0xFFF), length - pos)
            qtd = self.dma.alloc(32, zero=False)
            start = buf + pos
            pages = [start] + [((start & ~0xFFF) + 4096 * i) for i in range(1, 5)]
            self.mem.write_dwords(qtd, [DEAD, chunk_alt, R.token(pid, n, dt=dt), *pages])
            qtds.append(qtd)
            lengths.append(n)
            pos += n
            if pos >= length:
                break
        if last_ioc:
            self.mem.write32(qtds[-1] + 8, self.mem.read32(qtds[-1] + 8) | R.TOK_IOC)
        return qtds, lengths

    def _chain(self, qtds: list[int]) -> None:
        for a, b in zip(qtds, qtds[1:], strict=False):
            self.mem.write32(a, b)

    async def _run(self, pipe: Pipe, qtds: list[int], lengths: list[int], *, control: bool, is_in: bool,
                   buf: int, timeout: float | None) -> int:
        """Start the qTD chain on the idle QH, wait for it; returns bytes moved (data stage)."""
        if self.dead or pipe.dev.gone:
            for q in qtds:
                self.dma.free(q)
            raise UsbError("gone" if pipe.dev.gone else "hse", "device or controller gone")
        fut = asyncio.get_running_loop().create_future()
        x = _Xfer(pipe, qtds, lengths, control, is_in, fut, buf)
        self._xfers.append(x)
        tok = self.mem.read32(pipe.qh + 24)
        self.mem.write_dwords(pipe.qh + 16, [qtds[0], DEAD, tok & R.TOK_DT])
        try:
            moved = await asyncio.wait_for(asyncio.shield(fut), timeout)
            pipe.dev.bytes_moved += moved
            return moved
        except TimeoutError:
            self._end(x, UsbError("timeout", f"transfer on ep {pipe.endpoint:#x} timed out"))
            raise UsbError("timeout", f"transfer on ep {pipe.endpoint:#x} timed out") from None
        except asyncio.CancelledError:
            self._end(x, UsbError("gone", "cancelled"))
            raise
        finally:
            for q in qtds:
                self.dma.free(q)

    def _end(self, x: _Xfer, result: int | UsbError) -> None:
        if x in self._xfers:
            self._xfers.remove(x)
        if isinstance(result, UsbError):  # retire the qTDs and the overlay before they are freed
            for q in x.qtds:
                self.mem.write32(q + 8, self.mem.read32(q + 8) & ~R.TOK_ACTIVE)
            tok = self.mem.read32(x.pipe.qh + 24)
            self.mem.write_dwords(x.pipe.qh + 16, [DEAD, DEAD, tok & R.TOK_DT])
        if not x.fut.done():
            if isinstance(result, UsbError):
                x.fut.set_exception(result)
                x.fut.exception()  # mark retrieved: the waiter may have gone
            else:
                x.fut.set_result(result)

    def _scan(self) -> None:
        for x in list(self._xfers):
            res = self._check(x)
            if res is not None:
                self._end(x, res)

    def _check(self, x: _Xfer) -> int | UsbError | None:
        moved = 0
        data_qtds = x.qtds[1:-1] if x.control else x.qtds
        for i, q in enumerate(x.qtds):
            tok = self.mem.read32(q + 8)
            if tok & R.TOK_ACTIVE:
                return None
            if tok & R.TOK_HALTED:
                kind = "babble" if tok & R.TOK_BABBLE else "xact" if tok & R.TOK_XACT else "stall"
                return UsbError(kind, f"ep {x.pipe.endpoint:#x} {kind} (token {tok:#010x})")
            left = (tok >> R.TOK_BYTES_SHIFT) & R.TOK_BYTES_MASK
            if q in data_qtds:
                moved += x.lengths[i] - left
                if left and x.is_in and not x.control:
                    return moved  # short packet ends a bulk/interrupt IN transfer
        return moved

    async def control(self, dev: DeviceHandle, setup: bytes, data: bytes = b"", *,
                      timeout: float | None = 2.0) -> bytes:
        """A control transfer; returns the IN data (or b"" for OUT)."""
        try:
            return await self._control(dev, setup, data, timeout)
        except OutOfDmaMemory as exc:
            raise UsbError("nomem", str(exc)) from None

    async def _control(self, dev: DeviceHandle, setup: bytes, data: bytes, timeout: float | None) -> bytes:
        pipe = dev.ctrl
        is_in = bool(setup[0] & 0x80)
        wlength = int.from_bytes(setup[6:8], "little")
        length = wlength if is_in else len(data)
        async with pipe.lock:
            buf = self.dma.alloc(max(64, 8 + length) if length <= 56 else 4096 + length)
            dbuf = buf + 8 if length <= 56 else buf + 4096
            self.mem.write(buf, setup)
            if data:
                self.mem.write(dbuf, data)
            try:
                status_qtd = self.dma.alloc(32, zero=False)
                setup_qtd = self.dma.alloc(32, zero=False)
                self.mem.write_dwords(setup_qtd, [DEAD, DEAD, R.token(R.PID_SETUP, 8), buf, 0, 0, 0, 0])
                mids: list[int] = []
                lens = [8]
                if length:
                    mids, mlens = self._build_qtds(dbuf, length, R.PID_IN if is_in else R.PID_OUT, dt=1,
                                                   chunk_alt=status_qtd, last_ioc=False)
                    lens += mlens
                self.mem.write_dwords(status_qtd, [DEAD, DEAD, R.token(R.PID_OUT if is_in and length else R.PID_IN,
                                                                       0, dt=1, ioc=True), 0, 0, 0, 0, 0])
                qtds = [setup_qtd, *mids, status_qtd]
                lens.append(0)
                self._chain(qtds)
                moved = await self._run(pipe, qtds, lens, control=True, is_in=is_in, buf=buf, timeout=timeout)
                return bytes(self.mem.read(dbuf, moved)) if is_in else b""
            finally:
                self.dma.free(buf)

    async def bulk(self, pipe: Pipe, data: bytes | None = None, length: int = 0, *,
                   timeout: float | None = 10.0) -> bytes | int:
        """Bulk/interrupt OUT (``data``; returns bytes sent) or IN (up to ``length``; returns data)."""
        try:
            return await self._bulk(pipe, data, length, timeout)
        except OutOfDmaMemory as exc:
            raise UsbError("nomem", str(exc)) from None

    async def _bulk(self, pipe: Pipe, data: bytes | None, length: int, timeout: float | None) -> bytes | int:
        is_in = bool(pipe.endpoint & 0x80)
        n = length if is_in else len(data or b"")
        async with pipe.lock:
            buf = self.dma.alloc(max(n, 65), zero=False)
            try:
                if not is_in and n:
                    self.mem.write(buf, data)
                alt = self.dead_qtd if is_in else DEAD
                qtds, lens = self._build_qtds(buf, n, R.PID_IN if is_in else R.PID_OUT, dt=0,
                                              chunk_alt=alt, last_ioc=True)
                self._chain(qtds)
                moved = await self._run(pipe, qtds, lens, control=False, is_in=is_in, buf=buf, timeout=timeout)
                return bytes(self.mem.read(buf, moved)) if is_in else moved
            finally:
                self.dma.free(buf)

    def reset_toggle(self, pipe: Pipe) -> None:
        """After CLEAR_FEATURE(ENDPOINT_HALT): DATA0 and a clean, idle overlay."""
        self.mem.write_dwords(pipe.qh + 16, [DEAD, DEAD, 0])

    def fail_device(self, dev: DeviceHandle) -> None:
        """The device went away: fail its pending transfers now."""
        dev.gone = True
        for x in list(self._xfers):
            if x.pipe.dev is dev:
                self._end(x, UsbError("gone", "device disconnected"))
