"""Hostile and broken clients over real TCP: each ends in a link error or a closed connection with a
log line, memory stays bounded, and a healthy client on the same server is unaffected."""

from __future__ import annotations

import asyncio
import logging
import os
import struct

import pytest
from spice_testclient import TestChannel
from spice_testguest import PaintGuest

from spice.guests.base import Rect
from spice.proto import main as pm
from spice.proto.display import DisplayMsg, DisplayMsgc
from spice.proto.enums import ChannelType, LinkError
from spice.proto.link import ServerKey, build_link_header, build_link_mess
from spice.server.config import ServerConfig
from spice.server.server import SpiceServer

KEY = ServerKey()
DISPLAY_INIT = struct.pack("<BqBi", 1, 1 << 20, 0, 0)


@pytest.fixture
async def server(caplog):
    caplog.set_level(logging.INFO, logger="spice")
    srv = SpiceServer(PaintGuest(), ServerConfig(port=0, password="pw", ping_interval=0, link_timeout=1.0,
                                                 ack_timeout=1.0, max_connections=40), key=KEY)
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def healthy(server):
    """A well-behaved session that must keep working while others misbehave."""
    main = await TestChannel.connect(server.ports["plain"], ChannelType.MAIN)
    init = pm.MainInit.parse((await main.wait_for(pm.MainMsg.INIT)).body)
    yield main, init
    main.close()


async def still_healthy(main: TestChannel, n: int = 1) -> None:
    main.send(pm.MainMsgc.ATTACH_CHANNELS)
    await main.wait_for(pm.MainMsg.CHANNELS_LIST, count=n, timeout=5)


async def raw(server, data: bytes, read_timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection; return everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["plain"])
    writer.write(data)
    got = bytearray()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        writer.close()
    return bytes(got)


def link_error(reply: bytes) -> int:
    assert reply[:4] == b"REDQ" and len(reply) == 16 + 178, reply[:32]
    return struct.unpack_from("<I", reply, 16)[0]


def logged(caplog, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("data,code,log_text", [
    (b"\x16\x03\x01\x02" + os.urandom(200), LinkError.INVALID_MAGIC, "bad magic"),  # TLS hello on the plain port
    (b"REDQ" + struct.pack("<III", 3, 0, 22), LinkError.VERSION_MISMATCH, "VERSION_MISMATCH"),
    (b"REDQ" + struct.pack("<III", 2, 2, 0xFFFFFFF0), LinkError.INVALID_DATA, "link message size"),
    (build_link_header(18 + 8) + struct.pack("<IBBIII", 0, 1, 0, 0x7FFFFFFF, 0, 18) + bytes(8),
     LinkError.INVALID_DATA, "too many capability words"),
])
async def test_bad_link_answers_error_and_closes(server, healthy, caplog, data, code, log_text):
    assert link_error(await raw(server, data)) == code
    assert logged(caplog, log_text)
    await still_healthy(healthy[0])


async def test_truncated_link_closes_with_log(server, healthy, caplog):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["plain"])
    writer.write(build_link_mess(0, 1, 0, {0, 3}, set())[:25])
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    for _ in range(50):
        if logged(caplog, "connection closed during link"):
            break
        await asyncio.sleep(0.02)
    assert logged(caplog, "connection closed during link")
    await still_healthy(healthy[0])


async def test_link_that_never_completes_times_out(server, healthy, caplog):
    # header promises 26 bytes, only 4 come: the server waits link_timeout (1 s), then closes
    got = await raw(server, build_link_header(26) + b"\0\0\0\0", read_timeout=5)
    assert got == b""
    assert logged(caplog, "link not completed within") and server.stats.link_failures["TIMEOUT"] == 1
    # a client that never sends a byte
    assert await raw(server, b"", read_timeout=5) == b""
    assert server.stats.link_failures["TIMEOUT"] == 2
    await still_healthy(healthy[0])


async def test_huge_size_field_after_link_closes(server, healthy, caplog):
    _, init = healthy
    inp = await TestChannel.connect(server.ports["plain"], ChannelType.INPUTS, connection_id=init.session_id)
    inp.writer.write(struct.pack("<HI", 101, 0xFFFFFFFF))  # KEY_DOWN announcing 4 GiB
    await inp.read_until_closed(5)
    assert logged(caplog, "announces 4294967295 bytes")
    await still_healthy(healthy[0])


async def test_oversized_message_closes(server, healthy, caplog):
    main, _ = healthy
    extra = await TestChannel.connect(server.ports["plain"], ChannelType.MAIN)
    extra.writer.write(struct.pack("<HI", pm.MainMsgc.AGENT_DATA, 100_000) + bytes(100_000))
    await extra.read_until_closed(5)
    assert logged(caplog, "limit 65536")
    await still_healthy(main)


@pytest.mark.parametrize("channel_type,msg_type", [(ChannelType.MAIN, 999), (ChannelType.INPUTS, 150),
                                                   (ChannelType.DISPLAY, 7), (ChannelType.CURSOR, 101)])
async def test_unknown_message_type_closes(server, healthy, caplog, channel_type, msg_type):
    _, init = healthy
    cid = 0 if channel_type == ChannelType.MAIN else init.session_id
    ch = await TestChannel.connect(server.ports["plain"], channel_type, connection_id=cid)
    ch.send(msg_type, b"abc")
    await ch.read_until_closed(5)
    assert logged(caplog, f"unknown message type {msg_type}")
    await still_healthy(healthy[0])


async def test_short_message_body_closes(server, healthy, caplog):
    _, init = healthy
    inp = await TestChannel.connect(server.ports["plain"], ChannelType.INPUTS, connection_id=init.session_id)
    inp.send(112, b"\1\2")  # MOUSE_POSITION needs 11 bytes
    await inp.read_until_closed(5)
    assert logged(caplog, "need 11")
    await still_healthy(healthy[0])


@pytest.mark.parametrize("body,need", [(b"", "need 1"), (b"\x05\x03\x01", "need 6")])
async def test_short_preferred_video_codec_list_closes(server, healthy, caplog, body, need):
    _, init = healthy
    disp = await TestChannel.connect(server.ports["plain"], ChannelType.DISPLAY, connection_id=init.session_id)
    disp.send(DisplayMsgc.PREFERRED_VIDEO_CODEC_TYPE, body)  # u8 count, then that many codec bytes
    await disp.read_until_closed(5)
    assert logged(caplog, need)
    await still_healthy(healthy[0])


async def test_client_that_stops_acking_is_bounded_then_dropped(server, healthy, caplog):
    """A display client that never ACKs gets at most 2*window+1 messages while the guest keeps
    drawing, nothing piles up in the server, it is dropped after ack_timeout, and a second display
    client keeps receiving every frame meanwhile."""
    guest: PaintGuest = server.guest
    main, init = healthy
    stuck = await TestChannel.connect(server.ports["plain"], ChannelType.DISPLAY, connection_id=init.session_id)
    stuck.auto_ack = False
    stuck.send(DisplayMsgc.INIT, DISPLAY_INIT)
    good = await TestChannel.connect(server.ports["plain"], ChannelType.DISPLAY, connection_id=init.session_id)
    good.send(DisplayMsgc.INIT, DISPLAY_INIT)
    await good.wait_for(DisplayMsg.MARK)
    stuck_conn = next(c for c in server.connections if c.channel is not None and c.channel.name == "display")
    for i in range(200):  # many separate frames, each a separate small change
        guest.noise(Rect((i * 7) % 300, (i * 3) % 180, (i * 7) % 300 + 16, (i * 3) % 180 + 16), seed=i)
        if i % 20 == 0:
            await asyncio.sleep(0.01)
            await good.pump(0.01)
            await stuck.pump(0.01)
    window = server.config.ack_window
    assert len(stuck.messages) <= 2 * window + 1  # SET_ACK counts as one of the unacked
    assert stuck_conn.protocol.pending_bytes < 1 << 20
    # the good client sees the last frame
    from spice_testclient import Canvas

    canvas = Canvas(320, 200)
    for _ in range(40):
        for m in good.messages:
            canvas.apply(m)
        good.messages.clear()
        if (canvas.fb[..., :3] == guest.fb[..., :3]).all():
            break
        await good.pump(0.2)
    assert (canvas.fb[..., :3] == guest.fb[..., :3]).all()
    await stuck.read_until_closed(5)
    assert logged(caplog, "ACK window exhausted") or logged(caplog, "no ACK for")
    assert server.stats.channel("display").ack_stalls >= 1
    await still_healthy(main)


async def test_many_connections_at_once(server, healthy, caplog):
    """More connections than max_connections: extras are refused with a log line; the healthy
    session keeps working and a new client can link once the crowd is gone."""
    conns = await asyncio.gather(*[asyncio.open_connection("127.0.0.1", server.ports["plain"])
                                   for _ in range(80)])
    for i, (_r, w) in enumerate(conns):
        if i % 2:
            w.write(b"REDQ")  # start a link and stall; the others send nothing at all
    await asyncio.sleep(0.3)
    assert server.stats.connections_open <= server.config.max_connections
    assert len(server._tasks) <= server.config.max_connections
    assert server.stats.connections_refused >= 80 - server.config.max_connections
    assert logged(caplog, "connections open (limit)")
    await still_healthy(healthy[0])
    for _r, w in conns:
        w.close()
    await asyncio.sleep(0.3)
    other = await TestChannel.connect(server.ports["plain"], ChannelType.MAIN)
    await other.wait_for(pm.MainMsg.INIT)
    other.close()


async def test_client_that_stops_reading_the_socket_is_dropped(server, healthy, caplog):
    """A display client that stops reading its socket: the TCP buffers fill, nothing piles up in
    the server (the pipeline coalesces), and the client is dropped after ack_timeout."""
    guest: PaintGuest = server.guest
    _main, init = healthy
    disp = await TestChannel.connect(server.ports["plain"], ChannelType.DISPLAY, connection_id=init.session_id)
    disp.send(DisplayMsgc.INIT, DISPLAY_INIT)
    await disp.wait_for(DisplayMsg.MARK)
    conn = next(c for c in server.connections if c.channel is not None and c.channel.name == "display")
    # from now on never read; full-screen noise is incompressible (~256 KB per frame)
    for i in range(200):
        guest.noise(Rect(0, 0, 320, 200), seed=1000 + i)
        await asyncio.sleep(0.02)
        assert conn.protocol.pending_bytes <= 2 << 20
        if logged(caplog, "did not read") or logged(caplog, "no ACK for"):
            break
    # whichever comes first: the TCP send blocking or the ACK window staying full
    assert logged(caplog, "did not read") or logged(caplog, "no ACK for")
    for _ in range(100):
        if conn not in server.connections:
            break
        await asyncio.sleep(0.02)
    assert conn not in server.connections
    disp.close()
    await still_healthy(healthy[0])
