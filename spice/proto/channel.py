"""Sans-I/O protocol of one established SPICE channel: framing, serials, ACK window, PING/PONG.

Shared by every channel type and by both the server and the client side.  Bytes go in with
:meth:`ChannelProtocol.receive_data`, which handles the base messages itself and returns
the channel-specific :class:`~spice.proto.headers.Message` objects plus a few events; bytes to
write come out of :meth:`ChannelProtocol.data_to_send`.

Server side, after :meth:`ChannelProtocol.set_ack` every message waits in the protocol's queue
until the ACK window has room (spice.md §4.3: at most 2 * window + 1 unacknowledged), so the
window is enforced on all of a channel's sends; :attr:`ChannelProtocol.room` tells producers
how much more is worth queueing.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from . import base
from .enums import BaseMsg, BaseMsgc
from .headers import FramingError, HeaderCodec, Message


class ChannelProtocolError(Exception):
    """The peer broke the channel protocol; the connection should be closed."""


@dataclass(frozen=True)
class PongReceived:
    id: int
    rtt: float  # seconds


@dataclass(frozen=True)
class PeerDisconnecting:
    reason: int


@dataclass(frozen=True)
class WindowOpened:
    """An ACK freed room in the send window."""


class ChannelProtocol:
    """One channel's message layer.

    ``server`` selects which base messages are handled (server: ACK_SYNC/ACK/PONG from the client;
    client: SET_ACK/PING from the server, answered automatically).
    """

    def __init__(self, mini_header: bool, *, server: bool = True, max_message: int = 1 << 20) -> None:
        self.codec = HeaderCodec(mini_header, max_message)
        self.server = server
        self._queue: deque[tuple[int, list[bytes]]] = deque()  # (bytes incl. header, parts) per message
        self._queued_bytes = 0
        # ACK window (server side)
        self.ack_generation = 0
        self.ack_window = 0  # 0 = no flow control
        self.client_generation = 0
        self.unacked = 0
        # client side ACK state
        self._ack_countdown = 0
        self._ack_window_client = 0
        self._pings: dict[int, float] = {}
        self._ping_id = 0
        self.last_rtt: float | None = None
        self.bytes_in = self.bytes_out = self.messages_in = self.messages_out = 0

    # -- sending
    def send(self, msg_type: int, body: bytes = b"") -> None:
        """Queue one message (always queued; callers consult :attr:`window_open` first)."""
        self.send_parts(msg_type, [body])

    def send_parts(self, msg_type: int, parts: list[bytes]) -> None:
        """Queue one message whose body is ``b"".join(parts)`` without joining it here
        (large images are copied once, in :meth:`data_to_send`)."""
        size = sum(map(len, parts))
        head = self.codec.header(msg_type, size)
        self._queue.append((len(head) + size, [head, *parts]))
        self._queued_bytes += len(head) + size

    def set_ack(self, window: int) -> None:
        """Start (or change) ACK flow control: SET_ACK {generation+1, window}; the count restarts."""
        self.ack_generation += 1
        self.ack_window = window
        self.unacked = 0
        self.send(BaseMsg.SET_ACK, base.SET_ACK.pack(self.ack_generation, window))

    @property
    def window_open(self) -> bool:
        """True while the client has acknowledged enough to send more (unacked <= 2 * window)."""
        return not self.ack_window or self.unacked <= 2 * self.ack_window

    @property
    def room(self) -> int:
        """How many more messages can be queued now and still go out without waiting for an ACK."""
        if not self.ack_window:
            return 1 << 30
        return 2 * self.ack_window + 1 - self.unacked - len(self._queue)

    @property
    def queued(self) -> int:
        """Messages queued but not yet released to the wire (held back by the ACK window)."""
        return len(self._queue)

    def ping(self, filler: int = 0) -> int:
        self._ping_id += 1
        now = time.monotonic()
        self._pings[self._ping_id] = now
        if len(self._pings) > 64:  # a client that never answers must not grow this
            self._pings.pop(next(iter(self._pings)))
        self.send(BaseMsg.PING, base.PING.pack(self._ping_id, time.monotonic_ns() // 1000) + bytes(filler))
        return self._ping_id

    def notify(self, text: str, severity: int = 0, visibility: int = 1) -> None:
        self.send(BaseMsg.NOTIFY, base.build_notify(time.time_ns() // 1000, severity, visibility, 0, text))

    def disconnecting(self, reason: int = 0) -> None:
        self.send(BaseMsg.DISCONNECTING, base.DISCONNECTING.pack(time.time_ns() // 1000, reason))

    def data_to_send(self, ignore_window: bool = False) -> bytes:
        """Bytes of the queued messages the ACK window allows (all of them with ``ignore_window``,
        used when closing).  Every message sent counts against the window."""
        return b"".join([part for parts in self._release(ignore_window) for part in parts])

    def messages_to_send(self, ignore_window: bool = False) -> list[bytes]:
        """:meth:`data_to_send` as one bytes object per message."""
        return [b"".join(parts) for parts in self._release(ignore_window)]

    def _release(self, ignore_window: bool) -> list[list[bytes]]:
        """Take the messages the window allows off the queue (each as its header and body parts)."""
        out: list[list[bytes]] = []
        q = self._queue
        while q and (ignore_window or not self.ack_window or self.unacked <= 2 * self.ack_window):
            size, parts = q.popleft()
            out.append(parts)
            self._queued_bytes -= size
            self.messages_out += 1
            self.bytes_out += size
            if self.ack_window:
                self.unacked += 1
        return out

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet handed out by :meth:`data_to_send`."""
        return self._queued_bytes

    # -- receiving
    def receive_data(self, data: bytes) -> list[object]:
        """Feed bytes; returns channel messages and events.  Raises :class:`ChannelProtocolError`."""
        self.bytes_in += len(data)
        try:
            msgs = self.codec.feed(data)
        except FramingError as err:
            raise ChannelProtocolError(str(err)) from err
        out: list[object] = []
        for m in msgs:
            self.messages_in += 1
            if self.server:
                ev = self._server_base(m)
            else:
                ev = self._client_base(m)
            if ev is not None:
                out.append(ev)
        return out

    def _server_base(self, m: Message) -> object | None:
        t = m.type
        if t == BaseMsgc.ACK_SYNC:
            if len(m.body) < 4:
                raise ChannelProtocolError("short ACK_SYNC")
            (self.client_generation,) = base.ACK_SYNC.unpack_from(m.body)
            return None
        if t == BaseMsgc.ACK:
            if self.ack_window and self.client_generation == self.ack_generation:
                was_open = self.window_open
                self.unacked = max(0, self.unacked - self.ack_window)
                if not was_open and self.window_open:
                    return WindowOpened()
            return None
        if t == BaseMsgc.PONG:
            if len(m.body) < 12:
                raise ChannelProtocolError("short PONG")
            pid, _ts = base.PING.unpack_from(m.body)
            sent = self._pings.pop(pid, None)
            if sent is None:
                return None
            self.last_rtt = time.monotonic() - sent
            return PongReceived(pid, self.last_rtt)
        if t == BaseMsgc.DISCONNECTING:
            reason = base.DISCONNECTING.unpack_from(m.body)[1] if len(m.body) >= 12 else 0
            return PeerDisconnecting(reason)
        if t in (BaseMsgc.MIGRATE_FLUSH_MARK, BaseMsgc.MIGRATE_DATA):
            return None
        return m

    def _client_base(self, m: Message) -> object | None:
        """Client role: count for ACKs, answer SET_ACK and PING."""
        t = m.type
        if t == BaseMsg.SET_ACK:
            gen, window = base.SET_ACK.unpack_from(m.body)
            self._ack_window_client = self._ack_countdown = window
            self.send(BaseMsgc.ACK_SYNC, base.ACK_SYNC.pack(gen))
            return None
        if self._ack_window_client:
            self._ack_countdown -= 1
            if self._ack_countdown <= 0:
                self.send(BaseMsgc.ACK)
                self._ack_countdown = self._ack_window_client
        if t == BaseMsg.PING:
            self.send(BaseMsgc.PONG, m.body[:12])
            return None
        if t == BaseMsg.DISCONNECTING:
            reason = base.DISCONNECTING.unpack_from(m.body)[1] if len(m.body) >= 12 else 0
            return PeerDisconnecting(reason)
        if t in (BaseMsg.NOTIFY, BaseMsg.WAIT_FOR_CHANNELS, BaseMsg.MIGRATE, BaseMsg.MIGRATE_DATA):
            return m if t == BaseMsg.NOTIFY else None
        return m
