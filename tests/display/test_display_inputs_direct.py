"""Inputs on plain TCP are parsed in the socket's callback (no read-loop turn): keys reach the guest,
bad input still closes the connection, a closing client still ends the channel."""

from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from spice_testclient import TestChannel  # noqa: E402
from spice_testguest import PaintGuest  # noqa: E402

from spice.proto import main as pm  # noqa: E402
from spice.proto.enums import ChannelType  # noqa: E402
from spice.proto.inputs import InputsMsg, InputsMsgc  # noqa: E402
from spice.proto.link import ServerKey  # noqa: E402
from spice.server.config import ServerConfig  # noqa: E402
from spice.server.connection import _DirectRead  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

KEY = ServerKey()


@pytest.fixture
async def server():
    srv = SpiceServer(PaintGuest(), ServerConfig(port=0, password="pw", ping_interval=0), key=KEY)
    await srv.start()
    yield srv
    await srv.close()


async def _inputs(srv):
    main = await TestChannel.connect(srv.ports["plain"], ChannelType.MAIN, channel_caps={1, 2})
    init = pm.MainInit.parse((await main.wait_for(pm.MainMsg.INIT)).body)
    inp = await TestChannel.connect(srv.ports["plain"], ChannelType.INPUTS, connection_id=init.session_id)
    await inp.wait_for(InputsMsg.INIT)
    conn = next(c for c in srv.connections if c.channel is not None and c.channel.name == "inputs")
    return main, inp, conn


async def _until(cond, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond() and loop.time() < end:
        await asyncio.sleep(0.01)
    return cond()


async def test_keys_parsed_in_transport_callback(server):
    main, inp, conn = await _inputs(server)
    assert isinstance(conn.writer.transport.get_protocol(), _DirectRead)
    calls = []
    orig = conn._feed
    conn._feed = lambda data: (calls.append(asyncio.current_task()), orig(data))[1]
    # one segment carrying a key press split over two writes: the parser keeps the partial message
    raw = struct.pack("<HI", InputsMsgc.KEY_DOWN, 4) + struct.pack("<I", 0x1E)
    inp.writer.write(raw[:5])
    await inp.writer.drain()
    await asyncio.sleep(0.05)
    inp.writer.write(raw[5:] + struct.pack("<HI", InputsMsgc.KEY_UP, 4) + struct.pack("<I", 0x9E))
    assert await _until(lambda: len(server.guest.keys) >= 2)
    assert server.guest.keys == [(0x1E, True), (0x1E, False)]
    assert calls and all(t is None for t in calls)  # straight from the transport, not from a task
    main.close()
    inp.close()


async def test_junk_closes_and_client_close_ends_channel(server):
    main, inp, conn = await _inputs(server)
    inp.writer.write(struct.pack("<HI", InputsMsgc.KEY_DOWN, 1 << 30))  # message far over max_message
    await inp.read_until_closed(5)
    assert await _until(lambda: conn not in server.connections)
    assert "protocol error" in (conn.close_reason or "")
    main2, inp2, conn2 = await _inputs(server)
    inp2.close()
    assert await _until(lambda: conn2 not in server.connections)
    assert conn2.close_reason == "client closed the connection"
    main.close()
    main2.close()


async def _ws_channel(port: int, channel_type: int, connection_id: int = 0):
    """A SPICE channel over a WebSocket of the server's plain port: (websocket, protocol)."""
    from websockets.asyncio.client import connect

    from spice.proto.channel import ChannelProtocol
    from spice.proto.link import ClientLink, LinkResult

    ws = await connect(f"ws://127.0.0.1:{port}/", subprotocols=["binary"], origin=f"http://127.0.0.1:{port}")
    link = ClientLink(channel_type, 0, connection_id, "pw")
    await ws.send(link.data_to_send())
    while True:
        for ev in link.receive_data(await asyncio.wait_for(ws.recv(), 10)):
            if isinstance(ev, LinkResult):
                assert not ev.error
                return ws, ChannelProtocol(ev.mini_header, server=False)
        out = link.data_to_send()
        if out:
            await ws.send(out)


async def test_websocket_inputs_fed_directly(server):
    main = await TestChannel.connect(server.ports["plain"], ChannelType.MAIN, channel_caps={1, 2})
    init = pm.MainInit.parse((await main.wait_for(pm.MainMsg.INIT)).body)
    ws, proto = await _ws_channel(server.ports["plain"], ChannelType.INPUTS, init.session_id)
    try:
        assert await _until(lambda: any(c.channel is not None and c.channel.name == "inputs"
                                        for c in server.connections))
        conn = next(c for c in server.connections if c.channel is not None and c.channel.name == "inputs")
        assert conn.transport == "websocket"
        assert conn.reader.feed_data.__self__.__class__ is _DirectRead  # payloads go straight to the parser
        proto.send(InputsMsgc.KEY_DOWN, struct.pack("<I", 0x1E))
        proto.send(InputsMsgc.KEY_UP, struct.pack("<I", 0x9E))
        await ws.send(proto.data_to_send())
        assert await _until(lambda: len(server.guest.keys) >= 2)
        assert server.guest.keys == [(0x1E, True), (0x1E, False)]
    finally:
        await ws.close()
    assert await _until(lambda: conn not in server.connections)
    assert conn.close_reason == "client closed the connection"
    main.close()


async def test_key_batch_flushes_a_lazy_guest_at_once(server):
    guest = server.guest
    flushed: list[int] = []
    guest.flush = lambda: flushed.append(len(guest.keys))  # a guest that renders on flush()
    main, inp, conn = await _inputs(server)
    raw = b"".join(struct.pack("<HI", t, 4) + struct.pack("<I", code)
                   for t, code in ((InputsMsgc.KEY_DOWN, 0x1E), (InputsMsgc.KEY_UP, 0x9E)))
    inp.writer.write(raw)  # one batch, two keys: one flush, after both
    assert await _until(lambda: flushed)
    assert flushed == [2]
    inp.send(InputsMsgc.MOUSE_POSITION, struct.pack("<IIHB", 5, 5, 0, 0))
    assert await _until(lambda: guest.pointer)
    assert flushed == [2]  # pointer only: the guest's own scheduling
    main.close()
    inp.close()


async def test_key_batch_prefers_flush_pending(server):
    """A guest with ``flush_pending`` (render only if something is pending) gets that, not ``flush``."""
    guest = server.guest
    calls: list[str] = []
    guest.flush = lambda: calls.append("flush")
    guest.flush_pending = lambda: calls.append(f"pending {len(guest.keys)}")
    main, inp, conn = await _inputs(server)
    inp.send(InputsMsgc.KEY_DOWN, struct.pack("<I", 0x1E))
    assert await _until(lambda: calls)
    assert calls == ["pending 1"]
    main.close()
    inp.close()


async def test_no_garbage_collection_between_a_key_and_its_frame(server):
    """The guest draws the key with the collector off (no gen-0/1 pass inside the key-to-pixel path);
    it is back on once the batch is handled."""
    import gc

    guest = server.guest
    seen: list[bool] = []
    guest.flush_pending = lambda: seen.append(gc.isenabled())
    main, inp, conn = await _inputs(server)
    assert gc.isenabled()
    inp.send(InputsMsgc.KEY_DOWN, struct.pack("<I", 0x1E))
    assert await _until(lambda: seen)
    assert seen == [False]
    assert gc.isenabled()
    main.close()
    inp.close()


async def test_keys_buffered_before_the_channel_starts_go_direct(server, monkeypatch):
    """Key messages that reach the stream's buffer between the link and the channel's start (a client
    that types at once) are parsed first, in order; the connection still goes direct after them."""
    from spice.server.connection import ChannelConnection

    keys = b"".join(struct.pack("<HI", InputsMsgc.KEY_DOWN, 4) + struct.pack("<I", code) for code in (0x1E, 0x30))
    serve = ChannelConnection._serve

    async def late_serve(self):
        if self.request.channel_type == ChannelType.INPUTS:  # hold the start until the keys are buffered
            assert await _until(lambda: len(self.reader._buffer) >= len(keys))
        await serve(self)

    monkeypatch.setattr(ChannelConnection, "_serve", late_serve)
    main = await TestChannel.connect(server.ports["plain"], ChannelType.MAIN, channel_caps={1, 2})
    init = pm.MainInit.parse((await main.wait_for(pm.MainMsg.INIT)).body)
    inp = await TestChannel.connect(server.ports["plain"], ChannelType.INPUTS, connection_id=init.session_id)
    inp.writer.write(keys)
    assert await _until(lambda: len(server.guest.keys) >= 2)
    assert server.guest.keys == [(0x1E, True), (0x30, True)]
    conn = next(c for c in server.connections if c.channel is not None and c.channel.name == "inputs")
    assert isinstance(conn.writer.transport.get_protocol(), _DirectRead)
    inp.send(InputsMsgc.KEY_UP, struct.pack("<I", 0x9E))
    assert await _until(lambda: len(server.guest.keys) >= 3)
    assert server.guest.keys[2] == (0x1E, False)
    main.close()
    inp.close()
