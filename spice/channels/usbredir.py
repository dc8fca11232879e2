"""USBREDIR channel (spicevmc, type 9): a usbredir byte stream in SPICEVMC_DATA / COMPRESSED_DATA.

The client (spice-gtk, ``aiospice usb share spice://``) is the usb-host; this side runs the
usb-guest role (:class:`usbredir.redirected.GuestConnection`, fed with :meth:`feed`) and hands
attached devices to the server's USB subsystem (``server.usb``, :mod:`spice.server.usb`).

Message boundaries carry no meaning (spice.md §9.1).  COMPRESSED_DATA is one plain LZ4 block; we
send it only when the client announced ``SPICEVMC_CAP_DATA_COMPRESS_LZ4``, only for chunks over
1000 bytes and only when it shrinks them (as spice-server).  Like spice-server's spicevmc channels
this one sends no SET_ACK: the TCP stream is the back-pressure (spice.md §4.3).
"""

from __future__ import annotations

import struct

import lz4.block

from spice.proto.enums import ChannelType
from spice.proto.headers import Message

from .base import Channel, ChannelError, log

SPICEVMC_DATA = 101
SPICEVMC_COMPRESSED_DATA = 102
CAP_DATA_COMPRESS_LZ4 = 0
COMPRESS_NONE, COMPRESS_LZ4 = 0, 1
COMPRESS_THRESHOLD = 1000
CHUNK = 64 * 1024  # spice-server's BUF_SIZE-sized chunks
MAX_DATA = 4 << 20  # one message (largest usbredir packet a client sends in one piece + slack)
U8_U32 = struct.Struct("<BI")


def decode(msg: Message) -> bytes:
    """The usbredir bytes in one client message; ChannelError on bad compression."""
    if msg.type == SPICEVMC_DATA:
        return msg.body
    body = msg.body
    if not body:
        raise ChannelError("empty SPICEVMC_COMPRESSED_DATA")
    if body[0] == COMPRESS_NONE:
        return body[1:]
    if body[0] != COMPRESS_LZ4 or len(body) < 5:
        raise ChannelError(f"SPICEVMC_COMPRESSED_DATA: unknown compression {body[0]}")
    (_, size) = U8_U32.unpack_from(body)
    if size > MAX_DATA:
        raise ChannelError(f"SPICEVMC_COMPRESSED_DATA announces {size} bytes")
    try:
        out = lz4.block.decompress(body[5:], uncompressed_size=size)
    except lz4.block.LZ4BlockError as exc:
        raise ChannelError(f"SPICEVMC_COMPRESSED_DATA: bad LZ4 block ({exc})") from None
    if len(out) != size:
        raise ChannelError("SPICEVMC_COMPRESSED_DATA: size mismatch")
    return out


class _VmcWriter:
    """The writer GuestConnection writes usbredir bytes to: chunks become SPICEVMC messages."""

    def __init__(self, channel: UsbredirChannel) -> None:
        self.channel = channel
        self.lz4 = CAP_DATA_COMPRESS_LZ4 in channel.client_caps
        self.sent_compressed = 0

    def writelines(self, chunks) -> None:
        if self.is_closing():
            return
        ch = self.channel
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        view = memoryview(data)
        for off in range(0, len(view), CHUNK):
            part = view[off:off + CHUNK]
            if self.lz4 and len(part) > COMPRESS_THRESHOLD:
                packed = lz4.block.compress(part, store_size=False)
                if len(packed) + U8_U32.size < len(part):
                    ch.conn.protocol.send_parts(SPICEVMC_COMPRESSED_DATA,
                                                [U8_U32.pack(COMPRESS_LZ4, len(part)), packed])
                    self.sent_compressed += 1
                    continue
            ch.conn.protocol.send(SPICEVMC_DATA, bytes(part))
        ch.wakeup()

    def is_closing(self) -> bool:
        return self.channel.conn._closing

    def close(self) -> None:
        self.channel.conn.close("usbredir connection closed")


class UsbredirChannel(Channel):
    channel_type = ChannelType.USBREDIR
    name = "usbredir"
    flow_control = False  # spice-server sends no SET_ACK on spicevmc channels
    max_message = MAX_DATA + 64
    known_messages = frozenset({SPICEVMC_DATA, SPICEVMC_COMPRESSED_DATA})

    @classmethod
    def channel_ids(cls, server) -> list[int]:
        return list(range(server.config.usb_channels)) if getattr(server, "usb", None) is not None else []

    @classmethod
    def offered_to(cls, profile: str) -> bool:
        return profile == "spice-gtk"  # browsers have no USB: spice-html5 would log every message

    @classmethod
    def server_caps(cls, server) -> frozenset[int]:
        return frozenset({CAP_DATA_COMPRESS_LZ4})

    def start(self) -> None:
        self.writer = _VmcWriter(self)
        self.label = f"spice:{self.channel_id}"
        self.guest_conn = self.server.usb.connection(self.writer, self.label, self.conn.name)

    def on_message(self, msg: Message) -> None:
        data = decode(msg)
        if data:
            self.guest_conn.feed(data)
            if self.guest_conn.closed.done():
                log.warning("%s: usbredir stream ended: %s", self.conn.name, self.guest_conn.closed.result())
                self.conn.close(f"usbredir: {self.guest_conn.closed.result()}")

    def close(self) -> None:
        gc = getattr(self, "guest_conn", None)
        if gc is not None:
            self.server.usb.connection_closed(gc)
