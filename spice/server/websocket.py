"""One SPICE channel's byte stream over a WebSocket, on top of ``websockets``' sans-I/O ServerProtocol.

The SPICE connection code gets an ordinary ``asyncio.StreamReader`` (fed with the payloads of the
client's binary frames; frame boundaries mean nothing in SPICE) and a writer-like object
(:class:`WebSocketWriter`) whose writes are *batched*: everything written during one event-loop turn
(or until ``drain()``) goes out as one binary frame.  spice-server sends one frame per SPICE message and
browsers fall behind under bursts of small fills; batching keeps the frame count low.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import State
from websockets.server import ServerProtocol

log = logging.getLogger(__name__)

MAX_FRAME = 1 << 20  # split outgoing batches above this size
FLUSH_AT = 256 * 1024  # flush immediately once this much is pending
INBOUND_HIGH_WATER = 4 << 20  # stop reading the socket while the SPICE side has this much unread
FIRST_DATA_TIMEOUT = 30.0  # a WebSocket that never sends anything is closed after this
OUTBOUND_HIGH_WATER = 4 << 20  # stop reading (and answering PINGs) while this much waits to be sent


@dataclass
class WsStats:
    """Counters of one WebSocket connection (read by metrics)."""

    frames_out: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    bytes_in: int = 0


class WebSocketWriter:
    """Writer-like object (write/drain/close/wait_closed/get_extra_info) that batches into frames."""

    def __init__(self, proto: ServerProtocol, raw: asyncio.StreamWriter, stats: WsStats) -> None:
        self._proto = proto
        self._raw = raw
        self._stats = stats
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._flush_scheduled = False
        self._closed = False
        self._loop = asyncio.get_running_loop()

    # -- writer interface used by the SPICE connection ---------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or not data:
            return
        self._pending.append(bytes(data))
        self._pending_len += len(data)
        if self._pending_len >= FLUSH_AT:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, chunks) -> None:
        for c in chunks:
            self.write(c)

    async def drain(self) -> None:
        self.flush()
        if self._raw.is_closing():
            raise ConnectionResetError("websocket closed")
        await self._raw.drain()

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self._closed or self._raw.is_closing()

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._proto.state is State.OPEN:
            self._proto.send_close(1000)
        send_pending(self._proto, self._raw)
        self._raw.close()

    async def wait_closed(self) -> None:
        try:
            await self._raw.wait_closed()
        except (ConnectionError, OSError):
            pass

    def get_extra_info(self, name: str, default=None):
        if name == "websocket":
            return True
        return self._raw.get_extra_info(name, default)

    @property
    def transport(self):
        return self._raw.transport

    # -- batching ------------------------------------------------------------------------------
    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self._closed:
            self._pending.clear()
            self._pending_len = 0
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_len = 0
        if self._proto.state is not State.OPEN or self._raw.is_closing():
            return
        if len(data) < 65536 and not self._proto.extensions:  # one frame, framed here: no per-frame objects
            send_pending(self._proto, self._raw)  # (a PONG the protocol queued goes first)
            if self._raw.is_closing():
                return
            head = bytes((0x82, len(data))) if len(data) < 126 else b"\x82\x7e" + len(data).to_bytes(2, "big")
            self._raw.write(head + data)
            self._stats.frames_out += 1
            self._stats.bytes_out += len(data)
            return
        for off in range(0, len(data), MAX_FRAME):
            chunk = data[off : off + MAX_FRAME]
            self._proto.send_binary(chunk)
            self._stats.frames_out += 1
            self._stats.bytes_out += len(chunk)
        send_pending(self._proto, self._raw)


def send_pending(proto: ServerProtocol, raw: asyncio.StreamWriter) -> None:
    """Write whatever the protocol queued; an empty chunk means "half-close": close the socket."""
    for chunk in proto.data_to_send():
        if chunk:
            if not raw.is_closing():
                raw.write(chunk)
        else:
            raw.close()


def _binary_payloads(data: bytes, max_size: int | None) -> list[bytes] | None:
    """The payloads of ``data`` when it is nothing but whole, final, masked client binary frames under
    64 KiB (a browser's key or ACK: one frame per ``send``), else None (the protocol object parses it)."""
    payloads = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 6 or data[pos] != 0x82 or not data[pos + 1] & 0x80:  # FIN+BINARY, masked
            return None
        size = data[pos + 1] & 0x7F
        head = 6
        if size == 126:
            if end - pos < 8:
                return None
            size, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 8
        elif size == 127:
            return None
        if (max_size is not None and size > max_size) or end - pos < head + size:
            return None
        payloads.append(apply_mask(data[pos + head : pos + head + size], data[pos + head - 4 : pos + head]))
        pos += head + size
    return payloads


def _wire_size(frame: Frame) -> int:
    n = len(frame.data)
    return 6 + n + (0 if n < 126 else 2 if n < 65536 else 8)


class _Inbound:
    """Whether the protocol object's parser stands at a frame boundary (bytes fed == frames parsed), so
    that whole frames may bypass it (:func:`_binary_payloads`)."""

    unparsed = 0


def _deliver(proto: ServerProtocol, data: bytes, raw_writer: asyncio.StreamWriter, stream: asyncio.StreamReader,
             stats: WsStats, inbound: _Inbound | None = None) -> bool:
    """Parse received bytes and feed the payloads of binary frames to ``stream``; False once the
    WebSocket is closing (or ``data`` is b"": end of stream).  Whole binary frames at a frame boundary
    skip the protocol object's generic parser (key-to-pixel latency); anything else goes through it."""
    if not data:
        proto.receive_eof()
        send_pending(proto, raw_writer)
        return False
    if (inbound is not None and not inbound.unparsed and proto.state is State.OPEN and not proto.extensions
            and proto.current_size is None):
        payloads = _binary_payloads(data, proto.max_message_size)
        if payloads is not None:
            for payload in payloads:
                if payload:
                    stats.frames_in += 1
                    stats.bytes_in += len(payload)
                    stream.feed_data(payload)
            return True
    proto.receive_data(data)
    events = proto.events_received()
    if inbound is not None:
        inbound.unparsed += len(data) - sum(_wire_size(e) for e in events if isinstance(e, Frame))
    for event in events:
        if not isinstance(event, Frame):
            continue
        if event.opcode in (Opcode.BINARY, Opcode.CONT):
            if event.data:
                stats.frames_in += 1
                stats.bytes_in += len(event.data)
                stream.feed_data(event.data)
        elif event.opcode is Opcode.TEXT:
            proto.fail(1003, "SPICE needs binary frames")
        # PING is answered and CLOSE is handled by the protocol object itself.
    send_pending(proto, raw_writer)
    if proto.state is State.CLOSED or proto.state is State.CLOSING or proto.close_expected():
        if proto.parser_exc is not None:
            log.info("websocket protocol error: %s", proto.parser_exc)
        return False
    return True


class _DirectInbound(asyncio.Protocol):
    """Stands in for the raw stream's protocol once the SPICE side takes payloads as they are fed
    (a ``direct_read`` channel such as inputs): frames are parsed in the transport's callback, no
    read-task wake-up a loop turn later (key-to-pixel latency).  Write flow control and connection
    loss still reach the stream's own protocol, so the raw writer's drain() keeps working."""

    def __init__(self, inner: asyncio.BaseProtocol, transport: asyncio.Transport, deliver: Callable[[bytes], bool],
                 raw_writer: asyncio.StreamWriter, done: asyncio.Event) -> None:
        self._inner, self._transport, self._deliver = inner, transport, deliver
        self._raw_writer, self._done = raw_writer, done
        self._draining = False

    def data_received(self, data: bytes) -> None:
        if self._done.is_set():
            return
        try:
            more = self._deliver(data)
        except (ConnectionError, OSError) as exc:
            log.debug("websocket read error: %s", exc)
            more = False
        if not more:
            self._done.set()
        elif self._transport.get_write_buffer_size() > OUTBOUND_HIGH_WATER and not self._draining:
            # a peer that sends PINGs and never reads must not grow our buffer: read again once drained
            self._draining = True
            self._transport.pause_reading()
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self._raw_writer.drain()
            if not self._transport.is_closing():
                self._transport.resume_reading()
        except (ConnectionError, OSError):
            self._done.set()
        finally:
            self._draining = False

    def eof_received(self) -> bool | None:
        if not self._done.is_set():
            with contextlib.suppress(ConnectionError, OSError):
                self._deliver(b"")
            self._done.set()
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done.set()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def _go_direct(raw_reader: asyncio.StreamReader, raw_writer: asyncio.StreamWriter, stream: asyncio.StreamReader,
               deliver: Callable[[bytes], bool]) -> asyncio.Event | None:
    """Switch to :class:`_DirectInbound` when the SPICE side reads ``stream`` directly (it replaced
    ``feed_data``) and nothing is buffered; returns the event set when the inbound side ends."""
    transport = raw_writer.transport
    if ("feed_data" not in vars(stream) or len(getattr(raw_reader, "_buffer", b"x")) or raw_reader.at_eof()
            or transport.is_closing() or not hasattr(transport, "set_protocol")):
        return None
    done = asyncio.Event()
    transport.set_protocol(_DirectInbound(transport.get_protocol(), transport, deliver, raw_writer, done))
    return done


async def pump_inbound(
    proto: ServerProtocol,
    raw_reader: asyncio.StreamReader,
    raw_writer: asyncio.StreamWriter,
    stream: asyncio.StreamReader,
    stats: WsStats,
    *,
    first_data_timeout: float = FIRST_DATA_TIMEOUT,
    initial: bytes = b"",
) -> None:
    """Socket -> protocol -> payloads into ``stream``; ends with ``stream.feed_eof()``.

    ``initial`` holds bytes that arrived together with the HTTP upgrade request."""
    got_payload = False
    loop = asyncio.get_running_loop()
    deliver = functools.partial(_deliver, proto, raw_writer=raw_writer, stream=stream, stats=stats,
                                inbound=_Inbound() if not proto.extensions else None)
    deadline = loop.time() + first_data_timeout
    try:
        while True:
            while len(getattr(stream, "_buffer", b"")) > INBOUND_HIGH_WATER:
                await asyncio.sleep(0.005)
            if initial:
                data, initial = initial, b""
            elif got_payload:
                data = await raw_reader.read(65536)
            else:
                remaining = deadline - loop.time()
                try:
                    data = await asyncio.wait_for(raw_reader.read(65536), max(remaining, 0.0))
                except TimeoutError:
                    log.info("websocket sent no data within %.0f s: closing", first_data_timeout)
                    proto.fail(1008, "no data")
                    send_pending(proto, raw_writer)
                    return
            frames = stats.frames_in
            if not deliver(data):
                return
            got_payload = got_payload or stats.frames_in > frames
            if raw_writer.transport.get_write_buffer_size() > OUTBOUND_HIGH_WATER:
                await raw_writer.drain()  # a peer that sends PINGs and never reads must not grow our buffer
            if got_payload:
                done = _go_direct(raw_reader, raw_writer, stream, deliver)
                if done is not None:
                    await done.wait()
                    return
    except (ConnectionError, OSError) as exc:
        log.debug("websocket read error: %s", exc)
    finally:
        stream.feed_eof()


SpiceHandler = Callable[..., Awaitable[None]]


async def run_spice_over_websocket(
    server,
    proto: ServerProtocol,
    raw_reader: asyncio.StreamReader,
    raw_writer: asyncio.StreamWriter,
    spice_handler: SpiceHandler,
    *,
    first_data_timeout: float = FIRST_DATA_TIMEOUT,
    stats: WsStats | None = None,
    initial: bytes = b"",
) -> WsStats:
    """Run one SPICE channel connection over an OPEN WebSocket until either side ends it."""
    stats = stats or WsStats()
    stream = asyncio.StreamReader(limit=INBOUND_HIGH_WATER)
    writer = WebSocketWriter(proto, raw_writer, stats)
    pump = asyncio.create_task(
        pump_inbound(
            proto,
            raw_reader,
            raw_writer,
            stream,
            stats,
            first_data_timeout=first_data_timeout,
            initial=initial,
        )
    )
    try:
        await spice_handler(server, stream, writer, b"")
    except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
        log.debug("spice over websocket ended: %s", exc)
    finally:
        writer.close()
        pump.cancel()
        try:
            await pump
        except asyncio.CancelledError:
            pass
        raw_writer.close()
    return stats
