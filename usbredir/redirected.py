"""The usb-guest side: a remote device (behind a usbredir usb-host) used as a local UsbDevice.

Modelled on QEMU ``hw/usb/redirect.c``.  Two layers:

* :class:`GuestCore` — sans-I/O state machine of one usbredir connection in the usb-guest role
  (on :class:`usbredir.parser.UsbredirParser`).  ``receive_data(bytes)`` / ``receive_eof()``;
  ``events_received()`` -> :class:`Attached`, :class:`Detached`, :class:`Completed`,
  :class:`DataAvailable`, :class:`Closed`; ``data_to_send()`` -> bytes-like list.  Requests
  (``control``, ``bulk``, ``interrupt``, ``iso``) return a request id (the reply arrives later as
  ``Completed(id, TransferResult)``) or an immediate ``TransferResult``; ``cancel(id)`` sends
  ``cancel_data_packet`` and drops the late reply.  SET_CONFIGURATION / GET_CONFIGURATION /
  SET_INTERFACE / GET_INTERFACE become packets 6/7/9/10, SET_ADDRESS is answered locally.
  Interrupt IN and iso IN use start_*_receiving streams into bounded per-endpoint queues (empty
  -> NAK / zero-length), bulk IN endpoints listed in ``buffered_bulk`` use bulk_receiving when the
  host announced it.  The device filter (``rules``, usbredirfilter semantics) is checked on
  ``device_connect`` and on every later ``interface_info``; a rejected device gets
  ``filter_reject``.  Replies for unknown ids, unsolicited stream data and over-long replies are
  dropped (counted in ``stats``); protocol errors close the connection.
* :class:`RedirectedDevice` (a :class:`~usbredir.device.UsbDevice`) and :class:`GuestConnection`
  (asyncio adapter: ``writer`` needs ``writelines(list)``, ``is_closing()``, ``close()`` and
  optionally ``drain()``/``wait_closed()``; input comes from ``reader.read(n)`` via ``run()``, or is
  pushed with ``feed(bytes)``/``feed_eof()`` by transports such as a SPICE usbredir channel
  (``reader=None`` then)).  Each attached device is handed to
  ``on_attach(device)`` and put on ``conn.devices`` (an ``asyncio.Queue``); before that the adapter
  reads the device and configuration descriptors (and the product string) through the link.
  Transfers are coroutines completed by the host's reply; cancelling the awaiting task cancels
  the request on the wire.  ``RedirectedDevice.wait_for_data(ep)`` waits for interrupt/iso/
  buffered-bulk data (for NAK-driven pollers).  A device attached right after a detach on the
  same connection is announced 200 ms later (QEMU does the same so the guest sees both events).
  Unlike QEMU, interrupt OUT transfers complete when the host's reply arrives.

Status mapping (QEMU ``usbredir_handle_status``): success, stall, babble pass through;
cancelled, inval, ioerror, timeout and unknown codes become IOERROR.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import filter as usbfilter
from . import proto as P
from .device import EndpointType, SetupPacket, Speed, Status, TransferResult, UsbDevice
from .parser import ProtocolError, Role, UsbredirParser

__all__ = [
    "GUEST_CAPS", "GuestCore", "Attached", "Detached", "Completed", "DataAvailable", "Closed", "DeviceInfo",
    "RedirectedDevice", "GuestConnection", "map_status",
]

log = logging.getLogger(__name__)

GUEST_CAPS = P.ALL_CAPS & ~P.Cap.BULK_STREAMS
VERSION = "aiospice usb-guest 0.1"
MAX_TRANSFER = 16 << 20          # largest bulk request we issue (and reply we accept)
INTERRUPT_QUEUE = 1000           # packets buffered per interrupt IN endpoint (QEMU's limit)
BUFFERED_BULK_BYTES = 8 << 20    # bytes buffered per buffered-bulk endpoint
CANCELLED_IDS = 4096             # cancelled ids remembered (their late replies are dropped)
REATTACH_DELAY = 0.2             # after a detach, the next device waits this long (QEMU next_attach_time)

_PASS = {Status.SUCCESS, Status.STALL, Status.BABBLE}


def map_status(code: int) -> Status:
    """usbredir status -> what the USB layer sees (QEMU ``usbredir_handle_status``)."""
    return Status(code) if code in _PASS else Status.IOERROR


# ----------------------------------------------------------------------------- events

@dataclass(frozen=True)
class DeviceInfo:
    """What the host announced for the current device."""

    connect: P.DeviceConnect
    interface_info: P.InterfaceInfo
    ep_info: P.EpInfo

    @property
    def speed(self) -> Speed:
        try:
            speed = Speed(self.connect.speed)
        except ValueError:
            return Speed.FULL
        return Speed.FULL if speed == Speed.UNKNOWN else speed

    def ep_type(self, ep: int) -> int:
        return self.ep_info.type[P.ep2i(ep)] if not ep & 0x70 else EndpointType.INVALID


@dataclass(frozen=True)
class Attached:
    info: DeviceInfo


@dataclass(frozen=True)
class Detached:
    reason: str


@dataclass(frozen=True)
class Completed:
    id: int
    result: TransferResult


@dataclass(frozen=True)
class DataAvailable:
    endpoint: int


@dataclass(frozen=True)
class Closed:
    reason: str
    error: ProtocolError | None = None


@dataclass
class Stats:
    requests: int = 0
    replies: int = 0
    dropped_replies: int = 0      # unknown / cancelled ids, wrong type or endpoint
    dropped_stream_packets: int = 0
    rejected: int = 0
    cancels: int = 0              # cancel_data_packet sent


@dataclass
class _Stream:
    """An interrupt-IN / iso / buffered-bulk stream towards us."""

    kind: int                      # EndpointType
    queue: collections.deque = field(default_factory=collections.deque)
    limit: int = INTERRUPT_QUEUE   # packets (interrupt, iso) or bytes (buffered bulk)
    started: bool = False
    error: Status | None = None    # reported by the next poll, then the stream restarts
    nbytes: int = 0                # buffered bulk only
    offset: int = 0                # consumed bytes of queue[0] (buffered bulk)


# ----------------------------------------------------------------------------- sans-I/O core

class GuestCore:
    """The usb-guest side of one usbredir connection (see the module docstring)."""

    def __init__(self, rules: Sequence[usbfilter.FilterRule] | str | None = None, *, caps: int = GUEST_CAPS,
                 version: str = VERSION, buffered_bulk: Sequence[int] = (),
                 max_transfer: int = MAX_TRANSFER) -> None:
        if isinstance(rules, str):
            rules = usbfilter.parse_rules(rules)
        self.rules = list(rules) if rules is not None else None
        self.parser = UsbredirParser(Role.GUEST, caps, version, max_packet_length=max_transfer + 1024)
        self.max_transfer = max_transfer
        self.buffered_bulk = set(buffered_bulk)
        self.stats = Stats()
        self.info: DeviceInfo | None = None      # set while a device is attached
        self.closed = False
        self._iface: P.InterfaceInfo | None = None
        self._ep: P.EpInfo | None = None
        self._pending: dict[int, object] = {}    # id -> request packet
        self._cancelled: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count(1)
        self._events: list = []

    # ------------------------------------------------------------------ plumbing
    def data_to_send(self) -> list:
        return self.parser.data_to_send()

    def bytes_to_send(self) -> bytes:
        return self.parser.bytes_to_send()

    def events_received(self) -> list:
        ev, self._events = self._events, []
        return ev

    @property
    def attached(self) -> bool:
        return self.info is not None

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            return
        self.parser.receive_data(data)
        self._process()

    def receive_eof(self) -> None:
        if self.closed:
            return
        self.parser.receive_eof()
        self._process()
        self._close("connection closed by the usb-host")

    def close(self, reason: str = "closed") -> None:
        self._close(reason)

    def _close(self, reason: str, error: ProtocolError | None = None) -> None:
        if self.closed:
            return
        self._detach(reason)
        self.closed = True
        self.parser.close()
        self._events.append(Closed(reason, error))

    def _send(self, pkt) -> None:
        if not self.parser.closed:
            self.parser.send(pkt)

    def _new_id(self) -> int:
        mask = 0xFFFFFFFFFFFFFFFF if self.parser.ids_64bit else 0xFFFFFFFF
        while True:
            pid = next(self._ids) & mask
            if pid and pid not in self._pending and pid not in self._cancelled:
                return pid

    # ------------------------------------------------------------------ incoming
    def _process(self) -> None:
        for ev in self.parser.events_received():
            if isinstance(ev, ProtocolError):
                self._close(f"usbredir protocol error: {ev}", ev)
                return
            handler = _HANDLERS.get(type(ev))
            if handler is not None:
                handler(self, ev)

    def _on_hello(self, ev: P.Hello) -> None:
        log.debug("usb-host hello %r caps %#x", ev.version, ev.caps)
        if self.rules is not None and self.parser.has_cap(P.Cap.FILTER):
            self._send(P.FilterFilter(rules=usbfilter.format_rules(self.rules)))

    def _on_interface_info(self, ev: P.InterfaceInfo) -> None:
        self._iface = ev
        if self.info is not None:
            self.info = DeviceInfo(self.info.connect, ev, self.info.ep_info)
            why = self._filter_verdict(self.info)
            if why:
                self._reject(why)

    def _on_ep_info(self, ev: P.EpInfo) -> None:
        bad = [i for i, t in enumerate(ev.type) if t not in (0, 1, 2, 3, 255)
               or (t in (EndpointType.ISO, EndpointType.INTERRUPT) and ev.interval[i] == 0)]
        if bad:  # QEMU refuses such a device; so do we (at device_connect, or now if attached)
            self._ep = None
            if self.info is not None:
                self._reject(f"invalid ep_info for endpoint index {bad[0]}")
            return
        self._ep = ev
        if self.info is not None:
            self.info = DeviceInfo(self.info.connect, self.info.interface_info, ev)

    def _filter_verdict(self, info: DeviceInfo) -> str:
        if self.rules is None:
            return ""
        if not self.parser.has_cap(P.Cap.CONNECT_DEVICE_VERSION):
            return "filter needs cap_connect_device_version"
        c, i = info.connect, info.interface_info
        verdict = usbfilter.check(self.rules, c.device_class, c.device_subclass, c.device_protocol,
                                  i.interface_class, i.interface_subclass, i.interface_protocol,
                                  c.vendor_id, c.product_id, c.device_version_bcd)
        return "" if verdict == usbfilter.Verdict.ALLOW else f"device filtered ({verdict.name.lower()})"

    def _on_device_connect(self, ev: P.DeviceConnect) -> None:
        if self.info is not None:
            log.warning("device_connect while a device is attached: ignored")
            return
        if self._iface is None or self._ep is None:
            self._reject("device_connect without (valid) interface_info and ep_info")
            return
        info = DeviceInfo(ev, self._iface, self._ep)
        why = self._filter_verdict(info)
        if why:
            self._reject(why)
            return
        self.info = info
        self._events.append(Attached(info))

    def _reject(self, why: str) -> None:
        log.info("rejecting redirected device: %s", why)
        self.stats.rejected += 1
        if self.parser.has_cap(P.Cap.FILTER) and self.parser.hello_received:
            self._send(P.FilterReject())
        self._detach(why)

    def _on_device_disconnect(self, ev: P.DeviceDisconnect) -> None:
        # the parser has already queued device_disconnect_ack when negotiated
        self._detach("device disconnected by the usb-host")
        self._iface = self._ep = None

    def _detach(self, reason: str) -> None:
        was = self.info is not None
        self.info = None
        for pid in list(self._pending):
            self._complete(pid, TransferResult(Status.IOERROR))
        self._streams.clear()
        if was:
            self._events.append(Detached(reason))

    def _take(self, pid: int, kinds: tuple, endpoint: int | None = None):
        """The pending request a reply answers, or None (reply dropped)."""
        if pid in self._cancelled:
            del self._cancelled[pid]
            self.stats.dropped_replies += 1
            return None
        req = self._pending.get(pid)
        if req is None or not isinstance(req, kinds) or (endpoint is not None and req.endpoint != endpoint):
            log.debug("dropping reply for unknown id %d", pid)
            self.stats.dropped_replies += 1
            return None
        del self._pending[pid]
        self.stats.replies += 1
        return req

    def _complete(self, pid: int, result: TransferResult) -> None:
        self._pending.pop(pid, None)
        self._events.append(Completed(pid, result))

    def _on_configuration_status(self, ev: P.ConfigurationStatus) -> None:
        req = self._take(ev.id, (P.SetConfiguration, P.GetConfiguration))
        if req is None:
            return
        status = map_status(ev.status)
        data = bytes([ev.configuration]) if isinstance(req, P.GetConfiguration) and status == Status.SUCCESS else b""
        self._events.append(Completed(ev.id, TransferResult(status, data)))

    def _on_alt_setting_status(self, ev: P.AltSettingStatus) -> None:
        req = self._take(ev.id, (P.SetAltSetting, P.GetAltSetting))
        if req is None:
            return
        status = map_status(ev.status)
        data = bytes([ev.alt]) if isinstance(req, P.GetAltSetting) and status == Status.SUCCESS else b""
        self._events.append(Completed(ev.id, TransferResult(status, data)))

    def _on_data_reply(self, ev) -> None:
        req = self._take(ev.id, (type(ev),), ev.endpoint)
        if req is None:
            return
        status = map_status(ev.status)
        if ev.endpoint & 0x80:
            data = ev.data
            if len(data) > req.length:
                data, status = data[:req.length], Status.BABBLE
            result = TransferResult(status, data, len(data))
        else:
            result = TransferResult(status, b"", min(ev.length or 0, len(req.data)))
        self._events.append(Completed(ev.id, result))

    def _stream(self, ep: int, kind: int) -> _Stream | None:
        s = self._streams.get(ep)
        if s is None or s.kind != kind or not s.started:
            self.stats.dropped_stream_packets += 1
            return None
        return s

    def _on_interrupt_packet(self, ev: P.InterruptPacket) -> None:
        if not ev.endpoint & 0x80:
            self._on_data_reply(ev)  # reply to an interrupt OUT request
            return
        s = self._stream(ev.endpoint, EndpointType.INTERRUPT)
        if s is None:
            return
        if len(s.queue) >= s.limit:
            s.queue.popleft()
            self.stats.dropped_stream_packets += 1
        s.queue.append((map_status(ev.status), bytes(ev.data)))
        self._events.append(DataAvailable(ev.endpoint))

    def _on_iso_packet(self, ev: P.IsoPacket) -> None:
        s = self._stream(ev.endpoint, EndpointType.ISO)
        if s is None:
            return
        if len(s.queue) >= 2 * s.limit:  # QEMU: drop back to the target size
            while len(s.queue) > s.limit:
                s.queue.popleft()
                self.stats.dropped_stream_packets += 1
        s.queue.append((map_status(ev.status), bytes(ev.data)))
        self._events.append(DataAvailable(ev.endpoint))

    def _on_buffered_bulk(self, ev: P.BufferedBulkPacket) -> None:
        s = self._stream(ev.endpoint, EndpointType.BULK)
        if s is None:
            return
        if s.nbytes + len(ev.data) > s.limit:
            self.stats.dropped_stream_packets += 1
            return
        status = map_status(ev.status)
        if status != Status.SUCCESS and not ev.data:
            s.error = status
        else:
            s.queue.append(bytes(ev.data))
            s.nbytes += len(ev.data)
        self._events.append(DataAvailable(ev.endpoint))

    def _on_stream_status(self, ev) -> None:
        kind = {P.InterruptReceivingStatus: EndpointType.INTERRUPT, P.IsoStreamStatus: EndpointType.ISO,
                P.BulkReceivingStatus: EndpointType.BULK}[type(ev)]
        s = self._streams.get(ev.endpoint)
        if s is None or s.kind != kind:
            return
        if ev.status != Status.SUCCESS:
            s.error = map_status(ev.status)
            s.started = False
            self._events.append(DataAvailable(ev.endpoint))

    def _on_bulk_streams_status(self, ev: P.BulkStreamsStatus) -> None:
        if ev.status != Status.SUCCESS:
            self._reject("bulk streams allocation failed")

    # ------------------------------------------------------------------ requests
    def _check_attached(self) -> TransferResult | None:
        if self.closed or self.info is None:
            return TransferResult(Status.IOERROR)
        return None

    def _issue(self, pkt) -> int:
        self._pending[pkt.id] = pkt
        self.stats.requests += 1
        self._send(pkt)
        return pkt.id

    def control(self, setup: SetupPacket, data: bytes | memoryview = b"") -> int | TransferResult:
        """A control transfer: its request id, or the result when it completes locally."""
        if (r := self._check_attached()) is not None:
            return r
        rt, req = setup.request_type, setup.request
        if rt == 0x00 and req == 5:  # SET_ADDRESS: the address is ours, nothing on the wire
            return TransferResult(Status.SUCCESS)
        if rt == 0x00 and req == 9:
            self._stop_streams(None)
            return self._issue(P.SetConfiguration(self._new_id(), setup.value & 0xFF))
        if rt == 0x80 and req == 8:
            return self._issue(P.GetConfiguration(self._new_id()))
        if rt == 0x01 and req == 11:
            self._stop_streams(setup.index & 0xFF)
            return self._issue(P.SetAltSetting(self._new_id(), setup.index & 0xFF, setup.value & 0xFF))
        if rt == 0x81 and req == 10:
            return self._issue(P.GetAltSetting(self._new_id(), setup.index & 0xFF))
        if setup.is_in:
            pkt = P.ControlPacket(self._new_id(), 0x80, req, rt, 0, setup.value, setup.index, setup.length)
        else:
            data = bytes(data[:setup.length])
            pkt = P.ControlPacket(self._new_id(), 0x00, req, rt, 0, setup.value, setup.index, len(data), data)
        return self._issue(pkt)

    def bulk(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> int | TransferResult:
        if (r := self._check_attached()) is not None:
            return r
        if self.info.ep_type(endpoint) != EndpointType.BULK:
            return TransferResult(Status.STALL)
        if endpoint & 0x80:
            if endpoint in self.buffered_bulk and self.parser.has_cap(P.Cap.BULK_RECEIVING):
                return self._buffered_bulk_in(endpoint, length)
            size = length
        else:
            data = bytes(data or b"")
            size = len(data)
        limit = self.max_transfer if self.parser.has_cap(P.Cap.BULK_LENGTH_32BIT) else 0xFFFF
        if size > limit:
            return TransferResult(Status.STALL)
        if endpoint & 0x80:
            return self._issue(P.BulkPacket(self._new_id(), endpoint, 0, size, 0, b""))
        return self._issue(P.BulkPacket(self._new_id(), endpoint, 0, size, 0, data))

    def interrupt(self, endpoint: int, data: bytes | memoryview | None = None,
                  length: int = 0) -> int | TransferResult:
        """Interrupt OUT: request id.  Interrupt IN: an immediate result (data, NAK or error)."""
        if (r := self._check_attached()) is not None:
            return r
        if self.info.ep_type(endpoint) != EndpointType.INTERRUPT:
            return TransferResult(Status.STALL)
        if not endpoint & 0x80:
            data = bytes(data or b"")
            return self._issue(P.InterruptPacket(self._new_id(), endpoint, 0, len(data), data))
        s = self._streams.setdefault(endpoint, _Stream(EndpointType.INTERRUPT))
        if s.error is not None:  # report a stopped stream once; the next poll restarts it
            err, s.error = s.error, None
            return TransferResult(err)
        if not s.started:
            s.started = True
            self._send(P.StartInterruptReceiving(0, endpoint))
            return TransferResult(Status.NAK)
        if not s.queue:
            return TransferResult(Status.NAK)
        status, payload = s.queue.popleft()
        if len(payload) > length:
            return TransferResult(Status.BABBLE, payload[:length], length)
        return TransferResult(status, payload, len(payload))

    def iso(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        """One isochronous packet (always immediate; IN underrun -> zero-length success)."""
        if (r := self._check_attached()) is not None:
            return r
        if self.info.ep_type(endpoint) != EndpointType.ISO:
            return TransferResult(Status.STALL)
        s = self._streams.get(endpoint)
        if s is None or (not s.started and s.error is None):
            s = self._streams[endpoint] = _Stream(EndpointType.ISO, started=True)
            per_urb, urbs, target = self._iso_params(endpoint)
            s.limit = target
            self._send(P.StartIsoStream(0, endpoint, per_urb, urbs))
        if s.error is not None:
            err, s.error = s.error, None
            del self._streams[endpoint]
            return TransferResult(err)
        if not endpoint & 0x80:
            payload = bytes(data or b"")
            self._send(P.IsoPacket(0, endpoint, 0, len(payload), payload))
            return TransferResult(Status.SUCCESS, b"", len(payload))
        if not s.queue:
            return TransferResult(Status.SUCCESS, b"", 0)
        status, payload = s.queue.popleft()
        return TransferResult(status, payload[:length], min(len(payload), length))

    def _iso_params(self, endpoint: int) -> tuple[int, int, int]:
        interval = self.info.ep_info.interval[P.ep2i(endpoint)] or 1
        per_sec = (8000 if self.info.speed == Speed.HIGH else 1000) // interval or 1
        target = max(1, per_sec * 60 // 1000)
        per_urb = min(max(per_sec // 100, 1), 32)
        urbs = math.ceil(target / per_urb) * (1 if endpoint & 0x80 else 2)
        return per_urb, min(urbs, 16), target

    def _buffered_bulk_in(self, endpoint: int, length: int) -> TransferResult:
        s = self._streams.get(endpoint)
        if s is None or (not s.started and s.error is None):
            maxp = self.info.ep_info.max_packet_size[P.ep2i(endpoint)] or 512
            s = self._streams[endpoint] = _Stream(EndpointType.BULK, started=True, limit=BUFFERED_BULK_BYTES)
            self._send(P.StartBulkReceiving(0, 0, max(maxp, 512 // maxp * maxp), endpoint, 5))
            return TransferResult(Status.NAK)
        if s.error is not None and not s.queue:
            err, s.error = s.error, None
            del self._streams[endpoint]
            return TransferResult(err)
        out = bytearray()
        while s.queue and len(out) < length:
            chunk = s.queue[0]
            take = chunk[s.offset:s.offset + length - len(out)]
            out += take
            s.offset += len(take)
            if s.offset >= len(chunk):
                s.queue.popleft()
                s.offset = 0
        s.nbytes -= len(out)
        if not out:
            return TransferResult(Status.NAK)
        return TransferResult(Status.SUCCESS, bytes(out), len(out))

    def _stop_streams(self, interface: int | None) -> None:
        """Stop streams before set_configuration (all) / set_interface (that interface's endpoints)."""
        if self.info is None:
            return
        for ep, s in list(self._streams.items()):
            i = P.ep2i(ep)
            if interface is not None and self.info.ep_info.interface[i] != interface:
                continue
            if s.started:
                if s.kind == EndpointType.INTERRUPT:
                    self._send(P.StopInterruptReceiving(0, ep))
                elif s.kind == EndpointType.ISO:
                    self._send(P.StopIsoStream(0, ep))
                else:
                    self._send(P.StopBulkReceiving(0, 0, ep))
            del self._streams[ep]

    def cancel(self, pid: int) -> None:
        """Cancel a pending request: cancel_data_packet; its reply (whatever it says) is dropped."""
        req = self._pending.pop(pid, None)
        if req is None:
            return
        if isinstance(req, (P.ControlPacket, P.BulkPacket, P.InterruptPacket)):
            self._cancelled[pid] = None
            while len(self._cancelled) > CANCELLED_IDS:
                self._cancelled.popitem(last=False)
            self._send(P.CancelDataPacket(pid))
            self.stats.cancels += 1
        else:  # config/alt requests can't be cancelled on the wire: just ignore their reply
            self._cancelled[pid] = None

    def reset(self) -> None:
        if self.info is not None and not self.closed:
            self._send(P.Reset())

    def has_data(self, endpoint: int) -> bool:
        s = self._streams.get(endpoint)
        return s is not None and (bool(s.queue) or s.error is not None)


_HANDLERS: dict[type, Callable] = {
    P.Hello: GuestCore._on_hello,
    P.InterfaceInfo: GuestCore._on_interface_info,
    P.EpInfo: GuestCore._on_ep_info,
    P.DeviceConnect: GuestCore._on_device_connect,
    P.DeviceDisconnect: GuestCore._on_device_disconnect,
    P.ConfigurationStatus: GuestCore._on_configuration_status,
    P.AltSettingStatus: GuestCore._on_alt_setting_status,
    P.ControlPacket: GuestCore._on_data_reply,
    P.BulkPacket: GuestCore._on_data_reply,
    P.InterruptPacket: GuestCore._on_interrupt_packet,
    P.IsoPacket: GuestCore._on_iso_packet,
    P.BufferedBulkPacket: GuestCore._on_buffered_bulk,
    P.InterruptReceivingStatus: GuestCore._on_stream_status,
    P.IsoStreamStatus: GuestCore._on_stream_status,
    P.BulkReceivingStatus: GuestCore._on_stream_status,
    P.BulkStreamsStatus: GuestCore._on_bulk_streams_status,
}


# ----------------------------------------------------------------------------- asyncio adapter

class RedirectedDevice(UsbDevice):
    """A device on the far side of a usbredir connection (valid until it detaches)."""

    def __init__(self, conn: GuestConnection, info: DeviceInfo) -> None:
        self.conn = conn
        self.info = info
        self.detached = False
        self._device_descriptor = b""
        self._configs: list[bytes] = []
        self._product = ""

    # --- identity ---
    @property
    def speed(self) -> Speed:
        return self.info.speed

    @property
    def device_descriptor(self) -> bytes:
        return self._device_descriptor

    @property
    def config_descriptors(self) -> list[bytes]:
        return self._configs

    @property
    def product(self) -> str:
        return self._product

    @property
    def vendor_id(self) -> int:
        return self.info.connect.vendor_id

    @property
    def product_id(self) -> int:
        return self.info.connect.product_id

    async def _read_identity(self) -> None:
        """GET_DESCRIPTOR device, each configuration and the product string through the link."""
        r = await self.control(SetupPacket(0x80, 6, 0x0100, 0, 18))
        if r.status != Status.SUCCESS or len(r.data) < 18:
            raise ConnectionError(f"cannot read the device descriptor ({r.status.name})")
        self._device_descriptor = bytes(r.data)
        for index in range(min(self._device_descriptor[17], 8)):
            head = await self.control(SetupPacket(0x80, 6, 0x0200 | index, 0, 9))
            if head.status != Status.SUCCESS or len(head.data) < 4:
                break
            total = int.from_bytes(bytes(head.data[2:4]), "little")
            full = await self.control(SetupPacket(0x80, 6, 0x0200 | index, 0, total))
            if full.status == Status.SUCCESS:
                self._configs.append(bytes(full.data))
        iproduct = self._device_descriptor[15]
        if iproduct:
            s = await self.control(SetupPacket(0x80, 6, 0x0300 | iproduct, 0x0409, 255))
            if s.status == Status.SUCCESS and len(s.data) > 2:
                self._product = bytes(s.data[2:s.data[0]]).decode("utf-16-le", "replace")

    # --- transfers ---
    async def _wait(self, r: int | TransferResult) -> TransferResult:
        if isinstance(r, TransferResult):
            return r
        return await self.conn._wait_reply(r)

    async def control(self, setup: SetupPacket, data: bytes = b"") -> TransferResult:
        if self.detached:
            return TransferResult(Status.IOERROR)
        return await self._wait(self.conn._call(lambda core: core.control(setup, data)))

    async def bulk(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        if self.detached:
            return TransferResult(Status.IOERROR)
        return await self._wait(self.conn._call(lambda core: core.bulk(endpoint, data, length)))

    async def interrupt(self, endpoint: int, data: bytes | memoryview | None = None,
                        length: int = 0) -> TransferResult:
        if self.detached:
            return TransferResult(Status.IOERROR)
        return await self._wait(self.conn._call(lambda core: core.interrupt(endpoint, data, length)))

    async def iso(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        if self.detached:
            return TransferResult(Status.IOERROR)
        return self.conn._call(lambda core: core.iso(endpoint, data, length))

    async def wait_for_data(self, endpoint: int) -> None:
        """Return when an interrupt/iso/buffered-bulk IN endpoint has data (or an error) to report."""
        await self.conn._wait_data(endpoint)

    async def reset(self) -> None:
        if not self.detached:
            self.conn._call(lambda core: core.reset())

    async def close(self) -> None:
        """Release the device: closes the usbredir connection."""
        await self.conn.close()


class GuestConnection:
    """asyncio adapter: one usbredir connection (usb-guest role) over ``reader``/``writer``."""

    def __init__(self, reader, writer, *, rules: Sequence[usbfilter.FilterRule] | str | None = None,
                 on_attach: Callable[[RedirectedDevice], None] | None = None,
                 on_detach: Callable[[RedirectedDevice], None] | None = None,
                 read_size: int = 1 << 18, **core_kw) -> None:
        self.reader = reader
        self.writer = writer
        self.core = GuestCore(rules, **core_kw)
        self.on_attach = on_attach
        self.on_detach = on_detach
        self.read_size = read_size
        self.device: RedirectedDevice | None = None
        self.devices: asyncio.Queue[RedirectedDevice] = asyncio.Queue()
        self.closed = asyncio.get_running_loop().create_future()
        self._replies: dict[int, asyncio.Future] = {}
        self._data_waiters: dict[int, asyncio.Event] = collections.defaultdict(asyncio.Event)
        self._tasks: set[asyncio.Task] = set()
        self._last_detach = -1e9
        self._flush()  # our hello

    # --- plumbing ---
    def _flush(self) -> None:
        out = self.core.data_to_send()
        if out and not self.writer.is_closing():
            self.writer.writelines(out)

    def _call(self, op: Callable[[GuestCore], object]):
        r = op(self.core)
        self._flush()
        self._dispatch()
        return r

    async def _wait_reply(self, pid: int) -> TransferResult:
        fut = self._replies.get(pid)
        if fut is None:
            fut = self._replies[pid] = asyncio.get_running_loop().create_future()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.cancelled() or not fut.done():  # no reply yet: cancel on the wire
                self._replies.pop(pid, None)
                self.core.cancel(pid)
                self._flush()
            raise

    async def _wait_data(self, endpoint: int) -> None:
        while not self.core.has_data(endpoint) and not self.closed.done() and self.device is not None:
            ev = self._data_waiters[endpoint]
            ev.clear()
            await ev.wait()

    def _dispatch(self) -> None:
        for ev in self.core.events_received():
            if isinstance(ev, Completed):
                fut = self._replies.pop(ev.id, None)
                if fut is None:
                    fut = asyncio.get_running_loop().create_future()
                    self._replies[ev.id] = fut  # completed before anyone awaited it
                if not fut.done():
                    fut.set_result(ev.result)
            elif isinstance(ev, DataAvailable):
                self._data_waiters[ev.endpoint].set()
            elif isinstance(ev, Attached):
                dev = RedirectedDevice(self, ev.info)
                self.device = dev
                task = asyncio.get_running_loop().create_task(self._announce(dev))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif isinstance(ev, Detached):
                self._device_gone(ev.reason)
            elif isinstance(ev, Closed):
                self._device_gone(ev.reason)
                if not self.closed.done():
                    self.closed.set_result(ev.reason)
        for w in self._data_waiters.values():
            if self.device is None or self.closed.done():
                w.set()

    async def _announce(self, dev: RedirectedDevice) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_detach + REATTACH_DELAY - loop.time()
        if wait > 0:  # let the guest see the detach before the next attach
            await asyncio.sleep(wait)
        try:
            await dev._read_identity()
        except (ConnectionError, OSError) as exc:
            log.warning("redirected device: %s", exc)
            return
        if dev.detached:
            return
        self.devices.put_nowait(dev)
        if self.on_attach is not None:
            self.on_attach(dev)

    def _device_gone(self, reason: str) -> None:
        dev, self.device = self.device, None
        for w in self._data_waiters.values():
            w.set()
        if dev is None:
            return
        dev.detached = True
        self._last_detach = asyncio.get_running_loop().time()
        log.info("redirected device gone: %s", reason)
        if dev.on_disconnect is not None:
            dev.on_disconnect()
        if self.on_detach is not None:
            self.on_detach(dev)

    # --- running ---
    def feed(self, data: bytes) -> None:
        """Bytes from the usb-host (for transports that push data, e.g. a SPICE usbredir channel)."""
        self.core.receive_data(data)
        self._flush()
        self._dispatch()

    def feed_eof(self) -> None:
        self.core.receive_eof()
        self._flush()
        self._dispatch()

    async def run(self) -> str:
        """Pump ``reader`` until the peer closes or breaks the protocol; returns why it ended."""
        try:
            while not self.closed.done():
                try:
                    chunk = await self.reader.read(self.read_size)
                except (ConnectionError, OSError):
                    chunk = b""
                if chunk:
                    self.feed(chunk)
                else:
                    self.feed_eof()
                drain = getattr(self.writer, "drain", None)
                if drain is not None and not self.writer.is_closing():
                    with contextlib.suppress(ConnectionError, OSError):
                        await drain()
        finally:
            await self.close()
        return self.closed.result()

    async def close(self) -> None:
        self.core.close()
        self._dispatch()
        for fut in self._replies.values():
            if not fut.done():
                fut.set_result(TransferResult(Status.IOERROR))
        for task in list(self._tasks):
            task.cancel()
        if not self.writer.is_closing():
            self.writer.close()
        wait_closed = getattr(self.writer, "wait_closed", None)
        if wait_closed is None:
            return
        try:  # a peer that stopped reading must not keep us waiting for the flush
            await asyncio.wait_for(wait_closed(), 2)
        except OSError:  # TimeoutError and ConnectionError included
            transport = getattr(self.writer, "transport", None)
            if transport is not None:
                transport.abort()
