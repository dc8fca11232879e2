"""Inputs over WebSocket: once linked, the server parses frames in the socket's callback (no read task in
between); keys still arrive in order, and a peer that floods PINGs without reading stays bounded."""

from __future__ import annotations

import asyncio
import struct

import spice_testguest
from spice_testclient import TestChannel
from test_server_ws_pingflood import ping_flood, ws_upgrade

from spice.proto import main as pm
from spice.proto.enums import ChannelType
from spice.proto.inputs import InputsMsgc
from spice.proto.link import ClientLink, LinkResult
from spice.server.config import ServerConfig
from spice.server.server import SpiceServer
from spice.server.websocket import _DirectInbound


def frame(payload: bytes) -> bytes:
    """A masked binary client frame (zero mask: the payload goes as it is)."""
    n = len(payload)
    head = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0x80 | 126]) + struct.pack(">H", n)
    return head + bytes(4) + payload


def ws_inputs(port: int, session_id: int, keys: list[int], flood: bool) -> int:
    """Link an inputs channel over WebSocket, send ``keys`` (one frame each), then (``flood``) send PINGs
    without reading until LIMIT bytes went out or 2 s without progress; returns the PING bytes sent."""
    s = ws_upgrade(port)
    link = ClientLink(ChannelType.INPUTS, 0, session_id, "")
    s.sendall(frame(link.data_to_send()))
    buf, done = b"", False
    s.settimeout(10)
    while not done:
        buf += s.recv(65536)
        while True:  # server frames: unmasked, shorter than 64 KiB
            if len(buf) < 2:
                break
            n, start = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, start = struct.unpack(">H", buf[2:4])[0], 4
            if len(buf) < start + n:
                break
            payload, buf = buf[start:start + n], buf[start + n:]
            for ev in link.receive_data(payload):
                if isinstance(ev, LinkResult):
                    assert not ev.error
                    done = True
            out = link.data_to_send()
            if out:
                s.sendall(frame(out))
    for code in keys:
        kind = InputsMsgc.KEY_UP if code & 0x80 else InputsMsgc.KEY_DOWN
        s.sendall(frame(struct.pack("<HII", kind, 4, code)))
    if flood:
        return ping_flood(s)
    s.close()
    return 0


async def test_inputs_over_websocket_direct_in_order_and_ping_flood_bounded():
    guest = spice_testguest.PaintGuest()
    server = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True, ping_interval=0))
    await server.start()
    try:
        main = await TestChannel.connect(server.ports["plain"], ChannelType.MAIN, channel_caps={1, 2})
        init = pm.MainInit.parse((await main.wait_for(pm.MainMsg.INIT)).body)
        keys = [0x1E, 0x9E, 0x1F, 0x9F, 0x20, 0xA0]
        task = asyncio.create_task(asyncio.to_thread(ws_inputs, server.ports["plain"], init.session_id, keys, True))
        async with asyncio.timeout(30):
            while len(guest.keys) < len(keys):
                await asyncio.sleep(0.01)
        assert guest.keys == [(0x1E, True), (0x1E, False), (0x1F, True), (0x1F, False), (0x20, True), (0x20, False)]
        inputs = [c for c in server.connections if c.channel is not None and c.channel.name == "inputs"]
        assert len(inputs) == 1 and isinstance(inputs[0].writer.transport.get_protocol(), _DirectInbound)
        sent = await asyncio.wait_for(task, 120)
        main.close()
    finally:
        await server.close()
    print(f"PING bytes accepted before the server stopped reading: {sent >> 20} MiB")
    assert sent < 48 << 20
