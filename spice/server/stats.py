"""Counters the server keeps for operators (exported as Prometheus metrics by ``spice.server.metrics``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ChannelCounters:
    """Totals for one channel type (``main``, ``display``, ...) across all connections."""

    connections_total: int = 0
    connections_open: int = 0
    connections_tls: int = 0  # of connections_total, how many came over TLS
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    ack_stalls: int = 0  # times a connection had to wait for the client's ACK
    last_rtt: float | None = None  # seconds, from the latest PONG


@dataclass
class Stats:
    """All counters of one :class:`~spice.server.server.SpiceServer` (``server.stats``)."""

    channels: dict[str, ChannelCounters] = field(default_factory=dict)
    link_failures: Counter = field(default_factory=Counter)  # by reason name: PERMISSION_DENIED, TIMEOUT, ...
    auth_failures: int = 0
    sessions_total: int = 0
    sessions_open: int = 0
    connections_open: int = 0
    connections_refused: int = 0  # over the connection limit

    #: optional provider of the display pipeline's counters (set by the server)
    pipeline: object = None

    def snapshot(self) -> dict:
        """Plain numbers for exporters (the keys ``spice.server.metrics`` reads)."""
        ch = self.channels
        out = {
            "sessions": self.sessions_open,
            "sessions_total": self.sessions_total,
            "channels": {n: c.connections_open for n, c in ch.items()},
            "bytes_sent": {n: c.bytes_out for n, c in ch.items()},
            "bytes_received": {n: c.bytes_in for n, c in ch.items()},
            "messages_sent": {n: c.messages_out for n, c in ch.items()},
            "messages_received": {n: c.messages_in for n, c in ch.items()},
            "ack_stalls": sum(c.ack_stalls for c in ch.values()),
            "ack_stalls_by_type": {n: c.ack_stalls for n, c in ch.items()},
            "rtt_seconds": {n: c.last_rtt for n, c in ch.items() if c.last_rtt is not None},
            "auth_failures": self.auth_failures,
            "link_failures": dict(self.link_failures),
            "connections_open": self.connections_open,
            "connections_refused": self.connections_refused,
        }
        ps = self.pipeline() if callable(self.pipeline) else None
        if ps is not None:
            out["frames_by_image_type"] = {_image_name(t): n for t, n in getattr(ps, "by_type", {}).items()}
            out["encode_seconds"] = {"all": getattr(ps, "encode_seconds", 0.0)}
        return out

    def channel(self, name: str) -> ChannelCounters:
        c = self.channels.get(name)
        if c is None:
            c = self.channels[name] = ChannelCounters()
        return c


def _image_name(t: int) -> str:
    from spice.proto.display import ImageType

    try:
        return ImageType(t).name
    except ValueError:
        return str(t)
