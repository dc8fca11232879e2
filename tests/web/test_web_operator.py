"""Front door on the real server: /metrics, https/wss on the TLS port, .vv, and hostile HTTP/WS input."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from webtest_util import parse_response

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import chromium, chromium_available, new_page  # noqa: E402
from test_web_browser import canvas_matches_guest, frozen_guest, wait_for  # noqa: E402

from spice.certs import generate  # noqa: E402
from spice.proto.enums import ChannelType, LinkError  # noqa: E402
from spice.proto.link import ClientLink, LinkResult  # noqa: E402
from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = pytest.mark.timeout(120)


async def ws_link(uri: str, password: str = "", *, origin: str | None = None, ssl_ctx=None):
    """Link a main channel over a WebSocket; returns (LinkError, websocket)."""
    ws = await connect(uri, subprotocols=["binary"], origin=origin, ssl=ssl_ctx)
    link = ClientLink(ChannelType.MAIN, password=password)
    await ws.send(link.data_to_send())
    async with asyncio.timeout(10):
        while True:
            data = await ws.recv()
            for ev in link.receive_data(data):
                if isinstance(ev, LinkResult):
                    return ev.error, ws
            out = link.data_to_send()
            if out:
                await ws.send(out)


async def http_get(port: int, path: str, *extra: str, ssl_ctx=None) -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_ctx)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *extra, "", ""]
    writer.write("\r\n".join(lines).encode())
    async with asyncio.timeout(10):
        raw = await reader.read()
    writer.close()
    return parse_response(raw)


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_from_real_server():
    srv = SpiceServer(frozen_guest(), ServerConfig(port=0, password="op-pw"))
    await srv.start()
    port = srv.ports["plain"]
    uri = f"ws://127.0.0.1:{port}/spice"
    try:
        err, ws = await ws_link(uri, "wrong")
        assert err == LinkError.PERMISSION_DENIED
        await ws.close()
        err, ws = await ws_link(uri, "op-pw")
        assert err == LinkError.OK
        await asyncio.wait_for(ws.recv(), 5)  # MAIN_INIT
        status, _, _ = await http_get(port, "/metrics")
        assert status == 401
        auth = "Authorization: Basic " + base64.b64encode(b"op:op-pw").decode()
        status, headers, body = await http_get(port, "/metrics", auth)
        assert status == 200 and headers["content-type"].startswith("text/plain; version=")
        text = body.decode()
        assert metric(text, "aiospice_auth_failures_total") == srv.stats.auth_failures >= 1
        assert metric(text, 'aiospice_channels{type="main"}') == 1
        assert metric(text, 'aiospice_channel_bytes_sent_total{type="main"}') > 0
        assert metric(text, "aiospice_sessions") == srv.stats.sessions_open == 1
        assert metric(text, "aiospice_websocket_connections_total") >= 2
        assert metric(text, 'aiospice_websocket_frames_total{direction="out"}') >= 2
        await ws.close()
    finally:
        await srv.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    generate(d, ["127.0.0.1", "localhost"])
    return d


async def test_https_wss_and_vv_on_tls_port(certs):
    srv = SpiceServer(
        frozen_guest(), ServerConfig(port=0, tls_port=0, certs_dir=certs, disable_ticketing=True)
    )
    await srv.start()
    tls = srv.ports["tls"]
    ctx = ssl.create_default_context(cafile=str(certs / "ca-cert.pem"))
    try:
        status, headers, body = await http_get(tls, "/", ssl_ctx=ctx)
        assert status == 200 and b"<canvas" in body
        status, _, body = await http_get(tls, "/connect.vv", ssl_ctx=ctx)
        text = body.decode()
        assert status == 200 and f"tls-port={tls}" in text and "ca=-----BEGIN CERTIFICATE-----\\n" in text
        # wss from the https page's own origin is accepted; the plain http origin is a different one.
        err, ws = await ws_link(f"wss://127.0.0.1:{tls}/", origin=f"https://127.0.0.1:{tls}", ssl_ctx=ctx)
        assert err == LinkError.OK
        await ws.close()
        with pytest.raises(Exception, match="403"):
            await ws_link(f"wss://127.0.0.1:{tls}/", origin=f"http://127.0.0.1:{tls}", ssl_ctx=ctx)
        if chromium_available():
            async with chromium() as browser:
                page = await new_page(browser, ignore_https_errors=True)
                await page.goto(f"https://127.0.0.1:{tls}/")
                await wait_for(
                    lambda: page.evaluate("document.getElementById('status').dataset.state === 'connected'"),
                    what="connected over wss",
                )
                await wait_for(lambda: canvas_matches_guest(page, srv.guest), what="pixels over wss")
                assert await page.evaluate("window.aiospice.url.startsWith('wss://')")
    finally:
        await srv.close()


async def test_hostile_http_and_websocket_input_leaves_server_working():
    srv = SpiceServer(
        frozen_guest(),
        ServerConfig(port=0, disable_ticketing=True, link_timeout=1.0, extra={"ws_first_data_timeout": 1.0}),
    )
    await srv.start()
    port = srv.ports["plain"]
    uri = f"ws://127.0.0.1:{port}/"
    try:
        # Path traversal and oversize heads on the real listener.
        assert (await http_get(port, "/../../etc/passwd"))[0] == 404
        assert (await http_get(port, "/%2e%2e/%2e%2e/etc/passwd"))[0] == 404
        assert (await http_get(port, "/", "X-Big: " + "a" * 20000))[0] == 431
        # Garbage after the upgrade: unmasked frame + noise -> close frame and EOF.
        key = base64.b64encode(os.urandom(16)).decode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
            ).encode()
            + b"\x82\x7f"
            + os.urandom(100)
        )
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 101") and b"\r\n\r\n\x88" in answer
        # Well-formed frames carrying junk instead of a SPICE link: the link refuses and closes.
        ws = await connect(uri, subprotocols=["binary"])
        await ws.send(os.urandom(64))
        async with asyncio.timeout(10):
            with pytest.raises(Exception):  # noqa: B017 - ConnectionClosed*
                while True:
                    await ws.recv()
        # A WebSocket that never sends is closed by the server.
        ws = await connect(uri, subprotocols=["binary"])
        async with asyncio.timeout(10):
            with pytest.raises(Exception):  # noqa: B017
                await ws.recv()
        # A huge frame announcement is refused without buffering it.
        ws = await connect(uri, subprotocols=["binary"], max_size=None)
        async with asyncio.timeout(10):
            with pytest.raises(Exception):  # noqa: B017
                await ws.send(b"\0" * (5 << 20))
                while True:
                    await ws.recv()
        assert ws.close_code == 1009  # message too big
        # The server still serves pages and links.
        assert (await http_get(port, "/"))[0] == 200
        err, ws = await ws_link(uri)
        assert err == LinkError.OK
        await ws.close()
        await wait_for(lambda: len(srv.connections) == 0, what="all hostile connections gone")
    finally:
        await srv.close()


@pytest.mark.peer
async def test_remote_viewer_opens_the_vv_file(certs, tmp_path):
    """The .vv downloaded over https makes remote-viewer connect over TLS, trusting the CA inside it."""
    import shutil

    import spicegtk

    if not (shutil.which("remote-viewer") and shutil.which("Xvfb")):
        pytest.skip("remote-viewer or Xvfb missing")
    srv = SpiceServer(
        frozen_guest(), ServerConfig(port=0, tls_port=0, certs_dir=certs, disable_ticketing=True)
    )
    await srv.start()
    tls = srv.ports["tls"]
    ctx = ssl.create_default_context(cafile=str(certs / "ca-cert.pem"))
    try:
        status, _, body = await http_get(tls, "/connect.vv", ssl_ctx=ctx)
        assert status == 200
        vv = tmp_path / "aiospice.vv"
        vv.write_bytes(body)
        async with spicegtk.xvfb() as display:
            proc = await asyncio.create_subprocess_exec(
                "remote-viewer",
                str(vv),
                env={**os.environ, "DISPLAY": display},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                await wait_for(
                    lambda: any(
                        c.transport == "tls" and c.channel is not None and c.channel.channel_type == 2
                        for c in srv.connections
                    ),
                    timeout=30,
                    what="remote-viewer's display channel over TLS",
                )
            finally:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 10)
        assert not vv.exists()  # delete-this-file=1 was honoured: the file was read as a .vv
    finally:
        await srv.close()
