"""What every channel module implements; the connection (spice/server/connection.py) drives it.

A channel turns protocol messages into guest calls (:meth:`Channel.on_message`) and guest
events into messages.  Messages are queued with :meth:`Channel.send`.  Sources that can
produce without bound (display updates, cursor moves) are *pulled*: the connection calls
:meth:`Channel.produce` only while the ACK window has room and :meth:`Channel.has_pending`
says there is something to send, so a slow client coalesces instead of queueing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from spice.proto.headers import Message

if TYPE_CHECKING:
    from spice.proto.link import LinkRequest
    from spice.server.connection import ChannelConnection
    from spice.server.server import SpiceServer
    from spice.server.session import Session

log = logging.getLogger("spice.channels")


class ChannelError(Exception):
    """The client sent something this channel cannot accept; the connection is closed."""


class Channel:
    channel_type: ClassVar[int]
    name: ClassVar[str] = "channel"
    #: start with SET_ACK {1, ack_window}; every message then waits for room in the window.
    #: (spice-server does this on display/cursor only; spice-gtk, spice-html5, our web client and
    #: our own client answer SET_ACK on any channel, so we bound every channel the same way.)
    flow_control: ClassVar[bool] = True
    #: PING every ``ping_interval`` for a round-trip figure (main only: one per session is enough, and
    #: an idle server then wakes for no other channel's timer)
    pings: ClassVar[bool] = False
    #: largest client message body accepted
    max_message: ClassVar[int] = 64 * 1024
    #: client message types this channel knows (base messages are handled by the protocol);
    #: anything else closes the connection
    known_messages: ClassVar[frozenset[int]] = frozenset()

    @classmethod
    def channel_ids(cls, server: SpiceServer) -> list[int]:
        """Ids of this type that exist: listed in CHANNELS_LIST and accepted at link."""
        return [0]

    @classmethod
    def offered_to(cls, profile: str) -> bool:
        """Whether CHANNELS_LIST shows this type to a client of ``profile`` (e.g. hide usbredir
        from spice-html5, which would open it and log every message as unimplemented)."""
        return True

    @classmethod
    def server_caps(cls, server: SpiceServer) -> frozenset[int]:
        """Channel caps announced in the link reply."""
        return frozenset()

    def __init__(self, conn: ChannelConnection, session: Session, request: LinkRequest) -> None:
        self.conn = conn
        self.session = session
        self.server = session.server
        self.request = request
        self.channel_id = request.channel_id
        self.common_caps = request.common_caps
        self.client_caps = request.channel_caps

    # -- called by the connection
    def start(self) -> None:
        """The link completed; send the channel's first messages."""

    def on_message(self, msg: Message) -> None:
        raise ChannelError(f"unexpected message type {msg.type}")

    def has_pending(self) -> bool:
        return False

    def produce(self) -> None:
        """Queue more messages (called while the ACK window is open and :meth:`has_pending`)."""

    def close(self) -> None:
        """The connection ended: drop guest listeners and pipeline clients."""

    # -- helpers
    def send(self, msg_type: int, body: bytes = b"") -> None:
        self.conn.protocol.send(msg_type, body)
        self.conn.wakeup()

    def wakeup(self) -> None:
        self.conn.wakeup()

    @property
    def window_open(self) -> bool:
        return self.conn.protocol.window_open

    @property
    def room(self) -> int:
        """Messages that can still be queued without waiting for the client's ACK."""
        return self.conn.protocol.room

    def check_size(self, msg: Message, size: int) -> None:
        if len(msg.body) < size:
            raise ChannelError(f"{self.name} message {msg.type}: {len(msg.body)} bytes, need {size}")
