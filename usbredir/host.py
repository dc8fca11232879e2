"""The usb-host side: export one :class:`~usbredir.device.UsbDevice` over a usbredir stream.

:class:`UsbredirHost` plays the ``usbredirhost`` role on top of the sans-I/O
:class:`usbredir.parser.UsbredirParser`: hello, then ``interface_info`` + ``ep_info`` (derived from
the device's descriptors) + ``device_connect``; it answers set/get configuration and alt
setting, control, bulk, interrupt OUT and iso packets, runs interrupt-IN, iso and
buffered-bulk streams (``start_interrupt_receiving`` etc.), cancels on request, resets the
device on ``reset`` and sends ``device_disconnect`` on :meth:`UsbredirHost.detach`.

It is transport-neutral: bytes from the peer go to :meth:`UsbredirHost.feed`, bytes to the peer
leave through the ``transport`` object (``write(list_of_chunks)``, ``async drain()``,
``close()``) — a TCP stream (:func:`serve_stream`) or a SPICE usbredir channel.
Transfers on one endpoint are executed in order; different endpoints run concurrently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from usbredir import proto as P
from usbredir.device import EndpointType, SetupPacket, Speed, Status, TransferResult, UsbDevice
from usbredir.devices.base import DT_ENDPOINT, DT_INTERFACE, iter_descriptors
from usbredir.parser import InvalidState, ProtocolError, Role, UsbredirParser

log = logging.getLogger(__name__)

HOST_CAPS = P.ALL_CAPS & ~P.Cap.BULK_STREAMS
VERSION = "aiospice usbredir host 0.1"
REPLAY_WINDOW = 0.25  # s: interrupt IN data sent this shortly before a guest's stop is re-sent on restart
MAX_PENDING = 4096  # outstanding data requests from one peer; more is abuse -> disconnect
MAX_PENDING_BYTES = 64 << 20  # OUT data held by queued requests; above it the peer is not read


class Transport(Protocol):
    def write(self, chunks: list) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class Stats:
    """Counters for status lines and benchmarks."""

    started: float = field(default_factory=time.monotonic)
    bytes_to_guest: int = 0
    bytes_from_guest: int = 0
    transfers: int = 0
    errors: int = 0
    resets: int = 0

    def rate(self) -> float:
        """Payload bytes per second (both directions) since start."""
        dt = max(time.monotonic() - self.started, 1e-6)
        return (self.bytes_to_guest + self.bytes_from_guest) / dt


def describe(config: bytes, alt_settings: dict[int, int]) -> tuple[P.InterfaceInfo, P.EpInfo]:
    """interface_info + ep_info for ``config`` with the given alternate settings."""
    ifaces: list[tuple[int, int, int, int]] = []
    types = [int(EndpointType.INVALID)] * 32
    interval = [0] * 32
    owner = [0] * 32
    maxp = [0] * 32
    types[0] = types[16] = int(EndpointType.CONTROL)
    maxp[0] = maxp[16] = 64
    current: int | None = None
    for d in iter_descriptors(config):
        if d[1] == DT_INTERFACE and len(d) >= 9:
            number, alt = d[2], d[3]
            if alt == alt_settings.get(number, 0) and len(ifaces) < 32:
                ifaces.append((number, d[5], d[6], d[7]))
                current = number
            else:
                current = None
        elif d[1] == DT_ENDPOINT and len(d) >= 7 and current is not None:
            ep = d[2]
            i = P.ep2i(ep)
            kind = d[3] & 3
            w = d[4] | d[5] << 8
            size = w & 0x7FF
            if kind == EndpointType.ISO:
                size *= 1 + ((w >> 11) & 3)
            types[i], interval[i], owner[i], maxp[i] = kind, d[6], current, size
    info = P.InterfaceInfo(0, *(tuple(col) for col in zip(*ifaces, strict=True))) if ifaces else P.InterfaceInfo()
    return info, P.EpInfo(0, tuple(types), tuple(interval), tuple(owner), tuple(maxp))


class UsbredirHost:
    """Serve ``device`` to one usbredir peer (a usb-guest such as QEMU's ``usb-redir``)."""

    def __init__(self, device: UsbDevice, transport: Transport, *, version: str = VERSION,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.device = device
        self.transport = transport
        self.parser = UsbredirParser(Role.HOST, HOST_CAPS, version)
        self.stats = Stats()
        self.on_event = on_event or (lambda msg: log.info("%s", msg))
        self.attached = False          # device announced and not disconnected
        self.configuration = 0
        self.alt_settings: dict[int, int] = {}
        self.ep_info = P.EpInfo()
        self._pending: dict[int, tuple[asyncio.Task, object]] = {}   # id -> (task, request packet)
        self._pending_bytes = 0                                        # OUT data held by queued requests
        self._room = asyncio.Event()                                   # set while under MAX_PENDING_BYTES
        self._room.set()
        self._tails: dict[object, asyncio.Task] = {}                  # per-endpoint ordering
        self._streams: dict[int, asyncio.Task] = {}                   # IN endpoint -> stream task
        self._recent: dict[int, collections.deque] = {}                # ep -> (time, data) sent lately
        self._replay: dict[int, list[bytes]] = {}                      # ep -> data to send again on restart
        self._ack = asyncio.Event()
        self._disconnect_sent = False
        self.closed = asyncio.get_running_loop().create_future()
        self.peer_filter = ""
        self._flush()  # our hello
        device.on_disconnect = self._device_gone

    # --- I/O ---------------------------------------------------------------------------
    def _flush(self) -> None:
        out = self.parser.data_to_send()
        if out:
            self.transport.write(out)

    def _send(self, pkt) -> None:
        if self.parser.closed:
            return
        try:
            self.parser.send(pkt)
        except InvalidState as exc:
            log.debug("not sent: %s", exc)
            return
        self._flush()

    def feed(self, data: bytes) -> None:
        """Bytes from the peer."""
        self.parser.receive_data(data)
        self._dispatch()

    def feed_eof(self) -> None:
        self.parser.receive_eof()
        self._dispatch()
        self._shutdown("peer closed the connection")

    def _shutdown(self, why: str) -> None:
        if not self.closed.done():
            self.on_event(why)
            self._cancel_all()
            self.parser.close()
            self.transport.close()
            self.closed.set_result(why)

    def _dispatch(self) -> None:
        for ev in self.parser.events_received():
            if isinstance(ev, ProtocolError):
                self._shutdown(f"usbredir protocol error from peer: {ev}")
                return
            handler = self._handlers.get(type(ev))
            if handler is not None:
                handler(self, ev)

    # --- handshake / attach --------------------------------------------------------------
    def _on_hello(self, ev: P.Hello) -> None:
        self.on_event(f"peer hello: {self.parser.peer_version!r}")
        if self.device is not None:
            self._announce()

    def _announce(self) -> None:
        d = self.device.device_descriptor
        self._send_infos()
        speed = self.device.speed
        self._send(P.DeviceConnect(0, int(speed if speed is not None else Speed.UNKNOWN), d[4], d[5], d[6],
                                   d[8] | d[9] << 8, d[10] | d[11] << 8, d[12] | d[13] << 8))
        self.attached = True
        self.on_event(f"device announced: {d[8] | d[9] << 8:04x}:{d[10] | d[11] << 8:04x} {self.device.product}")

    def _config_blob(self) -> bytes:
        configs = self.device.config_descriptors
        for c in configs:
            if len(c) > 5 and c[5] == self.configuration:
                return c
        return configs[0] if configs else b""

    def _send_infos(self) -> None:
        iface, ep = describe(self._config_blob(), self.alt_settings)
        self.ep_info = ep
        self._send(iface)
        self._send(ep)

    def _on_filter(self, ev: P.FilterFilter) -> None:
        self.peer_filter = ev.rules

    def _on_filter_reject(self, ev: P.FilterReject) -> None:
        self.attached = False
        self._shutdown("the peer's filter rejected the device")

    def _on_ack(self, ev: P.DeviceDisconnectAck) -> None:
        self._ack.set()

    # --- ordering / cancel ---------------------------------------------------------------
    def _submit(self, key: object, pkt, work: Callable[[], Awaitable[None]]) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._shutdown(f"peer has more than {MAX_PENDING} requests outstanding")
            return
        # in order per endpoint, and after any configuration change / reset queued before it
        before = [t for t in (self._tails.get(key), self._tails.get("ctl")) if t is not None and not t.done()]

        async def run() -> None:
            if before:
                await asyncio.wait(before)
            await work()

        task = asyncio.get_running_loop().create_task(run())
        self._tails[key] = task
        held = len(getattr(pkt, "data", b"") or b"")
        if held:
            self._hold(held)
            task.add_done_callback(lambda _t, held=held: self._hold(-held))
        pid = getattr(pkt, "id", None)
        if pid is not None and isinstance(pkt, (P.ControlPacket, P.BulkPacket, P.InterruptPacket)):
            self._pending[pid] = (task, pkt)
            task.add_done_callback(lambda t, pid=pid: self._forget(pid, t))

    def _hold(self, delta: int) -> None:
        self._pending_bytes += delta
        if self._pending_bytes > MAX_PENDING_BYTES:
            self._room.clear()
        else:
            self._room.set()

    async def room(self) -> None:
        """Wait until queued requests hold little enough OUT data to read more from the peer."""
        await self._room.wait()

    def _forget(self, pid: int, task: asyncio.Task) -> None:
        entry = self._pending.get(pid)
        if entry is not None and entry[0] is task:
            del self._pending[pid]
        if not task.cancelled() and task.exception() is not None:
            log.error("transfer failed", exc_info=task.exception())

    def _on_cancel(self, ev: P.CancelDataPacket) -> None:
        entry = self._pending.pop(ev.id, None)
        if entry is None:
            return  # already completed: its reply is (or was) on the way
        task, pkt = entry
        task.cancel()
        self._reply(pkt, Status.CANCELLED)

    def _cancel_all(self, endpoints: set[int] | None = None) -> None:
        for pid, (task, pkt) in list(self._pending.items()):
            if endpoints is None or pkt.endpoint in endpoints:
                del self._pending[pid]
                task.cancel()
                if endpoints is not None or not self.closed.done():
                    self._reply(pkt, Status.CANCELLED)
        for ep, task in list(self._streams.items()):
            if endpoints is None or ep in endpoints:
                task.cancel()
                del self._streams[ep]

    def _stop_streams_with_status(self) -> None:
        for ep, task in list(self._streams.items()):
            task.cancel()
            del self._streams[ep]
            kind = self.ep_info.type[P.ep2i(ep)]
            if kind == EndpointType.INTERRUPT:
                self._send(P.InterruptReceivingStatus(0, Status.STALL, ep))
            elif kind == EndpointType.ISO:
                self._send(P.IsoStreamStatus(0, Status.STALL, ep))
            elif kind == EndpointType.BULK:
                self._send(P.BulkReceivingStatus(0, 0, ep, Status.STALL))

    def _reply(self, pkt, status: Status, data: bytes | memoryview = b"", actual: int = 0) -> None:
        status = Status.IOERROR if status == Status.NAK else status
        if isinstance(pkt, P.ControlPacket):
            is_in = bool(pkt.endpoint & 0x80)
            self._send(pkt._replace(status=int(status), length=len(data) if is_in else actual,
                                    data=data if is_in else b""))
        elif isinstance(pkt, P.BulkPacket):
            is_in = bool(pkt.endpoint & 0x80)
            self._send(pkt._replace(status=int(status), length=len(data) if is_in else actual,
                                    data=data if is_in else b""))
        elif isinstance(pkt, P.InterruptPacket):
            self._send(pkt._replace(status=int(status), length=actual, data=b""))
        if status not in (Status.SUCCESS, Status.CANCELLED):
            self.stats.errors += 1

    def _ep_type(self, ep: int) -> int:
        return self.ep_info.type[P.ep2i(ep)] if (ep & 0x70) == 0 else EndpointType.INVALID

    # --- control-type packets ----------------------------------------------------------------
    def _on_reset(self, ev: P.Reset) -> None:
        self.stats.resets += 1
        self._stop_streams_with_status()  # as usbredirhost: running streams report stall
        self._cancel_all()

        async def work() -> None:
            await self.device.reset()
            self.configuration = 0
            self.alt_settings = {}
        self._submit("ctl", ev, work)

    def _on_set_config(self, ev: P.SetConfiguration) -> None:
        # what is pending now is dropped (usbredir: control packets end data packets and streams)
        self._cancel_all(set(self._streams) | {p.endpoint for _, p in self._pending.values()
                                               if not isinstance(p, P.ControlPacket)})

        async def work() -> None:
            status = await self.device.set_configuration(ev.configuration)
            if status == Status.SUCCESS:
                self.configuration = ev.configuration
                self.alt_settings = {}
                self._send_infos()
            self._send(P.ConfigurationStatus(ev.id, int(status), self.configuration))
        self._submit("ctl", ev, work)

    def _on_get_config(self, ev: P.GetConfiguration) -> None:
        self._send(P.ConfigurationStatus(ev.id, Status.SUCCESS, self.configuration))

    def _interface_exists(self, number: int) -> bool:
        iface, _ = describe(self._config_blob(), {})
        return number in iface.interface

    def _on_set_alt(self, ev: P.SetAltSetting) -> None:
        if self._interface_exists(ev.interface):
            self._cancel_all({P.i2ep(i) for i in range(32) if self.ep_info.interface[i] == ev.interface
                              and self.ep_info.type[i] not in (EndpointType.CONTROL, EndpointType.INVALID)})

        async def work() -> None:
            if not self._interface_exists(ev.interface):
                self._send(P.AltSettingStatus(ev.id, Status.INVAL, ev.interface, 0xFF))
                return
            status = await self.device.set_alt_setting(ev.interface, ev.alt)
            if status == Status.SUCCESS:
                self.alt_settings[ev.interface] = ev.alt
                self._send_infos()
            self._send(P.AltSettingStatus(ev.id, int(status), ev.interface,
                                          self.alt_settings.get(ev.interface, 0) if status == Status.SUCCESS else 0xFF))
        self._submit("ctl", ev, work)

    def _on_get_alt(self, ev: P.GetAltSetting) -> None:
        if self._interface_exists(ev.interface):
            self._send(P.AltSettingStatus(ev.id, Status.SUCCESS, ev.interface, self.alt_settings.get(ev.interface, 0)))
        else:
            self._send(P.AltSettingStatus(ev.id, Status.INVAL, ev.interface, 0xFF))

    # --- data packets ------------------------------------------------------------------------
    def _on_control(self, pkt: P.ControlPacket) -> None:
        if not self.attached:
            self._reply(pkt, Status.IOERROR)
            return
        if pkt.endpoint & 0x7F:
            self._reply(pkt, Status.INVAL)
            return
        data = bytes(pkt.data)
        self.stats.bytes_from_guest += len(data)

        async def work() -> None:
            setup = SetupPacket(pkt.requesttype, pkt.request, pkt.value, pkt.index, pkt.length)
            if pkt.requesttype == 0x02 and pkt.request == 1 and pkt.value == 0 and not data:
                r = TransferResult(await self.device.clear_halt(pkt.index & 0xFF))
            else:
                r = await self._call(lambda: self.device.control(setup, data))
            self.stats.transfers += 1
            if setup.is_in:
                out = r.data[:pkt.length] if r.status == Status.SUCCESS else b""
                self.stats.bytes_to_guest += len(out)
                self._reply(pkt, r.status, out)
            else:
                self._reply(pkt, r.status, actual=r.actual or (len(data) if r.status == Status.SUCCESS else 0))
        self._submit(0, pkt, work)

    async def _call(self, op: Callable[[], Awaitable[TransferResult]], ep: int = 0) -> TransferResult:
        """Run one transfer; a NAK means "not yet": wait for data and ask again."""
        while True:
            r = await op()
            if r.status != Status.NAK:
                return r
            await self._wait_data(ep)

    async def _wait_data(self, ep: int) -> None:
        waiter = getattr(self.device, "wait_for_data", None)
        if waiter is not None:
            await waiter(ep)
        else:
            await asyncio.sleep(self._interval_s(ep))

    def _interval_s(self, ep: int) -> float:
        raw = self.ep_info.interval[P.ep2i(ep)] or 1
        if self.device.speed == Speed.HIGH:
            return max(0.000125 * (1 << min(raw - 1, 15)), 0.001)
        return max(raw / 1000.0, 0.001)

    def _on_bulk(self, pkt: P.BulkPacket) -> None:
        if not self.attached:
            self._reply(pkt, Status.IOERROR)
            return
        ep = pkt.endpoint
        if self._ep_type(ep) != EndpointType.BULK or pkt.stream_id:
            self._reply(pkt, Status.INVAL)
            return
        is_in = bool(ep & 0x80)
        data = b"" if is_in else bytes(pkt.data)
        length = pkt.length or 0

        async def work() -> None:
            if is_in:
                r = await self._call(lambda: self.device.bulk(ep, None, length), ep)
                out = r.data
                if len(out) > length:
                    out, r.status = out[:length], Status.BABBLE
                self.stats.bytes_to_guest += len(out)
                self.stats.transfers += 1
                self._reply(pkt, r.status, out)
            else:
                r = await self._call(lambda: self.device.bulk(ep, data), ep)
                self.stats.bytes_from_guest += len(data)
                self.stats.transfers += 1
                self._reply(pkt, r.status, actual=r.actual or (len(data) if r.status == Status.SUCCESS else 0))
            await self.transport.drain()
        self._submit(ep, pkt, work)

    def _on_interrupt(self, pkt: P.InterruptPacket) -> None:
        ep = pkt.endpoint
        if not self.attached or self._ep_type(ep) != EndpointType.INTERRUPT or ep & 0x80:
            self._reply(pkt, Status.INVAL if self.attached else Status.IOERROR)
            return
        data = bytes(pkt.data)

        async def work() -> None:
            r = await self._call(lambda: self.device.interrupt(ep, data), ep)
            self.stats.bytes_from_guest += len(data)
            self._reply(pkt, r.status, actual=r.actual or (len(data) if r.status == Status.SUCCESS else 0))
        self._submit(ep, pkt, work)

    # --- streams -------------------------------------------------------------------------------
    def _start_stream(self, ep: int, loop: Callable[[], Awaitable[None]]) -> None:
        ctl = self._tails.get("ctl")  # let a set_configuration / set_alt_setting in progress finish first

        async def run() -> None:
            if ctl is not None and not ctl.done():
                await asyncio.wait([ctl])
            await loop()

        self._streams[ep] = asyncio.get_running_loop().create_task(run())

    def _on_start_interrupt(self, ev: P.StartInterruptReceiving) -> None:
        ep = ev.endpoint
        if not self.attached or self._ep_type(ep) != EndpointType.INTERRUPT:
            self._send(P.InterruptReceivingStatus(ev.id, Status.STALL, ep))
            return
        if ep in self._streams:
            self._send(P.InterruptReceivingStatus(ev.id, Status.INVAL, ep))
            return
        maxp = self.ep_info.max_packet_size[P.ep2i(ep)] or 64

        replay = self._replay.pop(ep, [])
        recent = self._recent.setdefault(ep, collections.deque(maxlen=16))

        async def stream() -> None:
            counter = 0
            recovered = False
            for data in replay:  # what the guest may have dropped when it stopped receiving
                self._send(P.InterruptPacket(counter, ep, Status.SUCCESS, len(data), data))
                counter += 1
            while True:
                r = await self._call(lambda: self.device.interrupt(ep, None, maxp), ep)
                if r.status == Status.STALL and not recovered:
                    # as usbredirhost: clear the halt and restart silently (once in a row)
                    recovered = await self.device.clear_halt(ep) == Status.SUCCESS
                    if recovered:
                        counter = 0
                        await asyncio.sleep(self._interval_s(ep))
                        continue
                if r.status != Status.SUCCESS:
                    self._send(P.InterruptReceivingStatus(ev.id, int(r.status), ep))
                    self._streams.pop(ep, None)
                    return
                recovered = False
                self.stats.bytes_to_guest += len(r.data)
                recent.append((time.monotonic(), bytes(r.data)))
                self._send(P.InterruptPacket(counter, ep, Status.SUCCESS, len(r.data), r.data))
                counter += 1
                await self.transport.drain()

        self._send(P.InterruptReceivingStatus(ev.id, Status.SUCCESS, ep))
        self._start_stream(ep, stream)

    def _on_stop_interrupt(self, ev: P.StopInterruptReceiving) -> None:
        task = self._streams.pop(ev.endpoint, None)
        if task is not None:
            task.cancel()
        # QEMU (EHCI) stops and restarts receiving when the guest's queue head goes unseen for a
        # moment and frees what it had buffered: keep the reports of the last REPLAY_WINDOW
        # seconds and send them again if receiving restarts (a repeated HID state report is
        # harmless; a lost key release is not).
        # Only the newest report is re-sent: it is the device's current state (a HID driver diffs
        # states, so seeing it twice is harmless), whereas re-sending older ones would replay
        # key presses the guest may already have seen.
        now = time.monotonic()
        recent = self._recent.pop(ev.endpoint, ())
        self._replay[ev.endpoint] = [d for t, d in list(recent)[-1:] if now - t < REPLAY_WINDOW]
        self._send(P.InterruptReceivingStatus(ev.id, Status.SUCCESS, ev.endpoint))

    def _on_start_iso(self, ev: P.StartIsoStream) -> None:
        ep = ev.endpoint
        ok = (self.attached and self._ep_type(ep) == EndpointType.ISO and 1 <= ev.pkts_per_urb <= 32
              and 1 <= ev.no_urbs <= 16 and self.ep_info.max_packet_size[P.ep2i(ep)])
        if not ok:
            self._send(P.IsoStreamStatus(ev.id, Status.STALL, ep))
            return
        if ep in self._streams:
            self._send(P.IsoStreamStatus(ev.id, Status.INVAL, ep))
            return
        maxp = self.ep_info.max_packet_size[P.ep2i(ep)]
        period = self._interval_s(ep)

        async def stream() -> None:  # IN: one iso packet per interval
            counter = 0
            next_t = time.monotonic()
            while True:
                r = await self.device.iso(ep, None, maxp)
                data = r.data if r.status == Status.SUCCESS else b""
                status = Status.SUCCESS if r.status == Status.NAK else r.status
                self._send(P.IsoPacket(counter, ep, int(status), len(data), data))
                self.stats.bytes_to_guest += len(data)
                counter += 1
                next_t += period
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))

        self._send(P.IsoStreamStatus(ev.id, Status.SUCCESS, ep))
        if ep & 0x80:
            self._start_stream(ep, stream)
        else:
            self._streams[ep] = asyncio.get_running_loop().create_future()  # marks OUT stream as started

    def _on_iso(self, pkt: P.IsoPacket) -> None:
        ep = pkt.endpoint
        if ep not in self._streams or ep & 0x80:
            self._send(P.IsoStreamStatus(0, Status.INVAL, ep))
            return
        data = bytes(pkt.data)
        self.stats.bytes_from_guest += len(data)

        async def work() -> None:
            r = await self.device.iso(ep, data)
            if r.status not in (Status.SUCCESS, Status.NAK):
                self._send(P.IsoStreamStatus(0, int(r.status), ep))
        self._submit(ep, pkt, work)

    def _on_stop_iso(self, ev: P.StopIsoStream) -> None:
        task = self._streams.pop(ev.endpoint, None)
        if task is not None:
            task.cancel()
        self._send(P.IsoStreamStatus(ev.id, Status.SUCCESS, ev.endpoint))

    def _on_start_bulk_receiving(self, ev: P.StartBulkReceiving) -> None:
        ep = ev.endpoint
        maxp = self.ep_info.max_packet_size[P.ep2i(ep)]
        ok = (self.attached and self._ep_type(ep) == EndpointType.BULK and maxp
              and ev.bytes_per_transfer % maxp == 0 and 1 <= ev.no_transfers <= 16)
        if not ok:
            self._send(P.BulkReceivingStatus(ev.id, ev.stream_id, ep, Status.STALL))
            return
        if ep in self._streams:
            self._send(P.BulkReceivingStatus(ev.id, ev.stream_id, ep, Status.INVAL))
            return
        size = min(ev.bytes_per_transfer, 1 << 20)

        async def stream() -> None:
            counter = 0
            while True:
                r = await self._call(lambda: self.device.bulk(ep, None, size), ep)
                if r.status != Status.SUCCESS:
                    self._send(P.BulkReceivingStatus(ev.id, ev.stream_id, ep, int(r.status)))
                    self._streams.pop(ep, None)
                    return
                self.stats.bytes_to_guest += len(r.data)
                self._send(P.BufferedBulkPacket(counter, ev.stream_id, len(r.data), ep, Status.SUCCESS, r.data))
                counter += 1
                await self.transport.drain()

        self._send(P.BulkReceivingStatus(ev.id, ev.stream_id, ep, Status.SUCCESS))
        self._start_stream(ep, stream)

    def _on_stop_bulk_receiving(self, ev: P.StopBulkReceiving) -> None:
        task = self._streams.pop(ev.endpoint, None)
        if task is not None:
            task.cancel()
        self._send(P.BulkReceivingStatus(ev.id, ev.stream_id, ev.endpoint, Status.SUCCESS))

    def _on_alloc_streams(self, ev: P.AllocBulkStreams) -> None:
        self._send(P.BulkStreamsStatus(ev.id, ev.endpoints, 0, Status.INVAL))

    def _on_free_streams(self, ev: P.FreeBulkStreams) -> None:
        self._send(P.BulkStreamsStatus(ev.id, ev.endpoints, 0, Status.SUCCESS))

    # --- detach ---------------------------------------------------------------------------------
    def _device_gone(self) -> None:
        """The device vanished (unplug): tell the peer."""
        if self.attached:
            self._cancel_all()
            self._send(P.DeviceDisconnect())
            self.attached = False
            self.on_event("device gone: device_disconnect sent")

    async def detach(self, timeout: float = 2.0, *, close_device: bool = True) -> None:
        """Clean detach: cancel transfers, ``device_disconnect``, wait for the ack, close the device."""
        if self.attached and not self.closed.done():
            self._cancel_all()
            self._ack.clear()
            self._send(P.DeviceDisconnect())
            self.attached = False
            if self.parser.has_cap(P.Cap.DEVICE_DISCONNECT_ACK):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._ack.wait(), timeout)
            with contextlib.suppress(Exception):
                await self.transport.drain()
        self._cancel_all()
        if close_device:
            await self.device.close()
        self._shutdown("detached")

    _handlers: dict[type, Callable] = {
        P.Hello: _on_hello,
        P.Reset: _on_reset,
        P.SetConfiguration: _on_set_config,
        P.GetConfiguration: _on_get_config,
        P.SetAltSetting: _on_set_alt,
        P.GetAltSetting: _on_get_alt,
        P.ControlPacket: _on_control,
        P.BulkPacket: _on_bulk,
        P.InterruptPacket: _on_interrupt,
        P.IsoPacket: _on_iso,
        P.StartInterruptReceiving: _on_start_interrupt,
        P.StopInterruptReceiving: _on_stop_interrupt,
        P.StartIsoStream: _on_start_iso,
        P.StopIsoStream: _on_stop_iso,
        P.StartBulkReceiving: _on_start_bulk_receiving,
        P.StopBulkReceiving: _on_stop_bulk_receiving,
        P.AllocBulkStreams: _on_alloc_streams,
        P.FreeBulkStreams: _on_free_streams,
        P.CancelDataPacket: _on_cancel,
        P.FilterFilter: _on_filter,
        P.FilterReject: _on_filter_reject,
        P.DeviceDisconnectAck: _on_ack,
    }


class StreamTransport:
    """:class:`Transport` over an asyncio ``StreamWriter``."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def write(self, chunks: list) -> None:
        if not self.writer.is_closing():
            self.writer.writelines(chunks)

    async def drain(self) -> None:
        if not self.writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


async def serve_stream(device: UsbDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                       stop: asyncio.Event | None = None,
                       on_event: Callable[[str], None] | None = None,
                       on_host: Callable[[UsbredirHost], None] | None = None,
                       close_device: bool = True) -> str:
    """Export ``device`` over one TCP connection until the peer closes or ``stop`` is set.

    On ``stop`` the device is detached cleanly (device_disconnect, ack, image flushed).
    ``close_device=False`` keeps the device open when the peer goes away (``--listen`` serves
    the next peer with it).  Returns why the session ended.
    """
    host = UsbredirHost(device, StreamTransport(writer), on_event=on_event)
    if on_host is not None:
        on_host(host)

    async def pump() -> None:
        while True:
            await host.room()  # back-pressure: a peer that queues OUT data faster than the device takes it waits
            try:
                chunk = await reader.read(1 << 20)
            except ConnectionError:
                chunk = b""
            if not chunk:
                host.feed_eof()
                return
            host.feed(chunk)
            if host.closed.done():
                return

    pump_task = asyncio.create_task(pump())
    waits: set[asyncio.Future] = {pump_task, host.closed}
    stop_task = asyncio.create_task(stop.wait()) if stop is not None else None
    if stop_task is not None:
        waits.add(stop_task)
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if stop_task is not None and stop_task.done() and not host.closed.done():
            await host.detach(close_device=close_device)
    finally:
        for t in (pump_task, stop_task):
            if t is not None and not t.done():
                t.cancel()
        if not host.closed.done():
            host._shutdown("closed")
        if close_device:
            with contextlib.suppress(Exception):
                await host.device.close()
        writer.close()
    return host.closed.result()
