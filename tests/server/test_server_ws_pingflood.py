"""A WebSocket peer that floods PINGs and never reads cannot make the server queue PONGs without
bound: once enough waits to be sent, the server stops reading, so the peer's sends stall."""

from __future__ import annotations

import asyncio
import socket

from spice_testguest import PaintGuest

from spice.server.config import ServerConfig
from spice.server.server import SpiceServer

PING = bytes([0x89, 0x80 | 125]) + bytes(4) + b"x" * 125  # masked, 125-byte payload
LIMIT = 64 << 20


def ws_upgrade(port: int) -> socket.socket:
    """A WebSocket connection to the front door's /spice (small receive buffer: a peer that reads slowly)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /spice HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Protocol: binary\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def ping_flood(s: socket.socket) -> int:
    """Send PINGs on ``s`` without reading until LIMIT bytes went out or 2 s without progress; closes ``s``
    and returns the bytes sent."""
    batch, sent = PING * 2000, 0
    s.settimeout(2)
    try:
        while sent < LIMIT:
            sent += s.send(batch)
    except TimeoutError:
        pass
    finally:
        s.close()
    return sent


def flood(port: int) -> int:
    """Upgrade, then flood PINGs without reading."""
    return ping_flood(ws_upgrade(port))


async def test_ping_flood_without_reading_is_bounded():
    server = SpiceServer(PaintGuest(), ServerConfig(port=0, disable_ticketing=True, ping_interval=0))
    await server.start()
    try:
        sent = await asyncio.wait_for(asyncio.to_thread(flood, server.ports["plain"]), 120)
    finally:
        await server.close()
    print(f"PING bytes accepted before the server stopped reading: {sent >> 20} MiB")
    assert sent < 48 << 20
