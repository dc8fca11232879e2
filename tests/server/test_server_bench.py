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


async def _spicy_seconds(port: int, out, password: str | None, runs: int = 5) -> list[float]:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
    import spicegtk

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        img, text = await spicegtk.spicy_screenshot(port, out, password, timeout=30)
        assert img is not None, text
        times.append(time.perf_counter() - t0)
    return sorted(times)


@pytest.mark.peer
async def test_bench_first_frame_vs_xspice(tmp_path):
    """spicy-screenshot wall time (connect, link main + display, first full 1024x768 frame, write
    PPM): our server vs libspice-server (Xspice) on an idle X screen of the same size."""
    import contextlib
    import os
    import shutil
    import socket

    if not shutil.which("spicy-screenshot"):
        pytest.skip("spice-client-gtk missing")
    from spice.guests.builtin import BuiltinGuest

    srv = SpiceServer(BuiltinGuest(1024, 768), ServerConfig(port=0, password="pw"), key=ServerKey())
    await srv.start()
    try:
        ours = await _spicy_seconds(srv.ports["plain"], tmp_path / "o.ppm", "pw")
    finally:
        await srv.close()
    print(f"\nspicy-screenshot 1024x768, median of 5: aiospice {ours[2] * 1000:.0f} ms "
          f"(min {ours[0] * 1000:.0f})", end="")
    try:
        from spice.display.wirebench import XORG_CONF, free_port, xspice_available
    except ImportError:
        print("; Xspice reference unavailable")
        return
    if not xspice_available():
        print("; Xspice not installed")
        return
    port = free_port()
    n = next(i for i in range(210, 260) if not os.path.exists(f"/tmp/.X11-unix/X{i}")
             and not os.path.exists(f"/tmp/.X{i}-lock"))
    conf = tmp_path / "xorg.conf"
    conf.write_text(XORG_CONF.format(w=1024, h=768, fb_mb=16))
    env = {**os.environ, "XSPICE_PORT": str(port), "XSPICE_ADDR": "127.0.0.1", "XSPICE_DISABLE_TICKETING": "1"}
    xorg = await asyncio.create_subprocess_exec(
        "Xorg", "-config", str(conf), "-noreset", "-nolisten", "tcp", "-logfile", str(tmp_path / "Xorg.log"),
        f":{n}", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(150):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            await asyncio.sleep(0.1)
        ref = await _spicy_seconds(port, tmp_path / "x.ppm", None)
        print(f"; Xspice (libspice-server 0.15) {ref[2] * 1000:.0f} ms (min {ref[0] * 1000:.0f})")
    finally:
        xorg.terminate()
        try:
            await asyncio.wait_for(xorg.wait(), 5)
        except TimeoutError:
            xorg.kill()
            await xorg.wait()
