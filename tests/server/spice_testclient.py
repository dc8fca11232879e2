"""A small asyncio SPICE client for server tests, built on the sans-I/O link and channel protocol."""

from __future__ import annotations

import asyncio
import struct

import numpy as np

from spice.proto.channel import ChannelProtocol
from spice.proto.display import DRAW_COPY, DisplayMsg, ImageType
from spice.proto.headers import Message
from spice.proto.link import ClientLink, LinkResult


class LinkRefused(Exception):
    def __init__(self, code) -> None:
        super().__init__(code.name)
        self.code = code


class TestChannel:
    __test__ = False

    def __init__(self, reader, writer, proto: ChannelProtocol, result: LinkResult) -> None:
        self.reader, self.writer, self.proto, self.result = reader, writer, proto, result
        self.messages: list[Message] = []
        self.events: list[object] = []  # PeerDisconnecting, ...
        self.auto_ack = True

    @classmethod
    async def connect(cls, port: int, channel_type: int, channel_id: int = 0, connection_id: int = 0,
                      password: str = "pw", channel_caps=frozenset(), common_caps=None, ssl=None,
                      host: str = "127.0.0.1") -> TestChannel:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
        kw = {} if common_caps is None else {"common_caps": common_caps}
        link = ClientLink(channel_type, channel_id, connection_id, password, channel_caps=channel_caps, **kw)
        writer.write(link.data_to_send())
        while True:
            data = await asyncio.wait_for(reader.read(4096), 10)
            if not data:
                writer.close()
                raise ConnectionError("closed during link")
            for ev in link.receive_data(data):
                if isinstance(ev, LinkResult):
                    if ev.error:
                        writer.close()
                        raise LinkRefused(ev.error)
                    proto = ChannelProtocol(ev.mini_header, server=False, max_message=64 << 20)
                    ch = cls(reader, writer, proto, ev)
                    if link.remaining:
                        ch._feed(link.remaining)
                    return ch
                if hasattr(ev, "code"):  # LinkFailed
                    raise LinkRefused(ev.code)
            out = link.data_to_send()
            if out:
                writer.write(out)

    def _feed(self, data: bytes) -> None:
        if not self.auto_ack:
            self.proto._ack_window_client = 0
        for m in self.proto.receive_data(data):
            if isinstance(m, Message):
                self.messages.append(m)
            else:
                self.events.append(m)
        out = self.proto.data_to_send()
        if out:
            self.writer.write(out)

    def send(self, msg_type: int, body: bytes = b"") -> None:
        self.proto.send(msg_type, body)
        self.writer.write(self.proto.data_to_send())

    async def wait_for(self, msg_type: int, timeout: float = 10.0, count: int = 1) -> Message:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            found = [m for m in self.messages if m.type == msg_type]
            if len(found) >= count:
                return found[count - 1]
            left = end - loop.time()
            if left <= 0:
                raise TimeoutError(f"no message {msg_type} (got {[m.type for m in self.messages]})")
            data = await asyncio.wait_for(self.reader.read(1 << 20), left)
            if not data:
                raise ConnectionError(f"closed while waiting for {msg_type}")
            self._feed(data)

    async def read_until_closed(self, timeout: float = 10.0) -> bytes:
        got = bytearray()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 20), max(0.01, end - loop.time()))
            except ConnectionResetError:  # closed with our unread bytes pending: also "closed"
                return bytes(got)
            if not data:
                return bytes(got)
            got += data
            self._feed(data)

    async def pump(self, timeout: float = 0.5) -> bool:
        """Read whatever arrives within ``timeout``; False if nothing came."""
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 20), timeout)
        except TimeoutError:
            return False
        if not data:
            raise ConnectionError("closed")
        self._feed(data)
        return True

    def close(self) -> None:
        self.writer.close()


class Canvas:
    """Applies DRAW_COPY (BITMAP/LZ4 via spice.display.decode if present), DRAW_FILL, COPY_BITS."""

    def __init__(self, width: int, height: int) -> None:
        self.fb = np.zeros((height, width, 4), np.uint8)

    def apply(self, m: Message) -> None:
        b = m.body
        if m.type == DisplayMsg.DRAW_COPY:
            f = DRAW_COPY.unpack_from(b)
            top, left, bottom, right = f[1:5]
            img = b[f[6]:]
            itype = img[8]
            w, h = struct.unpack_from("<II", img, 10)
            assert (w, h) == (right - left, bottom - top)
            if itype == ImageType.BITMAP:
                fmt, flags, bw, bh, stride, _pal = struct.unpack_from("<BBIIII", img, 18)
                assert fmt == 8 and flags & 4 and stride == 4 * w
                px = np.frombuffer(img, np.uint8, h * stride, 36).reshape(h, w, 4)
            else:
                from spice.display.decode import decode_image

                px = decode_image(img)[1]
                assert px is not None, "FROM_CACHE needs a cache-aware canvas"
            self.fb[top:bottom, left:right, :3] = px[..., :3]
        elif m.type == DisplayMsg.DRAW_FILL:
            _sid, top, left, bottom, right, clip = struct.unpack_from("<IiiiiB", b)
            boxes, at = [(top, left, bottom, right)], 21
            if clip == 1:  # RECTS, inline: the box ∩ each rect
                n = struct.unpack_from("<I", b, at)[0]
                boxes = [(max(top, t), max(left, lf), min(bottom, bt), min(right, rt))
                         for t, lf, bt, rt in struct.iter_unpack("<iiii", b[at + 4:at + 4 + 16 * n])]
                at += 4 + 16 * n
            _bt, color = struct.unpack_from("<BI", b, at)
            for top, left, bottom, right in boxes:
                if top < bottom and left < right:
                    self.fb[top:bottom, left:right, :3] = np.frombuffer(color.to_bytes(4, "little"), np.uint8)[:3]
        elif m.type == DisplayMsg.COPY_BITS:
            _sid, top, left, bottom, right, _clip, sx, sy = struct.unpack_from("<IiiiiBii", b)
            self.fb[top:bottom, left:right] = self.fb[sy:sy + bottom - top, sx:sx + right - left].copy()
