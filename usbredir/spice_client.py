"""A minimal SPICE client that carries usbredir: ``aiospice usb share spice://HOST:PORT``.

Links the main channel (ticket via :class:`spice.proto.link.ClientLink`), reads MAIN_INIT for the
session id, asks for the channel list (ATTACH_CHANNELS -> CHANNELS_LIST), then links one
usbredir channel (type 9) per device with that session id.  On each usbredir channel the
usbredir byte stream travels in SPICEVMC_DATA (101) messages, or SPICEVMC_COMPRESSED_DATA (102,
LZ4 block) when both sides have ``SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4``; both are accepted and
both are sent (compressed only when it pays, for chunks over 1000 bytes like spice-server).
SET_ACK/ACK and PING/PONG are answered by :class:`spice.proto.channel.ChannelProtocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from urllib.parse import urlsplit

import lz4.block

from spice.proto.channel import ChannelProtocol, ChannelProtocolError, PeerDisconnecting
from spice.proto.enums import ChannelType, LinkError
from spice.proto.headers import Message
from spice.proto.link import ClientLink, LinkFailed, LinkResult
from spice.proto.main import ChannelsList, MainInit, MainMsg, MainMsgc
from usbredir.device import UsbDevice
from usbredir.host import UsbredirHost

log = logging.getLogger(__name__)

SPICEVMC_DATA = 101
SPICEVMC_COMPRESSED_DATA = 102
VMC_CAP_LZ4 = 0
COMPRESS_NONE, COMPRESS_LZ4 = 0, 1
COMPRESS_THRESHOLD = 1000
MAX_VMC_CHUNK = 64 * 1024
MAX_UNCOMPRESSED = 128 * 1024 * 1024 + 1024  # one usbredir packet at most
U8_U32 = struct.Struct("<BI")


class SpiceError(Exception):
    """Link refused or the server broke the protocol."""


class SpiceConnection:
    """One linked SPICE channel over TCP/TLS (client side)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, result: LinkResult,
                 leftover: bytes) -> None:
        self.reader, self.writer = reader, writer
        self.result = result
        self.proto = ChannelProtocol(result.mini_header, server=False, max_message=4 << 20)
        self._pending = self.proto.receive_data(leftover) if leftover else []

    @classmethod
    async def open(cls, host: str, port: int, tls: ssl.SSLContext | None, channel_type: int, channel_id: int,
                   connection_id: int, password: str, channel_caps: frozenset[int] = frozenset(),
                   timeout: float = 15) -> SpiceConnection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None), timeout)
        link = ClientLink(channel_type, channel_id, connection_id, password, channel_caps=channel_caps)
        writer.write(link.data_to_send())
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), timeout)
                if not data:
                    raise SpiceError(f"server closed the connection while linking channel {channel_type}")
                for ev in link.receive_data(data):
                    if isinstance(ev, LinkFailed):
                        raise SpiceError(f"link failed: {ev.code.name} {ev.reason}")
                    if isinstance(ev, LinkResult):
                        if ev.error != LinkError.OK:
                            raise SpiceError(f"link refused: {ev.error.name}")
                        return cls(reader, writer, ev, link.remaining)
                out = link.data_to_send()
                if out:
                    writer.write(out)
        except BaseException:
            writer.close()
            raise

    def send(self, msg_type: int, body: bytes = b"") -> None:
        self.proto.send(msg_type, body)
        self.flush()

    def flush(self) -> None:
        out = self.proto.data_to_send()
        if out and not self.writer.is_closing():
            self.writer.write(out)

    async def messages(self) -> list:
        """Next batch of channel messages/events ([] at EOF).  Base messages are answered."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        while True:
            data = await self.reader.read(1 << 20)
            if not data:
                return []
            try:
                evs = self.proto.receive_data(data)
            except ChannelProtocolError as exc:
                raise SpiceError(str(exc)) from exc
            self.flush()  # ACK / PONG
            if evs:
                return evs

    async def drain(self) -> None:
        if not self.writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


class VmcTransport:
    """usbredir bytes -> SPICEVMC_DATA / SPICEVMC_COMPRESSED_DATA messages on one channel."""

    def __init__(self, conn: SpiceConnection, lz4_ok: bool) -> None:
        self.conn = conn
        self.lz4 = lz4_ok
        self.sent_compressed = 0
        self.sent_plain = 0

    def write(self, chunks: list) -> None:
        data = b"".join(bytes(c) if not isinstance(c, bytes) else c for c in chunks)
        for off in range(0, len(data), MAX_VMC_CHUNK):
            part = data[off:off + MAX_VMC_CHUNK]
            if self.lz4 and len(part) > COMPRESS_THRESHOLD:
                packed = lz4.block.compress(part, store_size=False)
                if len(packed) + 5 < len(part):
                    self.conn.proto.send(SPICEVMC_COMPRESSED_DATA, U8_U32.pack(COMPRESS_LZ4, len(part)) + packed)
                    self.sent_compressed += 1
                    continue
            self.conn.proto.send(SPICEVMC_DATA, part)
            self.sent_plain += 1
        self.conn.flush()

    async def drain(self) -> None:
        await self.conn.drain()

    def close(self) -> None:
        self.conn.close()


def decode_vmc(msg: Message) -> bytes | None:
    """The usbredir bytes inside one server message (None: not a data message)."""
    if msg.type == SPICEVMC_DATA:
        return msg.body
    if msg.type == SPICEVMC_COMPRESSED_DATA:
        if len(msg.body) < 1:
            raise SpiceError("empty SPICEVMC_COMPRESSED_DATA")
        if msg.body[0] == COMPRESS_NONE:
            return msg.body[1:]
        if msg.body[0] != COMPRESS_LZ4 or len(msg.body) < 5:
            raise SpiceError(f"unknown SPICEVMC compression {msg.body[0]}")
        (size,) = struct.unpack_from("<I", msg.body, 1)
        if size > MAX_UNCOMPRESSED:
            raise SpiceError(f"SPICEVMC_COMPRESSED_DATA announces {size} bytes")
        try:
            out = lz4.block.decompress(msg.body[5:], uncompressed_size=size)
        except lz4.block.LZ4BlockError as exc:
            raise SpiceError(f"bad LZ4 data: {exc}") from exc
        if len(out) != size:
            raise SpiceError("LZ4 size mismatch")
        return out
    return None


def parse_target(target: str) -> tuple[str, int, bool]:
    u = urlsplit(target)
    if u.scheme not in ("spice", "spice+tls"):
        raise ValueError(f"target must be spice://HOST:PORT or spice+tls://HOST:PORT, not {target!r}")
    if not u.hostname or not u.port:
        raise ValueError(f"target {target!r} needs a host and a port")
    return u.hostname, u.port, u.scheme == "spice+tls"


def tls_context(ca_file: str | None, insecure: bool = False) -> ssl.SSLContext:
    """Verify the server against ``ca_file`` (else the system CAs); ``insecure`` skips verification."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SpiceUsbSession:
    """Main channel + one usbredir channel per device."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, password: str) -> None:
        self.host, self.port, self.tls, self.password = host, port, tls, password
        self.main: SpiceConnection | None = None
        self.session_id = 0
        self.usbredir_ids: list[int] = []
        self._main_task: asyncio.Task | None = None
        self.closed = asyncio.Event()

    async def connect(self, timeout: float = 15) -> None:
        self.main = await SpiceConnection.open(self.host, self.port, self.tls, ChannelType.MAIN, 0, 0, self.password)
        init = await self._wait_main(MainMsg.INIT, timeout)
        self.session_id = MainInit.parse(init.body).session_id
        self.main.send(MainMsgc.ATTACH_CHANNELS)
        lst = await self._wait_main(MainMsg.CHANNELS_LIST, timeout)
        chans = ChannelsList.parse(lst.body).channels
        self.usbredir_ids = sorted(c.id for c in chans if c.type == ChannelType.USBREDIR)
        self._main_task = asyncio.create_task(self._main_loop())

    async def _wait_main(self, msg_type: int, timeout: float) -> Message:
        assert self.main is not None
        async with asyncio.timeout(timeout):
            while True:
                evs = await self.main.messages()
                if not evs:
                    raise SpiceError("server closed the main channel")
                for i, ev in enumerate(evs):
                    if isinstance(ev, Message) and ev.type == msg_type:
                        self.main._pending[:0] = evs[i + 1:]  # later events stay for the next reader
                        return ev

    async def _main_loop(self) -> None:
        """Keep the main channel alive (PING/ACK answered inside ``messages``)."""
        assert self.main is not None
        try:
            while True:
                evs = await self.main.messages()
                if not evs or any(isinstance(e, PeerDisconnecting) for e in evs):
                    break
        except (SpiceError, ConnectionError) as exc:
            log.info("main channel: %s", exc)
        finally:
            self.closed.set()

    async def open_usbredir(self, channel_id: int) -> tuple[SpiceConnection, bool]:
        conn = await SpiceConnection.open(self.host, self.port, self.tls, ChannelType.USBREDIR, channel_id,
                                          self.session_id, self.password, frozenset({VMC_CAP_LZ4}))
        lz4_ok = VMC_CAP_LZ4 in conn.result.server_channel_caps
        return conn, lz4_ok

    def close(self) -> None:
        if self._main_task is not None:
            self._main_task.cancel()
        if self.main is not None:
            self.main.close()


async def serve_vmc(device: UsbDevice, conn: SpiceConnection, lz4_ok: bool, stop: asyncio.Event,
                    on_event=None, on_host=None) -> str:
    """Export ``device`` on one linked usbredir channel until stop / disconnect."""
    transport = VmcTransport(conn, lz4_ok)
    host = UsbredirHost(device, transport, on_event=on_event)
    if on_host is not None:
        on_host(host)

    async def pump() -> None:
        try:
            while True:
                await host.room()  # back-pressure, as in usbredir.host.serve_stream
                evs = await conn.messages()
                if not evs:
                    host.feed_eof()
                    return
                for ev in evs:
                    if isinstance(ev, PeerDisconnecting):
                        host.feed_eof()
                        return
                    if isinstance(ev, Message):
                        data = decode_vmc(ev)
                        if data is not None:
                            counts[ev.type == SPICEVMC_COMPRESSED_DATA] += 1
                            host.feed(data)
                if host.closed.done():
                    return
        except (SpiceError, ConnectionError) as exc:
            host._shutdown(f"usbredir channel: {exc}")

    counts = [0, 0]  # received plain / compressed
    task = asyncio.create_task(pump())
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stop_task, host.closed}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set() and not host.closed.done():
            await host.detach()
    finally:
        task.cancel()
        stop_task.cancel()
        if not host.closed.done():
            host._shutdown("closed")
        with contextlib.suppress(Exception):
            await device.close()
        conn.close()
        if on_event is not None:
            on_event(f"spicevmc messages: sent {transport.sent_plain} data + {transport.sent_compressed} lz4, "
                     f"received {counts[0]} data + {counts[1]} lz4")
    return host.closed.result()


async def share_spice(target: str, devices: list[UsbDevice], password: str | None, stop: asyncio.Event,
                      status, ca_file: str | None = None, insecure: bool = False) -> int:
    """``aiospice usb share spice://...``: returns an exit code."""
    host, port, use_tls = parse_target(target)
    session = SpiceUsbSession(host, port, tls_context(ca_file, insecure) if use_tls else None, password or "")
    try:
        await session.connect()
    except (SpiceError, OSError, TimeoutError) as exc:
        status.error(f"SPICE connection to {target} failed: {exc}")
        return 1
    status.event(f"SPICE session {session.session_id:#x}: usbredir channels {session.usbredir_ids}")
    if len(session.usbredir_ids) < len(devices):
        status.error(f"the server offers {len(session.usbredir_ids)} usbredir channel(s) for {len(devices)} device(s)")
        session.close()
        return 1
    try:
        tasks = []
        for dev, cid in zip(devices, session.usbredir_ids, strict=False):
            conn, lz4_ok = await session.open_usbredir(cid)
            status.event(f"usbredir channel {cid} linked (lz4 {'on' if lz4_ok else 'off'}) for {dev.product}")
            tasks.append(asyncio.create_task(serve_vmc(dev, conn, lz4_ok, stop, status.event, status.hosts.append)))
        main_gone = asyncio.create_task(session.closed.wait())
        await asyncio.wait({*tasks, main_gone}, return_when=asyncio.FIRST_COMPLETED)
        if main_gone.done():
            stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            status.event(f"session ended: {r}")
        main_gone.cancel()
        return 0
    except (SpiceError, OSError) as exc:
        status.error(f"SPICE error: {exc}")
        return 1
    finally:
        session.close()
