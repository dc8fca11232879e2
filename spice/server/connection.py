"""One SPICE connection: run the link, then the channel's read/write loops with the ACK window.

:func:`handle_spice_stream` is the entry point for every transport (TCP, TLS, WebSocket): it
needs an ``asyncio.StreamReader`` and a writer with ``write/drain/close/wait_closed/
get_extra_info`` and uses only ``get_extra_info('peername')`` and ``('ssl_object')``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import TYPE_CHECKING, Any

from spice.channels.base import Channel, ChannelError
from spice.channels.registry import channel_class
from spice.proto.channel import (
    ChannelProtocol,
    ChannelProtocolError,
    PeerDisconnecting,
    PongReceived,
    WindowOpened,
)
from spice.proto.enums import CHANNEL_NAMES, ChannelType, LinkError
from spice.proto.headers import Message
from spice.proto.link import (
    LinkEstablished,
    LinkFailed,
    LinkRequest,
    LinkState,
    ServerLink,
    TicketReceived,
)

if TYPE_CHECKING:
    from .server import SpiceServer
    from .session import Session

log = logging.getLogger("spice.server")
READ_CHUNK = 64 * 1024


class _DirectRead(asyncio.Protocol):
    """Stands in for a TCP stream's protocol once a channel is up: received bytes go straight to
    the connection's parser from the transport's callback (no StreamReader buffer, no task wake-up a
    loop turn later); flow control and connection loss still reach the stream's own protocol, so the
    writer's drain() keeps working."""

    def __init__(self, inner: asyncio.BaseProtocol, conn: ChannelConnection) -> None:
        self._inner = inner
        self._conn = conn

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        # no garbage collection between the input and its frame's write (a gen-0 pass costs 0.1-0.3 ms,
        # a gen-1 one over 1 ms): a collection that falls due runs at the next allocation after it
        collect = gc.isenabled()
        if collect:
            gc.disable()
        try:
            conn._feed(data)
        except Exception:  # a bug must not take the transport down silently
            log.exception("%s: channel failed", conn.name)
            conn.close("internal error")
        finally:
            if collect:
                gc.enable()

    def eof_received(self) -> bool | None:
        self._conn._read_done("client closed the connection")
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn._read_done(f"connection error: {exc}" if exc else "client closed the connection")
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def _channel_name(channel_type: int) -> str:
    try:
        return CHANNEL_NAMES[ChannelType(channel_type)]
    except ValueError:
        return f"type{channel_type}"


async def handle_spice_stream(server: SpiceServer, reader: asyncio.StreamReader, writer: Any,
                              first: bytes = b"", *, transport: str | None = None) -> None:
    """Serve one SPICE connection to its end (link, then channel); never raises."""
    conn = ChannelConnection(server, reader, writer, transport)
    try:
        await conn.run(first)
    except Exception:  # a bug must not take the server down
        log.exception("%s: connection failed", conn.peer)
    finally:
        await conn.close_transport()


class ChannelConnection:
    """The asyncio side of one channel connection."""

    def __init__(self, server: SpiceServer, reader: asyncio.StreamReader, writer: Any,
                 transport: str | None = None) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        self.secure = writer.get_extra_info("ssl_object") is not None or transport in ("wss",)
        if transport is None and writer.get_extra_info("websocket"):
            transport = "wss" if self.secure else "websocket"
        #: ``tcp``, ``tls``, ``websocket`` or ``wss`` (WebSocket writers answer get_extra_info("websocket"))
        self.transport = transport or ("tls" if self.secure else "tcp")
        self.protocol: ChannelProtocol = ChannelProtocol(True)
        self.channel: Channel | None = None
        self.session: Session | None = None
        self.request: LinkRequest | None = None
        self.mini_header = True
        self.close_reason: str | None = None
        self._wake = asyncio.Event()
        self._ended = asyncio.Event()  # direct reading: the peer closed or the connection was lost
        self._closing = False
        self._stall_since: float | None = None
        self._counted_in = self._counted_out = 0
        self._msgs_in = self._msgs_out = 0
        self._initial = b""

    @property
    def profile(self) -> str:
        """``spice-gtk``, ``spice-html5`` or ``web`` (our browser client), from transport and caps."""
        from .session import client_profile

        req = self.request
        if req is None:
            return client_profile(frozenset(), None, self.transport)
        display_caps = req.channel_caps if req.channel_type == ChannelType.DISPLAY else None
        return client_profile(req.common_caps, display_caps, self.transport)

    @property
    def name(self) -> str:
        if self.request is None:
            return f"{self.peer} (linking)"
        return f"{self.peer} {_channel_name(self.request.channel_type)}:{self.request.channel_id}"

    # -- lifecycle
    async def run(self, first: bytes) -> None:
        server = self.server
        stats = server.stats
        if stats.connections_open >= server.config.max_connections:
            stats.connections_refused += 1
            log.warning("%s: refused, %d connections open (limit)", self.peer, stats.connections_open)
            return
        stats.connections_open += 1
        server.connections.add(self)
        try:
            try:
                linked = await asyncio.wait_for(self._link(first), server.config.link_timeout)
            except TimeoutError:
                stats.link_failures["TIMEOUT"] += 1
                log.warning("%s: link not completed within %.1f s, closing", self.peer, server.config.link_timeout)
                return
            except (ConnectionError, OSError) as err:
                stats.link_failures["ERROR"] += 1
                log.info("%s: connection lost during link: %s", self.peer, err)
                return
            if linked:
                await self._serve()
        finally:
            stats.connections_open -= 1
            server.connections.discard(self)

    async def close_transport(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        except TimeoutError:
            self._abort()  # the client does not read: do not wait for the buffer to drain
        except Exception:
            pass

    def _abort(self) -> None:
        transport = getattr(self.writer, "transport", None)
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.abort()

    def close(self, reason: str, disconnecting: int | None = None, abort: bool = False) -> None:
        """Ask the connection to end (from any task); ``disconnecting`` sends DISCONNECTING first,
        ``abort`` drops unsent data (for clients that stopped reading)."""
        if self._closing:
            return
        self._closing = True
        self.close_reason = reason
        if disconnecting is not None and self.channel is not None and not abort:
            with contextlib.suppress(Exception):
                self.protocol.disconnecting(disconnecting)
                self.write_out(ignore_window=True)
        self._wake.set()
        self._ended.set()
        with contextlib.suppress(Exception):
            self.writer.close()
        if abort:
            self._abort()

    def wakeup(self) -> None:
        self._wake.set()

    # -- link
    async def _link(self, first: bytes) -> bool:
        server = self.server
        link = ServerLink(server.key)
        events = link.receive_data(first) if first else []
        while True:
            for ev in events:
                if isinstance(ev, LinkRequest):
                    events_more = self._on_link_request(link, ev)
                    events.extend(events_more)
                elif isinstance(ev, TicketReceived):
                    events.append(self._on_ticket(link, ev))
                elif isinstance(ev, LinkFailed):
                    server.stats.link_failures[ev.code.name] += 1
                    log.warning("%s: link failed: %s (%s)", self.name, ev.code.name, ev.reason)
                elif isinstance(ev, LinkEstablished):
                    self.mini_header = ev.mini_header
            out = link.data_to_send()
            if out:
                self.writer.write(out)
                await self.writer.drain()
            if link.state is LinkState.DONE:
                self._initial = link.remaining
                return True
            if link.state is LinkState.FAILED:
                return False
            data = await self.reader.read(4096)
            events = link.receive_data(data) if data else link.receive_eof()

    def _on_link_request(self, link: ServerLink, req: LinkRequest) -> list[object]:
        self.request = req
        cls = channel_class(req.channel_type)
        if cls is None:
            return [link.reject(LinkError.CHANNEL_NOT_AVAILABLE, f"no channel type {req.channel_type}")]
        if req.channel_type in self.server.config.secure_channels and not self.secure:
            return [link.reject(LinkError.NEED_SECURED, "channel requires TLS")]
        return link.accept(cls.server_caps(self.server))

    def _on_ticket(self, link: ServerLink, ev: TicketReceived) -> object:
        server = self.server
        req = self.request
        assert req is not None
        code = server.auth.check(ev.plaintext)
        if code != LinkError.OK:
            server.stats.auth_failures += 1
            reason = "ticket did not decrypt" if ev.plaintext is None else "wrong or expired password"
            return link.finish(code, reason)
        cls = channel_class(req.channel_type)
        assert cls is not None
        if req.channel_id not in cls.channel_ids(server):
            return link.finish(LinkError.CHANNEL_NOT_AVAILABLE, f"no channel id {req.channel_id}")
        if req.channel_type == ChannelType.MAIN:
            return link.finish(LinkError.OK)
        session = server.sessions.get(req.connection_id)
        if session is None or session.closed:
            return link.finish(LinkError.BAD_CONNECTION_ID, f"unknown session id {req.connection_id:#x}")
        self.session = session
        return link.finish(LinkError.OK)

    # -- channel
    async def _serve(self) -> None:
        server = self.server
        req = self.request
        assert req is not None
        cls = channel_class(req.channel_type)
        assert cls is not None
        if self.session is None:  # main channel: new session
            self.session = server.sessions.create(server)
            server.stats.sessions_total += 1
            server.stats.sessions_open += 1
        session = self.session
        if session.closed:
            log.info("%s: session %#x ended during the link, closing", self.name, session.id)
            return
        counters = server.stats.channel(cls.name)
        counters.connections_total += 1
        counters.connections_open += 1
        counters.connections_tls += self.secure
        self.protocol = ChannelProtocol(self.mini_header, server=True, max_message=cls.max_message)
        log.info("%s: channel up (session %#x, %s, caps %s)", self.name, session.id, self.transport,
                 sorted(req.channel_caps))
        channel = cls(self, session, req)
        self.channel = channel
        session.add(channel)
        writer_task = asyncio.create_task(self._write_loop(), name=f"spice-write {self.name}")
        try:
            if cls.flow_control:
                self.protocol.set_ack(server.config.ack_window)
            channel.start()
            self.wakeup()
            if self._initial:
                self._feed(self._initial)
            if self._read_directly(cls):
                await self._ended.wait()
            while not self._closing:
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    self.close_reason = self.close_reason or "client closed the connection"
                    break
                self._feed(data)
        except (ConnectionError, OSError) as err:
            self.close_reason = self.close_reason or f"connection error: {err}"
        finally:
            self._closing = True
            self._wake.set()
            writer_task.cancel()
            with contextlib.suppress(BaseException):
                await writer_task
            with contextlib.suppress(Exception):
                channel.close()
            session.remove(channel)
            counters.connections_open -= 1
            self._count()
            log.info("%s: closed: %s", self.name, self.close_reason)
            if req.channel_type == ChannelType.MAIN:
                self._end_session(session)

    def _read_directly(self, cls: type[Channel]) -> bool:
        """For latency-critical channels (``direct_read``) on plain TCP: parse bytes in the transport's
        callback (:class:`_DirectRead`) instead of a read loop; False (keep the loop) when not possible."""
        transport = getattr(self.writer, "transport", None)
        reader_buffer = getattr(self.reader, "_buffer", None)
        if (not getattr(cls, "direct_read", False) or transport is None or reader_buffer is None
                or self.reader.at_eof() or transport.is_closing()):
            return False
        if self.transport == "tcp" and isinstance(self.writer, asyncio.StreamWriter):
            transport.set_protocol(_DirectRead(transport.get_protocol(), self))
            if reader_buffer:  # bytes that came with the link: parsed first, the rest comes directly
                early = bytes(reader_buffer)
                reader_buffer.clear()
                if getattr(self.reader, "_paused", False):  # (a stream that held a full buffer)
                    self.reader._paused = False
                    transport.resume_reading()
                self._feed(early)
            return True
        if len(reader_buffer):
            return False
        if self.transport == "websocket" and type(self.reader) is asyncio.StreamReader:
            # the WebSocket adapter feeds this reader with payloads: take them as they are fed
            reader, feed_eof = self.reader, self.reader.feed_eof
            direct = _DirectRead(asyncio.Protocol(), self)

            def eof() -> None:
                self._read_done("client closed the connection")
                feed_eof()

            reader.feed_data = direct.data_received  # type: ignore[method-assign]
            reader.feed_eof = eof  # type: ignore[method-assign]
            return True
        return False

    def _read_done(self, reason: str) -> None:
        self.close_reason = self.close_reason or reason
        self._ended.set()

    def _end_session(self, session: Session) -> None:
        session.closed = True
        self.server.sessions.remove(session)
        self.server.stats.sessions_open -= 1
        for ch in list(session.channels):
            ch.conn.close("main channel closed")

    def _feed(self, data: bytes) -> None:
        if self._closing:
            return
        assert self.channel is not None
        try:
            events = self.protocol.receive_data(data)
            for ev in events:
                if isinstance(ev, Message):
                    if ev.type not in self.channel.known_messages:
                        raise ChannelError(f"unknown message type {ev.type}")
                    self.channel.on_message(ev)
                elif isinstance(ev, WindowOpened):
                    if self.protocol.queued or self.channel.has_pending():
                        self.wakeup()  # (an ACK with nothing waiting does not wake the write task)
                elif isinstance(ev, PongReceived):
                    self.server.stats.channel(self.channel.name).last_rtt = ev.rtt
                elif isinstance(ev, PeerDisconnecting):
                    self.close(f"client sent DISCONNECTING (reason {ev.reason})")
                    return
        except (ChannelProtocolError, ChannelError) as err:
            log.warning("%s: protocol error, closing: %s", self.name, err)
            self.close(f"protocol error: {err}")
            return
        after_feed = getattr(self.channel, "after_feed", None)
        if after_feed is not None:
            after_feed()
        if self.protocol.pending_bytes:
            if self.protocol.pending_bytes > self.server.config.max_pending_bytes:
                log.warning("%s: %d bytes queued for a client that does not read, closing", self.name,
                            self.protocol.pending_bytes)
                self.close("client does not read", abort=True)
                return
            self.wakeup()
        self._count()

    def _count(self) -> None:
        if self.channel is None:
            return
        c = self.server.stats.channel(self.channel.name)
        p = self.protocol
        c.bytes_in += p.bytes_in - self._counted_in
        c.bytes_out += p.bytes_out - self._counted_out
        c.messages_in += p.messages_in - self._msgs_in
        c.messages_out += p.messages_out - self._msgs_out
        self._counted_in, self._counted_out = p.bytes_in, p.bytes_out
        self._msgs_in, self._msgs_out = p.messages_in, p.messages_out

    async def _write_loop(self) -> None:
        cfg = self.server.config
        channel = self.channel
        assert channel is not None
        proto = self.protocol
        loop = asyncio.get_running_loop()
        next_ping = time.monotonic() + cfg.ping_interval if cfg.ping_interval and channel.pings else None
        try:
            while not self._closing:
                self._pump(channel, proto)
                if self.write_out():
                    self._count()
                    if self._sent_all():
                        continue  # all in the kernel's buffer: drain() would return at once
                    try:
                        await asyncio.wait_for(self.writer.drain(), cfg.ack_timeout)
                    except TimeoutError:
                        log.warning("%s: client did not read for %.0f s, closing", self.name, cfg.ack_timeout)
                        self.close(f"client did not read for {cfg.ack_timeout:.0f} s", abort=True)
                        return
                    continue
                stalled = not proto.window_open and (proto.queued > 0 or channel.has_pending())
                now = time.monotonic()
                if stalled:
                    if self._stall_since is None:
                        self._stall_since = now
                        self.server.stats.channel(channel.name).ack_stalls += 1
                    elif now - self._stall_since >= cfg.ack_timeout:
                        log.warning("%s: no ACK for %.0f s with the window full, closing", self.name,
                                    cfg.ack_timeout)
                        self.close("client stopped acknowledging (ACK window exhausted)", abort=True)
                        return
                else:
                    self._stall_since = None
                timeout = None
                if next_ping is not None:
                    if now >= next_ping:
                        proto.ping()
                        next_ping = now + cfg.ping_interval
                        continue
                    timeout = next_ping - now
                if stalled:
                    rest = cfg.ack_timeout - (now - (self._stall_since or now))
                    timeout = rest if timeout is None else min(timeout, rest)
                self._wake.clear()
                # a timer that sets the event, not wait_for(): no task per wait
                timer = None if timeout is None else loop.call_later(max(timeout, 0.001), self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
        except (ConnectionError, OSError) as err:
            self.close(f"write failed: {err}")
        except Exception:
            log.exception("%s: channel failed", self.name)
            self.close("internal error")

    def write_out(self, ignore_window: bool = False) -> bool:
        """Write the messages the ACK window allows; False if there were none.

        Over TLS every message goes in its own TLS record (one write each): spice-gtk reads one message
        per readable socket, so a second message decrypted along with the first waits inside its TLS
        layer until the next packet arrives (the first screen stayed blank until a PING)."""
        if self.transport == "tls":
            msgs = self.protocol.messages_to_send(ignore_window)
            if not msgs:
                return False
            self.writer.writelines(msgs)
            return True
        data = self.protocol.data_to_send(ignore_window)
        if not data:
            return False
        self.writer.write(data)  # the connection's writer: plain TCP or WebSocket framing
        return True

    def _sent_all(self) -> bool:
        """True when a plain TCP writer holds nothing back (everything written went to the kernel)."""
        transport = getattr(self.writer, "transport", None)
        return (type(self.writer) is asyncio.StreamWriter and transport is not None
                and not transport.is_closing() and transport.get_write_buffer_size() == 0)

    def _pump(self, channel: Channel, proto: ChannelProtocol) -> None:
        """Let the channel produce while the ACK window has room."""
        while proto.room > 0 and channel.has_pending():
            before = proto.queued
            channel.produce()
            if proto.queued == before:
                break
