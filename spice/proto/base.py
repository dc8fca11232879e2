"""Messages common to every channel (spice.md §4): SET_ACK, PING/PONG, NOTIFY, DISCONNECTING."""

from __future__ import annotations

import struct

import construct as c

SetAck = c.Struct("generation" / c.Int32ul, "window" / c.Int32ul)
Ping = c.Struct("id" / c.Int32ul, "timestamp" / c.Int64ul)  # + optional filler to the end
Pong = Ping
AckSync = c.Struct("generation" / c.Int32ul)
Disconnecting = c.Struct("time_stamp" / c.Int64ul, "reason" / c.Int32ul)
Notify = c.Struct(
    "time_stamp" / c.Int64ul,
    "severity" / c.Int32ul,
    "visibility" / c.Int32ul,
    "what" / c.Int32ul,
    "message" / c.Prefixed(c.Int32ul, c.GreedyBytes),
)

SET_ACK = struct.Struct("<II")
PING = struct.Struct("<IQ")
ACK_SYNC = struct.Struct("<I")
DISCONNECTING = struct.Struct("<QI")


def build_notify(time_stamp: int, severity: int, visibility: int, what: int, text: str) -> bytes:
    """NOTIFY body; like spice-server, a NUL follows the text without being counted."""
    return Notify.build(dict(time_stamp=time_stamp, severity=severity, visibility=visibility, what=what,
                             message=text.encode())) + b"\0"
