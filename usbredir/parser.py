"""Sans-I/O usbredir parser for both roles (websockets style).

API::

    p = UsbredirParser(Role.GUEST)          # or Role.HOST; queues our hello at once
    p.receive_data(chunk)                   # bytes from the peer (any split)
    for ev in p.events_received():          # packet objects from usbredir.proto ...
        if isinstance(ev, ProtocolError):   # ... or one ProtocolError, after which p.closed
            ...
    p.send(BulkPacket(id=7, endpoint=0x81, length=512))   # queue a packet
    writer.writelines(p.data_to_send())     # list of bytes-like objects (or p.bytes_to_send())
    p.receive_eof()                         # peer closed; a half packet -> ProtocolError

* ``UsbredirParser(role, caps=ALL_CAPS, version=..., *, max_packet_length=MAX_PACKET_SIZE,
  auto_disconnect_ack=True)``; ``HostParser(...)``/``GuestParser(...)`` are shorthands.  A guest
  always announces cap_device_disconnect_ack (as libusbredirparser does); cap_bulk_streams is
  dropped without cap_ep_info_max_packet_size, for ours and the peer's caps.
* Both sides send hello first; ``send()`` before the peer's hello has arrived raises
  :class:`InvalidState` (the header width and layouts depend on both hellos), as does sending a
  packet type our role may not send.  ``p.hello_received``, ``p.our_caps``, ``p.peer_caps``,
  ``p.peer_version``, ``p.negotiated``, ``p.has_cap(Cap.X)`` (both sides), ``p.peer_has_cap``,
  ``p.ids_64bit`` describe the negotiation; ``p.closed``, ``p.error``, ``p.eof`` the state.
  The ``Hello`` event carries the peer's raw first caps word (extra words are ignored, a
  missing word means no caps).
* Received packets are checked like libusbredirparser 0.13 does (type allowed for our role,
  fixed type-header length for the negotiated caps, data direction/length of data packets,
  caps of filter/ack/bulk-receiving packets, interface_count, IN endpoints) plus strict rules:
  hello exactly once and first, hello caps area a multiple of 4, ``header.length`` at most
  ``max_packet_length``.  Any violation yields a :class:`ProtocolError` event and closes the
  parser: later input is ignored, ``send()`` raises :class:`InvalidState`.  A filter_filter whose
  rules do not parse is dropped (no event), as in C.
* A guest parser answers device_disconnect with device_disconnect_ack itself when the peer has
  the cap (libusbredirparser does the same); the DeviceDisconnect event is still delivered.
* Payloads (``pkt.data``) are zero-copy ``memoryview`` slices of the chunk given to
  ``receive_data`` (so pass immutable ``bytes``, or never modify a buffer still referenced by
  packets); a packet split across chunks is assembled once, its header parsed only once; the
  assembly buffer is reused for a later packet only when no delivered packet references it any
  more (a bytearray with live exports can't be resized), so packets stay valid as long as held.  Packets given to ``send()`` are not copied either: their ``data`` objects are
  returned by ``data_to_send()``.
* Invalid packets given to ``send()`` raise ``ValueError`` (nothing is queued).
"""

from __future__ import annotations

import enum
import functools
import logging
import struct
from collections.abc import Callable

from . import filter as usbfilter
from .proto import (
    ALL_CAPS,
    BOTH_WAYS,
    EXTRA_DATA_TYPES,
    GUEST_TO_HOST,
    HOST_TO_GUEST,
    MAX_BULK_TRANSFER_SIZE,
    MAX_PACKET_SIZE,
    PACKET_CLASSES,
    STRUCT_FORMATS,
    BufferedBulkPacket,
    BulkPacket,
    Cap,
    ControlPacket,
    DeviceDisconnectAck,
    Hello,
    InterruptPacket,
    IsoPacket,
    Packet,
    PacketType,
    type_header,
    verify_caps,
)

__all__ = ["Role", "ProtocolError", "InvalidState", "UsbredirParser", "HostParser", "GuestParser"]

log = logging.getLogger(__name__)
_new = tuple.__new__
_T = PacketType
_ASSEMBLE_PREALLOC = 1 << 20
_MAX_BULK = MAX_BULK_TRANSFER_SIZE  # packets up to this size get their whole buffer at once
# control packets that need a negotiated cap, and those that only make sense on an IN endpoint
_NEED_CAP = {
    _T.FILTER_REJECT: Cap.FILTER, _T.FILTER_FILTER: Cap.FILTER,
    _T.DEVICE_DISCONNECT_ACK: Cap.DEVICE_DISCONNECT_ACK,
    _T.START_BULK_RECEIVING: Cap.BULK_RECEIVING, _T.STOP_BULK_RECEIVING: Cap.BULK_RECEIVING,
    _T.BULK_RECEIVING_STATUS: Cap.BULK_RECEIVING,
}
_IN_ONLY = frozenset((
    _T.START_INTERRUPT_RECEIVING, _T.STOP_INTERRUPT_RECEIVING, _T.INTERRUPT_RECEIVING_STATUS,
    _T.START_BULK_RECEIVING, _T.STOP_BULK_RECEIVING, _T.BULK_RECEIVING_STATUS,
))


@functools.cache
def _compiled(ptype: int, negotiated: int):
    return type_header(ptype, negotiated).compile()


class Role(enum.Enum):
    HOST = "usb-host"
    GUEST = "usb-guest"


class ProtocolError(Exception):
    """The peer broke the protocol.  Delivered as an event; the parser is closed after it."""


class InvalidState(Exception):
    """Local misuse: sending before the peer's hello, after close, or a packet our role can't send."""


_Decoder = Callable[[int, memoryview, int, int], object]


class UsbredirParser:
    """One usbredir connection endpoint (see the module docstring)."""

    def __init__(
        self,
        role: Role,
        caps: int = ALL_CAPS,
        version: str = "aiospice usbredir",
        *,
        max_packet_length: int = MAX_PACKET_SIZE,
        auto_disconnect_ack: bool = True,
    ) -> None:
        self.role = role
        caps = int(caps) & 0xFFFFFFFF
        if role is Role.GUEST:
            caps |= Cap.DEVICE_DISCONNECT_ACK
        self.our_caps: Cap = verify_caps(caps)
        self.version = version
        self.peer_caps: Cap | None = None
        self.peer_version: str | None = None
        self.negotiated: Cap = Cap(0)
        self.max_packet_length = min(int(max_packet_length), MAX_PACKET_SIZE)
        self.auto_disconnect_ack = auto_disconnect_ack
        self.error: ProtocolError | None = None
        self.closed = False
        self.eof = False
        self._events: list = []
        self._out: list = []
        self._rx_types = (HOST_TO_GUEST if role is Role.GUEST else GUEST_TO_HOST) | BOTH_WAYS
        self._tx_types = (GUEST_TO_HOST if role is Role.GUEST else HOST_TO_GUEST) | BOTH_WAYS
        # data-packet direction: the data flows towards the guest for IN endpoints
        self._rx_data_flag = 0x80 if role is Role.GUEST else 0
        self._tx_data_flag = 0x80 - self._rx_data_flag
        self._hdr = struct.Struct(STRUCT_FORMATS["header32"])
        self._table: dict[int, tuple[int, bool, _Decoder]] = {_T.HELLO: (64, True, self._dec_hello)}
        self._encoders: dict[int, Callable] = {}
        self._bulk_fast: tuple | None = None
        # receive state: partial common header, or a packet whose header is known
        self._head = bytearray()
        self._cur: tuple[int, int, int, _Decoder] | None = None  # (type, length, id, decoder)
        self._body: bytearray | None = None
        self._spare: bytearray | None = None  # last assembly buffer, reused once no packet uses it
        self._filled = 0
        self._queue_hello()

    # ----------------------------------------------------------------- public state
    @property
    def hello_received(self) -> bool:
        return self.peer_caps is not None

    @property
    def ids_64bit(self) -> bool:
        return bool(self.negotiated & Cap.IDS_64BIT)

    def has_cap(self, cap: Cap) -> bool:
        """True if both sides announced ``cap`` (False before the peer's hello)."""
        return bool(self.negotiated & cap)

    def peer_has_cap(self, cap: Cap) -> bool:
        return bool(self.peer_caps is not None and self.peer_caps & cap)

    # ----------------------------------------------------------------- output
    def data_to_send(self) -> list:
        """Queued output as a list of bytes-like objects (for ``writer.writelines``)."""
        out = self._out[:]
        self._out.clear()  # encoders hold a reference to this list
        return out

    def bytes_to_send(self) -> bytes:
        return b"".join(self.data_to_send())

    def events_received(self) -> list:
        ev, self._events = self._events, []
        return ev

    def close(self) -> None:
        """Local close: ignore further input, refuse further sends."""
        self.closed = True
        self._body = None
        self._head.clear()

    # ----------------------------------------------------------------- input
    def receive_eof(self) -> None:
        if self.closed:
            return
        self.eof = True
        if self._cur is not None or self._head:
            self._fail(ProtocolError("connection closed in the middle of a packet"))
        self.closed = True

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer; complete packets become events."""
        if self.closed:
            return
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        end = len(view)
        pos = 0
        try:
            if self._cur is not None:
                pos = self._fill(view, 0, end)
                if self._cur is not None:
                    return
            elif self._head:
                hs = self._hdr.size
                pos = min(hs - len(self._head), end)
                self._head += view[:pos]
                if len(self._head) < hs:
                    return
                ptype, length, pid = self._hdr.unpack(self._head)
                self._head.clear()
                dec = self._check_header(ptype, length)
                if end - pos >= length:
                    self._deliver(dec(pid, view, pos, pos + length))
                    pos += length
                else:
                    self._start_assembly(ptype, length, pid, dec)
                    pos = self._fill(view, pos, end)
                    return
            self._parse(view, pos, end)
        except ProtocolError as exc:
            self._fail(exc)

    def _parse(self, view: memoryview, pos: int, end: int) -> None:
        """The hot loop: whole packets inside ``view`` are decoded without copies."""
        hdr = self._hdr
        unpack = hdr.unpack_from
        hs = hdr.size
        table = self._table
        append = self._events.append
        maxlen = self.max_packet_length
        bulk = self._bulk_fast  # (header+bulk unpack_from, its size, data flag) once negotiated
        if bulk is not None:
            bunpack, bsize, bflag = bulk
        else:
            bunpack, bsize, bflag = None, 1 << 62, 0
        new, cls, max_bulk = _new, BulkPacket, _MAX_BULK
        while True:
            avail = end - pos
            if avail >= bsize:
                # inlined bulk_packet (the hot packet of mass storage): header and bulk header in one go
                ptype, length, pid, ep, status, blen, sid, high = bunpack(view, pos)
                if ptype == 101:
                    stop = pos + hs + length
                    if stop <= end and length <= maxlen:
                        blen |= high << 16
                        start = pos + bsize
                        if (ep & 0x80) == bflag:
                            if stop - start == blen and blen <= max_bulk:
                                append(new(cls, (pid, ep, status, blen, sid, view[start:stop])))
                                pos = stop
                                continue
                        elif stop == start and blen <= max_bulk:
                            append(new(cls, (pid, ep, status, blen, sid, b"")))
                            pos = stop
                            continue
                    # anything unusual: the general path below handles or reports it
            elif avail >= hs:
                ptype, length, pid = unpack(view, pos)
            else:
                break
            entry = table.get(ptype)
            if entry is None or length > maxlen:
                self._check_header(ptype, length)  # raises the precise error
            thl, extra, dec = entry
            if length != thl and (length < thl or not extra):
                self._check_header(ptype, length)
            start = pos + hs
            stop = start + length
            if stop > end:
                self._start_assembly(ptype, length, pid, dec)
                self._fill(view, start, end)
                return
            pkt = dec(pid, view, start, stop)
            if pkt is not None:
                append(pkt)
            pos = stop
            if ptype == 0:  # header width and layouts change after the peer's hello
                hdr = self._hdr
                unpack = hdr.unpack_from
                hs = hdr.size
                table = self._table
                if self._bulk_fast is not None:
                    bunpack, bsize, bflag = self._bulk_fast
        if pos < end:
            self._head += view[pos:end]

    def _check_header(self, ptype: int, length: int) -> _Decoder:
        entry = self._table.get(ptype)
        if entry is None:
            try:
                name = PacketType(ptype).name.lower()
            except ValueError:
                raise ProtocolError(f"unknown packet type {ptype}") from None
            if ptype not in self._rx_types:
                raise ProtocolError(f"{name} may not be sent to a {self.role.value}")
            if ptype == _T.HELLO:
                raise ProtocolError("second hello")
            raise ProtocolError(f"{name} before hello")
        if length > self.max_packet_length:
            raise ProtocolError(f"packet length {length} exceeds the maximum {self.max_packet_length}")
        thl, extra, dec = entry
        if length < thl or (length > thl and not extra):
            raise ProtocolError(f"invalid length {length} for {PacketType(ptype).name.lower()} (header {thl})")
        return dec

    def _start_assembly(self, ptype: int, length: int, pid: int, dec: _Decoder) -> None:
        self._cur = (ptype, length, pid, dec)
        self._filled = 0
        if length > _ASSEMBLE_PREALLOC:  # grows with the bytes that really arrive
            self._body = bytearray()
            return
        buf = self._spare
        if buf is not None:
            try:
                buf.append(0)  # BufferError while delivered packets still reference it
            except BufferError:
                buf = None
        if buf is None:
            buf = bytearray(length)
        elif len(buf) > length:
            del buf[length:]
        else:
            buf.extend(bytes(length - len(buf)))
        self._body = self._spare = buf

    def _fill(self, view: memoryview, pos: int, end: int) -> int:
        ptype, length, pid, dec = self._cur
        body = self._body
        n = min(length - self._filled, end - pos)
        if len(body) == length:
            body[self._filled:self._filled + n] = view[pos:pos + n]
        else:
            body += view[pos:pos + n]
        self._filled += n
        pos += n
        if self._filled == length:
            self._cur = None
            self._body = None
            self._deliver(dec(pid, memoryview(body), 0, length))
        return pos

    def _deliver(self, pkt: object) -> None:
        if pkt is not None:
            self._events.append(pkt)

    def _fail(self, exc: ProtocolError) -> None:
        log.debug("usbredir protocol error: %s", exc)
        self.error = exc
        self._events.append(exc)
        self.close()

    # ----------------------------------------------------------------- hello / negotiation
    def _queue_hello(self) -> None:
        version = self.version.encode("utf-8")[:63].ljust(64, b"\0")
        self._out.append(struct.pack("<III", _T.HELLO, 68, 0) + version + struct.pack("<I", self.our_caps))

    def _dec_hello(self, pid: int, buf: memoryview, start: int, stop: int) -> Hello:
        ncaps = stop - start - 64
        if ncaps % 4:
            raise ProtocolError(f"hello capability area of {ncaps} bytes is not a multiple of 4")
        raw = bytes(buf[start:start + 64]).split(b"\0", 1)[0][:63]
        version = raw.decode("utf-8", "replace")
        caps = int.from_bytes(buf[start + 64:start + 68], "little") if ncaps else 0
        self.peer_version = version
        self.peer_caps = verify_caps(caps)
        self.negotiated = Cap(self.our_caps & self.peer_caps)
        self._setup_negotiated()
        return _new(Hello, (pid, version, caps))

    def _setup_negotiated(self) -> None:
        neg = self.negotiated
        hfmt = STRUCT_FORMATS["header64" if neg & Cap.IDS_64BIT else "header32"]
        self._hdr = struct.Struct(hfmt)
        bulk_fmt = STRUCT_FORMATS["bulk32" if neg & Cap.BULK_LENGTH_32BIT else "bulk16"]
        table: dict[int, tuple[int, bool, _Decoder]] = {}
        for ptype in self._rx_types:
            if ptype == _T.HELLO:
                continue
            thl = type_header(ptype, neg).sizeof()
            table[ptype] = (thl, ptype in EXTRA_DATA_TYPES, self._make_decoder(ptype, thl, bulk_fmt))
        self._table = table
        if _T.BULK_PACKET in table and neg & Cap.BULK_LENGTH_32BIT:
            combined = struct.Struct(hfmt + bulk_fmt[1:])
            self._bulk_fast = (combined.unpack_from, combined.size, self._rx_data_flag)
        self._encoders = {}
        for ptype in self._tx_types:
            if ptype != _T.HELLO:
                self._encoders[ptype] = self._make_encoder(ptype, hfmt, bulk_fmt)

    # ----------------------------------------------------------------- decoders
    def _make_decoder(self, ptype: int, thl: int, bulk_fmt: str) -> _Decoder:
        flag = self._rx_data_flag
        to_host = self.role is Role.HOST
        max_bulk = MAX_BULK_TRANSFER_SIZE
        if ptype == _T.CONTROL_PACKET:
            unpack = struct.Struct(STRUCT_FORMATS["control"]).unpack_from

            def dec_control(pid, buf, start, stop, unpack=unpack, flag=flag, cls=ControlPacket):
                ep, req, rt, status, value, index, length = unpack(buf, start)
                start += 10
                if (ep & 0x80) == flag:
                    if stop - start != length:
                        raise ProtocolError(f"control data length {stop - start} != header length {length}")
                    return _new(cls, (pid, ep, req, rt, status, value, index, length, buf[start:stop]))
                if stop != start:
                    raise ProtocolError(f"unexpected data on control packet for ep {ep:02x}")
                return _new(cls, (pid, ep, req, rt, status, value, index, length, b""))

            return dec_control
        if ptype == _T.BULK_PACKET:
            s = struct.Struct(bulk_fmt)
            unpack, size, len32 = s.unpack_from, s.size, s.size == 10

            def dec_bulk(pid, buf, start, stop, unpack=unpack, flag=flag, size=size, cls=BulkPacket):
                if len32:
                    ep, status, length, sid, high = unpack(buf, start)
                    length |= high << 16
                    if length > max_bulk:
                        raise ProtocolError(f"bulk length {length} exceeds {max_bulk}")
                else:
                    ep, status, length, sid = unpack(buf, start)
                start += size
                if (ep & 0x80) == flag:
                    if stop - start != length:
                        raise ProtocolError(f"bulk data length {stop - start} != header length {length}")
                    return _new(cls, (pid, ep, status, length, sid, buf[start:stop]))
                if stop != start:
                    raise ProtocolError(f"unexpected data on bulk packet for ep {ep:02x}")
                return _new(cls, (pid, ep, status, length, sid, b""))

            return dec_bulk
        if ptype in (_T.ISO_PACKET, _T.INTERRUPT_PACKET):
            unpack = struct.Struct(STRUCT_FORMATS["iso"]).unpack_from
            iso = ptype == _T.ISO_PACKET
            cls = IsoPacket if iso else InterruptPacket
            name = "iso" if iso else "interrupt"

            def dec_small(pid, buf, start, stop, unpack=unpack, flag=flag, cls=cls):
                ep, status, length = unpack(buf, start)
                start += 4
                if (ep & 0x80) == flag:
                    if stop - start != length:
                        raise ProtocolError(f"{name} data length {stop - start} != header length {length}")
                    return _new(cls, (pid, ep, status, length, buf[start:stop]))
                if stop != start:
                    raise ProtocolError(f"unexpected data on {name} packet for ep {ep:02x}")
                if iso or to_host:
                    raise ProtocolError(f"{name} packet sent in the wrong direction (ep {ep:02x})")
                return _new(cls, (pid, ep, status, length, b""))

            return dec_small
        if ptype == _T.BUFFERED_BULK_PACKET:
            unpack = struct.Struct(STRUCT_FORMATS["buffered_bulk"]).unpack_from
            has_cap = bool(self.our_caps & Cap.BULK_RECEIVING)

            def dec_bbulk(pid, buf, start, stop, unpack=unpack, cls=BufferedBulkPacket):
                sid, length, ep, status = unpack(buf, start)
                start += 10
                if not has_cap:
                    raise ProtocolError("buffered_bulk_packet without cap_bulk_receiving")
                if length > max_bulk:
                    raise ProtocolError(f"buffered bulk length {length} exceeds {max_bulk}")
                if not ep & 0x80:
                    raise ProtocolError(f"buffered bulk packet sent in the wrong direction (ep {ep:02x})")
                if stop - start != length:
                    raise ProtocolError(f"buffered bulk data length {stop - start} != header length {length}")
                return _new(cls, (pid, sid, length, ep, status, buf[start:stop]))

            return dec_bbulk
        return self._make_control_decoder(ptype, thl)

    def _make_control_decoder(self, ptype: int, thl: int) -> _Decoder:
        """Non-data packets: parsed with their construct declaration (rare, not hot)."""
        layout = _compiled(ptype, int(self.negotiated))
        cls = PACKET_CLASSES[PacketType(ptype)]
        fields = cls._fields[1:]
        need_cap = _NEED_CAP.get(ptype)
        in_only = ptype in _IN_ONLY
        name = PacketType(ptype).name.lower()

        def dec(pid: int, buf: memoryview, start: int, stop: int):
            if need_cap is not None and not self.our_caps & need_cap:
                raise ProtocolError(f"{name} without {need_cap.name.lower()}")
            c = layout.parse(bytes(buf[start:start + thl])) if thl else {}
            values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in c.items() if k in fields}
            if in_only and not values["endpoint"] & 0x80:
                raise ProtocolError(f"{name} for non-input endpoint {values['endpoint']:02x}")
            if ptype == _T.INTERFACE_INFO:
                count = c["interface_count"]
                if count > 32:
                    raise ProtocolError(f"interface_count {count} > 32")
                values = {k: v[:count] for k, v in values.items()}
            elif ptype == _T.START_BULK_RECEIVING and values["bytes_per_transfer"] > MAX_BULK_TRANSFER_SIZE:
                raise ProtocolError(f"bytes_per_transfer {values['bytes_per_transfer']} too large")
            elif ptype == _T.FILTER_FILTER:
                raw = bytes(buf[start:stop])
                if not raw or raw[-1] != 0:
                    raise ProtocolError("filter_filter data is not NUL-terminated")
                text = raw[:-1].split(b"\0", 1)[0].decode("latin-1")
                try:
                    usbfilter.parse_rules(text)
                except ValueError as exc:
                    log.warning("ignoring unparsable usbredir filter %r: %s", text, exc)
                    return None
                values["rules"] = text
            elif ptype == _T.DEVICE_DISCONNECT and self.auto_disconnect_ack:
                if self.peer_has_cap(Cap.DEVICE_DISCONNECT_ACK) and not self.closed:
                    self.send(DeviceDisconnectAck())
            return cls(pid, **values)

        return dec

    # ----------------------------------------------------------------- encoders
    def send(self, pkt: Packet) -> None:
        """Queue ``pkt`` (see the module docstring for the rules)."""
        if self.closed:
            raise InvalidState("parser is closed")
        try:
            enc = self._encoders[pkt.TYPE]
        except KeyError:
            if pkt.TYPE not in self._tx_types or pkt.TYPE == _T.HELLO:
                raise InvalidState(f"a {self.role.value} may not send {pkt.TYPE.name.lower()}") from None
            raise InvalidState("cannot send before the peer's hello") from None
        enc(pkt)

    def _make_encoder(self, ptype: int, hfmt: str, bulk_fmt: str) -> Callable:
        out = self._out
        flag = self._tx_data_flag
        max_id = 0xFFFFFFFFFFFFFFFF if hfmt.endswith("Q") else 0xFFFFFFFF
        max_bulk = MAX_BULK_TRANSFER_SIZE

        def check_id(pid: int) -> None:
            if not 0 <= pid <= max_id:
                raise ValueError(f"packet id {pid} does not fit the negotiated id width")

        if ptype in (_T.CONTROL_PACKET, _T.ISO_PACKET, _T.INTERRUPT_PACKET):
            small = ptype != _T.CONTROL_PACKET
            s = struct.Struct(hfmt + STRUCT_FORMATS["iso" if small else "control"][1:])
            thl = s.size - struct.calcsize(hfmt)
            pack = s.pack
            limit = 0xFFFF
            iso = ptype == _T.ISO_PACKET
            to_guest = self.role is Role.HOST

            def enc_small(pkt):
                pid = pkt[0]
                ep = pkt[1]
                data = pkt[-1]
                length = pkt[-2]
                dlen = len(data)
                if length is None:
                    length = dlen
                if (ep & 0x80) == flag:
                    if dlen != length:
                        raise ValueError(f"data length {dlen} != header length {length} (ep {ep:02x})")
                else:
                    if dlen:
                        raise ValueError(f"unexpected data for ep {ep:02x}")
                    if small and (iso or not to_guest):
                        raise ValueError(f"{pkt.TYPE.name.lower()} in the wrong direction (ep {ep:02x})")
                if not 0 <= length <= limit:
                    raise ValueError(f"length {length} out of range")
                try:
                    if small:
                        head = pack(ptype, thl + dlen, pid, ep, pkt[2], length)
                    else:
                        head = pack(ptype, thl + dlen, pid, ep, pkt[2], pkt[3], pkt[4], pkt[5], pkt[6], length)
                except struct.error as exc:
                    check_id(pid)
                    raise ValueError(str(exc)) from None
                out.append(head)
                if dlen:
                    out.append(data)

            return enc_small
        if ptype == _T.BULK_PACKET:
            s = struct.Struct(hfmt + bulk_fmt[1:])
            thl = s.size - struct.calcsize(hfmt)
            pack = s.pack
            len32 = thl == 10

            def enc_bulk(pkt):
                pid, ep, status, length, sid, data = pkt
                dlen = len(data)
                if length is None:
                    length = dlen
                if (ep & 0x80) == flag:
                    if dlen != length:
                        raise ValueError(f"bulk data length {dlen} != header length {length} (ep {ep:02x})")
                elif dlen:
                    raise ValueError(f"unexpected bulk data for ep {ep:02x}")
                if not 0 <= length <= (max_bulk if len32 else 0xFFFF):
                    raise ValueError(f"bulk length {length} out of range")
                try:
                    if len32:
                        head = pack(ptype, thl + dlen, pid, ep, status, length & 0xFFFF, sid, length >> 16)
                    else:
                        head = pack(ptype, thl + dlen, pid, ep, status, length, sid)
                except struct.error as exc:
                    check_id(pid)
                    raise ValueError(str(exc)) from None
                out.append(head)
                if dlen:
                    out.append(data)

            return enc_bulk
        if ptype == _T.BUFFERED_BULK_PACKET:
            s = struct.Struct(hfmt + STRUCT_FORMATS["buffered_bulk"][1:])
            thl = s.size - struct.calcsize(hfmt)
            pack = s.pack

            def enc_bbulk(pkt):
                pid, sid, length, ep, status, data = pkt
                dlen = len(data)
                if length is None:
                    length = dlen
                if not self.peer_has_cap(Cap.BULK_RECEIVING):
                    raise ValueError("peer lacks cap_bulk_receiving")
                if not ep & 0x80 or dlen != length or length > max_bulk:
                    raise ValueError(f"invalid buffered bulk packet (ep {ep:02x}, length {length}, data {dlen})")
                try:
                    out.append(pack(ptype, thl + dlen, pid, sid, length, ep, status))
                except struct.error as exc:
                    check_id(pid)
                    raise ValueError(str(exc)) from None
                if dlen:
                    out.append(data)

            return enc_bbulk
        return self._make_control_encoder(ptype, hfmt, check_id)

    def _make_control_encoder(self, ptype: int, hfmt: str, check_id: Callable[[int], None]) -> Callable:
        layout = type_header(ptype, self.negotiated)
        head = struct.Struct(hfmt)
        out = self._out
        need_cap = _NEED_CAP.get(ptype)
        in_only = ptype in _IN_ONLY
        name = PacketType(ptype).name.lower()

        def enc(pkt):
            if need_cap is not None and not self.peer_has_cap(need_cap):
                raise ValueError(f"peer lacks {need_cap.name.lower()} needed for {name}")
            check_id(pkt.id)
            values = pkt._asdict()
            data = b""
            if in_only and not values["endpoint"] & 0x80:
                raise ValueError(f"{name} needs an input endpoint")
            if ptype == _T.INTERFACE_INFO:
                count = len(pkt.interface)
                if count > 32 or any(len(a) != count for a in pkt[1:]):
                    raise ValueError("interface_info arrays must have the same length <= 32")
                values = {k: tuple(v) + (0,) * (32 - count) for k, v in values.items() if k != "id"}
                values["interface_count"] = count
            elif ptype == _T.START_BULK_RECEIVING and pkt.bytes_per_transfer > MAX_BULK_TRANSFER_SIZE:
                raise ValueError("bytes_per_transfer too large")
            elif ptype == _T.FILTER_FILTER:
                usbfilter.parse_rules(pkt.rules)  # raises ValueError if invalid
                data = pkt.rules.encode("latin-1") + b"\0"
            try:
                body = layout.build(values)
            except Exception as exc:  # construct errors: values out of range, wrong array sizes
                raise ValueError(f"cannot build {name}: {exc}") from None
            out.append(head.pack(ptype, len(body) + len(data), pkt.id) + body + data)

        return enc


def HostParser(caps: int = ALL_CAPS, version: str = "aiospice usb-host", **kw) -> UsbredirParser:
    """A parser for the usb-host role (exports a device)."""
    return UsbredirParser(Role.HOST, caps, version, **kw)


def GuestParser(caps: int = ALL_CAPS, version: str = "aiospice usb-guest", **kw) -> UsbredirParser:
    """A parser for the usb-guest role (uses a remote device)."""
    return UsbredirParser(Role.GUEST, caps, version, **kw)

