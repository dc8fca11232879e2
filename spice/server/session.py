"""Sessions: one per main-channel connection; secondary channels join by session id."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from spice.proto.main import MouseMode

if TYPE_CHECKING:
    from spice.channels.base import Channel

    from .server import SpiceServer


def client_profile(common_caps: frozenset[int], display_caps: frozenset[int] | None = None,
                   transport: str = "tcp") -> str:
    """Which client linked: ``spice-gtk`` over TCP/TLS; over WebSocket our own ``web`` client
    (it announces common cap AUTH_SPICE, 0x0B, and display cap LZ4) or else ``spice-html5``
    (common caps 0x09, never LZ4)."""
    if transport in ("websocket", "ws", "wss", "web"):
        if 1 in common_caps or (display_caps is not None and 5 in display_caps):
            return "web"
        return "spice-html5"
    return "spice-gtk"


class Session:
    """A client's set of channels sharing one ``session_id``."""

    def __init__(self, server: SpiceServer, session_id: int) -> None:
        self.server = server
        self.id = session_id
        self.channels: list[Channel] = []
        guest = server.guest
        self.supported_mouse_modes = MouseMode.SERVER | (MouseMode.CLIENT if guest.supports_absolute_pointer
                                                         else 0)
        self.mouse_mode = MouseMode.CLIENT if self.supported_mouse_modes & MouseMode.CLIENT else MouseMode.SERVER
        self.closed = False

    def add(self, channel: Channel) -> None:
        self.channels.append(channel)

    def remove(self, channel: Channel) -> None:
        if channel in self.channels:
            self.channels.remove(channel)

    def find(self, channel_type: int) -> list[Channel]:
        return [c for c in self.channels if c.channel_type == channel_type]


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: dict[int, Session] = {}

    def create(self, server: SpiceServer) -> Session:
        while True:
            sid = secrets.randbits(32)
            if sid and sid not in self._sessions:
                break
        s = self._sessions[sid] = Session(server, sid)
        return s

    def get(self, session_id: int) -> Session | None:
        return self._sessions.get(session_id)

    def remove(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def __iter__(self):
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)
