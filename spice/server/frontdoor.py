"""The front door: a connection on the SPICE port whose first bytes are not ``REDQ`` is HTTP.

``handle_http`` serves the web client's static files, ``/metrics``, ``/connect.vv`` and ``/api/info``,
or upgrades to a WebSocket that carries one SPICE channel (any path, subprotocol ``binary``).
A WebSocket upgrade from a foreign Origin is refused with 403 (cross-site WebSocket hijacking),
whatever the address or auth settings.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response as WsResponse
from websockets.server import ServerProtocol

from spice.server import metrics
from spice.server.http import (
    HttpError,
    Response,
    auth_required,
    basic_auth_ok,
    error_response,
    read_head,
)
from spice.server.static import StaticFiles
from spice.server.websocket import FIRST_DATA_TIMEOUT, WsStats, run_spice_over_websocket, send_pending

log = logging.getLogger(__name__)

WS_MAX_SIZE = 4 << 20
# websockets logs every handshake at INFO ("connection open"); the SPICE side already logs each
# channel, so keep the library's own messages to warnings unless someone lowers this level.
WS_PROTOCOL_LOG = logging.getLogger("spice.server.websocket.protocol")
WS_PROTOCOL_LOG.setLevel(logging.WARNING)
_static_by_root: dict[str, StaticFiles] = {}


def option(server, name: str, default=None):
    """Read a setting from ``server.config.<name>``, ``server.config.extra[name]`` or ``server.<name>``."""
    cfg = getattr(server, "config", None)
    if cfg is not None and getattr(cfg, name, None) is not None:
        return getattr(cfg, name)
    extra = getattr(cfg, "extra", None)
    if isinstance(extra, dict) and extra.get(name) is not None:
        return extra[name]
    value = getattr(server, name, None)
    return default if value is None else value


def server_password(server) -> str | None:
    """The password clients must give (None: no password set).  Follows runtime changes of A's
    ``server.auth`` (set_password) when present."""
    auth = getattr(server, "auth", None)
    if auth is not None and hasattr(auth, "password"):
        pw = auth.password
        if not pw:
            return None
        return pw.decode("utf-8", "replace") if isinstance(pw, bytes) else str(pw)
    return option(server, "password")


def operator_allowed(server, headers: Headers) -> bool:
    """May this request see the operator endpoints (``/metrics``, ``/api/v1/usb``)?

    Follows the SPICE ticket policy: no ticketing -> open; ticketing without a password or with an
    expired one -> nobody (as ``TicketAuth.check`` refuses every link); otherwise HTTP basic auth."""
    auth = getattr(server, "auth", None)
    if auth is not None and hasattr(auth, "password"):
        if auth.password is None:
            return True
        expires_at = getattr(auth, "expires_at", None)
        if not auth.password or (expires_at is not None and time.monotonic() >= expires_at):
            return False
    password = server_password(server)
    return not password or basic_auth_ok(headers.get("Authorization"), password)


def server_port(server, kind: str) -> int | None:
    """Actual listening port (``plain``/``tls``); falls back to the configured one."""
    ports = getattr(server, "ports", None)
    if isinstance(ports, dict) and ports.get(kind):
        return int(ports[kind])
    value = option(server, "port" if kind == "plain" else "tls_port")
    return int(value) if value else None


def static_files(server) -> StaticFiles:
    root = option(server, "web_root")
    key = str(root or "")
    if key not in _static_by_root:
        _static_by_root[key] = StaticFiles(root) if root else StaticFiles()
    return _static_by_root[key]


@lru_cache(maxsize=1)
def _machine_names() -> frozenset[str]:
    names = {"localhost"}
    try:
        names.add(socket.gethostname().lower())
        names.add(socket.getfqdn().lower())
    except OSError:
        pass
    return frozenset(names)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def allowed_origins(server, scheme: str, host_header: str | None) -> list[str | None]:
    """Origins a WebSocket upgrade may come from: the page's own origin, ``--allow-origin`` ones,
    or none at all (non-browser clients send no Origin header)."""
    allowed: list[str | None] = [None]
    extra = option(server, "allow_origin", ()) or ()
    if isinstance(extra, str):
        extra = [extra]
    allowed += [o.rstrip("/") for o in extra]
    if host_header:
        host = (urlsplit(f"//{host_header}").hostname or "").lower()
        # The Host must name this machine (an IP literal, localhost, our host names, or an allowed
        # origin's host): a DNS-rebinding page would otherwise be "same-origin" with us.
        extra_hosts = {(urlsplit(o).hostname or "").lower() for o in allowed[1:] if o}
        if _is_ip(host) or host in _machine_names() or host in extra_hosts:
            allowed.append(f"{scheme}://{host_header.lower()}")
    return allowed


def _is_upgrade(headers: Headers) -> bool:
    conn = ",".join(headers.get_all("Connection")).lower()
    upgrade = ",".join(headers.get_all("Upgrade")).lower()
    return "upgrade" in [t.strip() for t in conn.split(",")] and "websocket" in upgrade


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    try:
        writer.write(data)
        await writer.drain()
    except (ConnectionError, OSError):
        pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (ConnectionError, OSError, TimeoutError):
        pass


def _select_binary(_proto: ServerProtocol, offered) -> str | None:
    return "binary" if "binary" in offered else None


async def handle_http(server, reader, writer, first: bytes, *, spice_handler=None) -> None:
    """Serve one HTTP request (or a WebSocket carrying one SPICE channel) on this connection."""
    scheme = "https" if writer.get_extra_info("ssl_object") is not None else "http"
    try:
        try:
            head, rest = await read_head(reader, first)
        except HttpError as exc:
            metrics.count_http(exc.status)
            await _send(writer, error_response(exc.status, str(exc)).render())
            return
        proto = ServerProtocol(
            select_subprotocol=_select_binary, max_size=WS_MAX_SIZE, logger=WS_PROTOCOL_LOG
        )
        proto.receive_data(head)
        events = proto.events_received()
        if not events:
            metrics.count_http(400)
            await _send(writer, error_response(400, "malformed request").render())
            return
        request = events[0]
        head_only = head.startswith(b"HEAD ")
        if _is_upgrade(request.headers):
            await _websocket(server, proto, request, reader, writer, scheme, spice_handler, rest)
            return
        resp = route(server, request.path, request.headers, scheme)
        metrics.count_http(resp.status)
        await _send(writer, resp.render(head_only=head_only))
    except Exception:  # a bug here must not take the listener down
        log.exception("front door failed")
    finally:
        await _close(writer)


def route(server, path: str, headers: Headers, scheme: str) -> Response:
    """Plain HTTP routes (everything that is not a WebSocket upgrade)."""
    bare = path.split("?", 1)[0]
    password = server_password(server)
    if bare == "/metrics":
        if not operator_allowed(server, headers):
            return auth_required()
        body, ctype = metrics.render(server)
        return Response(200, body, ctype, [("Cache-Control", "no-store")])
    if bare == "/api/v1/usb":  # redirected USB devices (engineer H, spice.server.usb)
        if not operator_allowed(server, headers):
            return auth_required()
        usb = getattr(server, "usb", None)
        info = {"enabled": usb is not None, "devices": usb.rows() if usb is not None else []}
        return Response(200, json.dumps(info).encode(), "application/json", [("Cache-Control", "no-store")])
    if bare == "/connect.vv":
        return vv_file(server, headers.get("Host"), scheme)
    if bare == "/api/info":
        info = {
            "name": option(server, "name", "aiospice"),
            "password": bool(password),
            "port": server_port(server, "plain"),
            "tls_port": server_port(server, "tls"),
        }
        return Response(200, json.dumps(info).encode(), "application/json", [("Cache-Control", "no-store")])
    return static_files(server).respond(path, headers.get("If-None-Match"))


def vv_file(server, host_header: str | None, scheme: str) -> Response:
    """A virt-viewer connection file for this server (no password inside: the viewer asks)."""
    host = (urlsplit(f"//{host_header}").hostname if host_header else None) or "127.0.0.1"
    lines = ["[virt-viewer]", "type=spice", f"host={host}"]
    port, tls_port = server_port(server, "plain"), server_port(server, "tls")
    if port:
        lines.append(f"port={int(port)}")
    if tls_port:
        lines.append(f"tls-port={int(tls_port)}")
        ca = _ca_text(server)
        if ca:
            lines.append("ca=" + ca.replace("\n", "\\n"))
        if scheme == "https" or not port:
            lines.append("secure-channels=all")
    lines += [f"title={option(server, 'name', 'aiospice')}", "delete-this-file=1", ""]
    headers = [
        ("Content-Disposition", 'attachment; filename="aiospice.vv"'),
        ("Cache-Control", "no-store"),
    ]
    return Response(200, "\n".join(lines).encode(), "application/x-virt-viewer", headers)


def _ca_text(server) -> str | None:
    """PEM of the CA that signed the TLS certificate (``aiospice certs`` writes ca-cert.pem)."""
    certs = option(server, "certs_dir")
    candidates = [Path(certs) / "ca-cert.pem", Path(certs) / "server-cert.pem"] if certs else []
    for path in candidates:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            continue
        if "BEGIN CERTIFICATE" in text:
            return text
    return None


async def _websocket(server, proto, request, reader, writer, scheme, spice_handler, rest: bytes) -> None:
    # Browsers send the origin of the page (http/https scheme) that opened the socket.
    proto.origins = allowed_origins(server, scheme, request.headers.get("Host"))
    response: WsResponse = proto.accept(request)
    if (
        response.status_code == 101
        and proto.subprotocol is None
        and request.headers.get_all("Sec-WebSocket-Protocol")
    ):
        response = proto.reject(400, "only the 'binary' subprotocol is spoken here\n")
    proto.send_response(response)
    send_pending(proto, writer)
    if response.status_code != 101:
        metrics.count_http(response.status_code)
        if response.status_code == 403:
            metrics.count_ws_refused("origin")
        log.info("websocket upgrade refused (%s): %s", response.status_code, proto.handshake_exc)
        await writer.drain()
        return
    metrics.count_http(101)
    if spice_handler is None:  # it sees get_extra_info("websocket") and derives "websocket"/"wss"
        from spice.server.connection import handle_spice_stream as spice_handler
    timeout = float(option(server, "ws_first_data_timeout", FIRST_DATA_TIMEOUT))
    stats = WsStats()
    metrics.ws_opened(stats)
    try:
        await run_spice_over_websocket(
            server,
            proto,
            reader,
            writer,
            spice_handler,
            first_data_timeout=timeout,
            stats=stats,
            initial=rest,
        )
    finally:
        metrics.ws_closed(stats)
