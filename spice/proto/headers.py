"""SPICE data headers (mini 6 bytes, full 18 bytes) and a sans-I/O message framer."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import construct as c

MiniDataHeader = c.Struct("type" / c.Int16ul, "size" / c.Int32ul)
DataHeader = c.Struct("serial" / c.Int64ul, "type" / c.Int16ul, "size" / c.Int32ul, "sub_list" / c.Int32ul)

# Hot path: precompiled structs with the same layout as the declarations above.
MINI = struct.Struct("<HI")
FULL = struct.Struct("<QHII")
assert MINI.size == MiniDataHeader.sizeof() and FULL.size == DataHeader.sizeof()


class FramingError(Exception):
    """The peer sent a message the framer refuses (too large, bad sub-list)."""


@dataclass(slots=True)
class Message:
    type: int
    body: bytes
    serial: int


class HeaderCodec:
    """Builds headers for outgoing messages and splits incoming bytes into messages.

    ``mini`` selects the 6-byte header.  Serials count from 1 in each direction.
    ``max_message`` bounds the body size of incoming messages (bigger -> :class:`FramingError`).
    """

    def __init__(self, mini: bool, max_message: int = 1 << 20) -> None:
        self.mini = mini
        self.max_message = max_message
        self.out_serial = 0
        self.in_serial = 0
        self._buf = bytearray()
        self._head = MINI if mini else FULL

    def header(self, msg_type: int, size: int) -> bytes:
        self.out_serial += 1
        if self.mini:
            return MINI.pack(msg_type, size)
        return FULL.pack(self.out_serial, msg_type, size, 0)

    def encode(self, msg_type: int, body: bytes) -> bytes:
        return self.header(msg_type, len(body)) + body

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return the complete messages now available."""
        buf = self._buf
        buf += data
        out: list[Message] = []
        hsize = self._head.size
        pos = 0
        n = len(buf)
        while n - pos >= hsize:
            if self.mini:
                mtype, size = MINI.unpack_from(buf, pos)
            else:
                _serial, mtype, size, sub_list = FULL.unpack_from(buf, pos)
                if sub_list:
                    raise FramingError("client messages must not carry sub-message lists")
            if size > self.max_message:
                raise FramingError(f"message type {mtype} announces {size} bytes (limit {self.max_message})")
            if n - pos < hsize + size:
                break
            self.in_serial += 1
            out.append(Message(mtype, bytes(buf[pos + hsize:pos + hsize + size]), self.in_serial))
            pos += hsize + size
        if pos:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)
