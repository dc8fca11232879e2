"""Front door over raw sockets: static files, path escapes, header bounds, WebSocket adapter, origin check."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from webtest_util import parse_response, raw_request

from spice.server import http as http_mod
from spice.server.static import DEFAULT_ROOT


def get(path: str, *extra: str, host: str = "127.0.0.1") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *extra, "", ""]
    return "\r\n".join(lines).encode()


async def test_index_served_with_mime_csp_and_etag(frontdoor):
    status, headers, body = parse_response(await raw_request(frontdoor.port, get("/")))
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body == (DEFAULT_ROOT / "index.html").read_bytes()
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    etag = headers["etag"]
    status2, headers2, body2 = parse_response(
        await raw_request(frontdoor.port, get("/index.html", f"If-None-Match: {etag}"))
    )
    assert status2 == 304 and body2 == b"" and headers2["etag"] == etag


async def test_head_request(frontdoor):
    reader, writer = await asyncio.open_connection("127.0.0.1", frontdoor.port)
    writer.write(b"HEAD /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    async with asyncio.timeout(5):
        raw = await reader.read()
    writer.close()
    status, headers, body = parse_response(raw)
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == (DEFAULT_ROOT / "index.html").stat().st_size


async def test_javascript_mime(frontdoor):
    js = sorted(DEFAULT_ROOT.rglob("*.js"))
    if not js:
        pytest.skip("no JS files yet")
    rel = "/" + js[0].relative_to(DEFAULT_ROOT).as_posix()
    status, headers, body = parse_response(await raw_request(frontdoor.port, get(rel)))
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert body == js[0].read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/%2E%2E%2Fpyproject.toml",
        "/%252e%252e/pyproject.toml",
        "/..%5cpyproject.toml",
        "/.%2e/.%2e/etc/passwd",
        "/index.html%00.js",
        "//etc/passwd",
        "/.git/config",
        "/%ff%fe",
    ],
)
async def test_path_escapes_refused(frontdoor, path):
    raw = await raw_request(frontdoor.port, get(path))
    status, _, body = parse_response(raw)
    assert status in (400, 404)
    assert b"[project]" not in body and b"root:" not in body


async def test_symlink_and_directory_listing_refused(frontdoor, tmp_path):
    root = tmp_path / "web"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<p>ok</p>")
    (root / "sub" / "a.js").write_text("export {}")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, root / "link.txt")
    os.symlink(tmp_path, root / "up")
    frontdoor.stub.config.web_root = str(root)
    assert parse_response(await raw_request(frontdoor.port, get("/")))[0] == 200
    assert parse_response(await raw_request(frontdoor.port, get("/sub/a.js")))[0] == 200
    for path in ("/link.txt", "/up/secret.txt", "/sub/", "/sub"):
        status, _, body = parse_response(await raw_request(frontdoor.port, get(path)))
        assert status == 404, path
        assert b"top secret" not in body and b"a.js" not in body


async def test_header_bounds(frontdoor):
    big = get("/", "X-Big: " + "a" * (http_mod.MAX_HEAD_BYTES + 10))
    assert parse_response(await raw_request(frontdoor.port, big))[0] == 431
    many = get("/", *[f"X-H{i}: v" for i in range(http_mod.MAX_HEADERS + 5)])
    assert parse_response(await raw_request(frontdoor.port, many))[0] == 431
    post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    assert parse_response(await raw_request(frontdoor.port, post))[0] == 405
    garbage = b"GET /\x00\x01\x02 nonsense HTTP/7\r\n\r\n"
    assert parse_response(await raw_request(frontdoor.port, garbage))[0] == 400
    # An endless header without CRLF: refused at the size bound, not buffered forever.
    reader, writer = await asyncio.open_connection("127.0.0.1", frontdoor.port)
    writer.write(b"GET / HTTP/1.1\r\nX: ")
    for _ in range(40):
        writer.write(b"b" * 1024)
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert parse_response(answer)[0] == 431


async def test_slow_head_times_out(frontdoor, monkeypatch):
    monkeypatch.setattr(http_mod, "HEAD_TIMEOUT", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", frontdoor.port)
    writer.write(b"GET / HTTP/1.1\r\n")
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert parse_response(answer)[0] == 408


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/any/path"


async def test_websocket_echo_subprotocol_and_batching(frontdoor):
    origin = f"http://127.0.0.1:{frontdoor.port}"
    async with connect(ws_url(frontdoor.port), subprotocols=["binary"], origin=origin) as ws:
        assert ws.subprotocol == "binary"
        await ws.send(b"REDQ" + bytes(range(200)))
        got = await asyncio.wait_for(ws.recv(), 5)
        assert got == b"REDQ" + bytes(range(200))
        # 1000 small writes in one event-loop turn arrive as one frame, in order.
        await ws.send(b"burst")
        frame = await asyncio.wait_for(ws.recv(), 5)
        assert frame == b"".join(i.to_bytes(4, "little") + b"xx" for i in range(1000))


async def test_foreign_origin_refused_even_without_password(frontdoor):
    assert frontdoor.stub.config.password is None
    with pytest.raises(InvalidStatus) as exc:
        async with connect(ws_url(frontdoor.port), subprotocols=["binary"], origin="http://evil.example"):
            pass
    assert exc.value.response.status_code == 403
    # Same host, other port is another origin, too.
    with pytest.raises(InvalidStatus) as exc:
        async with connect(ws_url(frontdoor.port), subprotocols=["binary"], origin="http://127.0.0.1:1"):
            pass
    assert exc.value.response.status_code == 403
    # DNS rebinding: Origin equals Host, but the Host is not a name of this machine.
    key = base64.b64encode(os.urandom(16)).decode()
    req = get(
        "/",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: binary",
        f"Origin: http://attacker.example:{frontdoor.port}",
        host=f"attacker.example:{frontdoor.port}",
    )
    assert parse_response(await raw_request(frontdoor.port, req))[0] == 403


async def test_allow_origin_and_no_origin(frontdoor):
    frontdoor.stub.config.allow_origin = ["http://127.0.0.1:1"]
    async with connect(ws_url(frontdoor.port), subprotocols=["binary"], origin="http://127.0.0.1:1") as ws:
        await ws.send(b"hello")
        assert await asyncio.wait_for(ws.recv(), 5) == b"hello"
    # Non-browser clients send no Origin at all: allowed.
    async with connect(ws_url(frontdoor.port), subprotocols=["binary"]) as ws:
        await ws.send(b"x")
        assert await asyncio.wait_for(ws.recv(), 5) == b"x"


async def test_garbage_after_upgrade_and_server_unaffected(frontdoor):
    key = base64.b64encode(os.urandom(16)).decode()
    req = get(
        "/",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: binary",
    )
    # Unmasked client frame followed by random bytes: a protocol error, the socket is closed.
    answer = await raw_request(frontdoor.port, req + b"\x82\x05hello" + os.urandom(64))
    assert answer.startswith(b"HTTP/1.1 101")
    assert b"Sec-WebSocket-Protocol: binary" in answer
    tail = answer.partition(b"\r\n\r\n")[2]
    assert tail[:1] == b"\x88"  # a close frame, then EOF
    # Text frames are refused too (SPICE is binary).
    async with connect(ws_url(frontdoor.port), subprotocols=["binary"]) as ws:
        await ws.send("text")
        with pytest.raises(Exception):  # noqa: B017 - ConnectionClosedError subclasses vary
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1003
    assert parse_response(await raw_request(frontdoor.port, get("/")))[0] == 200


async def test_silent_websocket_closed(frontdoor):
    frontdoor.stub.config.ws_first_data_timeout = 0.3
    async with connect(ws_url(frontdoor.port), subprotocols=["binary"]) as ws:
        with pytest.raises(Exception):  # noqa: B017
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008
    assert parse_response(await raw_request(frontdoor.port, get("/")))[0] == 200


async def test_metrics_and_password(frontdoor):
    status, headers, body = parse_response(await raw_request(frontdoor.port, get("/metrics")))
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"aiospice_http_responses" in body and b"aiospice_websocket_frames" in body
    frontdoor.stub.config.password = "s3cret"
    assert parse_response(await raw_request(frontdoor.port, get("/metrics")))[0] == 401
    bad = "Authorization: Basic " + base64.b64encode(b"op:wrong").decode()
    assert parse_response(await raw_request(frontdoor.port, get("/metrics", bad)))[0] == 401
    good = "Authorization: Basic " + base64.b64encode(b"op:s3cret").decode()
    assert parse_response(await raw_request(frontdoor.port, get("/metrics", good)))[0] == 200


async def test_vv_file(frontdoor):
    frontdoor.stub.config.tls_port = 5901
    status, headers, body = parse_response(await raw_request(frontdoor.port, get("/connect.vv")))
    assert status == 200 and headers["content-type"] == "application/x-virt-viewer"
    assert "attachment" in headers["content-disposition"]
    text = body.decode()
    assert text.startswith("[virt-viewer]\n") and "type=spice" in text
    assert f"port={frontdoor.port}" in text and "tls-port=5901" in text and "host=127.0.0.1" in text
    assert "password" not in text
