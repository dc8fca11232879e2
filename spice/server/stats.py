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

    def channel(self, name: str) -> ChannelCounters:
        c = self.channels.get(name)
        if c is None:
            c = self.channels[name] = ChannelCounters()
        return c
