"""Protocol-core figures (printed, never asserted on time): link handshakes, framing, fan-out.

Reference in the same run: a bare ``struct`` header walk over the same bytes (the floor for any
Python framer) and the RSA-OAEP decrypt alone (the floor for a link).
"""

from __future__ import annotations

import asyncio
import struct
import time

import pytest
from spice_testclient import TestChannel
from spice_testguest import PaintGuest

from spice.guests.base import Rect
from spice.proto.channel import ChannelProtocol
from spice.proto.display import DisplayMsg, DisplayMsgc
from spice.proto.enums import ChannelType
from spice.proto.link import (
    ClientLink,
    LinkRequest,
    ServerKey,
    ServerLink,
    TicketAuth,
    TicketReceived,
    encrypt_ticket,
)
from spice.server.config import ServerConfig
from spice.server.server import SpiceServer

pytestmark = pytest.mark.bench


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def test_bench_link_and_framing():
    key = ServerKey()
    auth = TicketAuth(b"pw")
    n = 100
    t0 = time.perf_counter()
    for _ in range(n):
        cl, sv = ClientLink(ChannelType.DISPLAY, 0, 1, "pw"), ServerLink(key)
        for ev in sv.receive_data(cl.data_to_send()):
            if isinstance(ev, LinkRequest):
                sv.accept(set())
        cl.receive_data(sv.data_to_send())
        evs = sv.receive_data(cl.data_to_send())
        assert isinstance(evs[0], TicketReceived)
        sv.finish(auth.check(evs[0].plaintext))
        cl.receive_data(sv.data_to_send())
    t_link = time.perf_counter() - t0
    ticket = encrypt_ticket(key.public_der, "pw")
    t0 = time.perf_counter()
    for _ in range(n):
        key.decrypt_ticket(ticket)
    t_rsa = time.perf_counter() - t0

    # 200k small messages (inputs-sized) and 200 x 1 MiB (display-sized)
    small = b"".join(struct.pack("<HI", 111, 10) + bytes(10) for _ in range(200_000))
    big = b"".join(struct.pack("<HI", 304, 1 << 20) + bytes(1 << 20) for _ in range(200))
    figures = {}
    for label, data, count in (("small", small, 200_000), ("1MiB", big, 200)):
        proto = ChannelProtocol(True, server=False, max_message=2 << 20)
        t0 = time.perf_counter()
        for i in range(0, len(data), 65536):
            proto.receive_data(data[i:i + 65536])
        t_ours = time.perf_counter() - t0
        assert proto.messages_in == count
        hdr = struct.Struct("<HI")
        t0 = time.perf_counter()
        pos = got = 0
        mv = memoryview(data)
        while pos < len(data):
            _t, size = hdr.unpack_from(mv, pos)
            _body = mv[pos + 6:pos + 6 + size]
            pos += 6 + size
            got += 1
        t_ref = time.perf_counter() - t0
        figures[label] = (t_ours, t_ref, len(data))
    print()
    print(f"link handshakes (client+server, sans-I/O): {rate(n, t_link)}; RSA-OAEP decrypt alone {rate(n, t_rsa)}")
    for label, (t_ours, t_ref, size) in figures.items():
        count = 200_000 if label == "small" else 200
        print(f"framing {label}: ours {rate(count, t_ours)} msgs, {size / t_ours / 1e6:,.0f} MB/s "
              f"(fed in 64 KiB reads); bare struct walk {rate(count, t_ref)}, {size / t_ref / 1e6:,.0f} MB/s")


async def test_bench_display_fanout_over_tcp():
    """One guest, N display clients on loopback: full-screen noise frames, bytes and CPU per frame."""
    guest = PaintGuest(640, 480)
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw", ping_interval=0), key=ServerKey())
    await srv.start()
    try:
        main = await TestChannel.connect(srv.ports["plain"], ChannelType.MAIN)
        sid = struct.unpack_from("<I", (await main.wait_for(103)).body)[0]
        for n_clients in (1, 4):
            clients = []
            for _ in range(n_clients):
                d = await TestChannel.connect(srv.ports["plain"], ChannelType.DISPLAY, connection_id=sid,
                                              channel_caps={5})
                d.send(DisplayMsgc.INIT, struct.pack("<BqBi", 1, 1 << 20, 0, 0))
                await d.wait_for(DisplayMsg.MARK)
                clients.append(d)
            frames = 30
            b0 = srv.stats.channel("display").bytes_out
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(frames):
                guest.noise(Rect(0, 0, 640, 480), seed=i)
                await asyncio.gather(*(c.pump(0.05) for c in clients))
            for _ in range(20):
                await asyncio.gather(*(c.pump(0.05) for c in clients))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            sent = srv.stats.channel("display").bytes_out - b0
            print(f"\ndisplay fan-out to {n_clients} client(s): {frames} noise frames 640x480 in {wall:.2f} s, "
                  f"{sent / 1e6:.1f} MB sent, process CPU {cpu:.2f} s (server + test clients), "
                  f"encodes {srv.display_pipeline.stats.encodes} shared {srv.display_pipeline.stats.shared}")
            for c in clients:
                c.close()
            await asyncio.sleep(0.1)
        main.close()
    finally:
        await srv.close()
