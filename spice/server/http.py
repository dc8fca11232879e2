"""Minimal, bounded HTTP/1.1 pieces for the front door: read one request head, build responses.

Only what the front door needs: one request per connection (``Connection: close``), GET only, no bodies.
Parsing of the head itself is done by ``websockets``' HTTP parser (see :mod:`spice.server.websocket`);
this module bounds what is read and renders responses with the security headers every answer carries.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEAD_BYTES = 16 * 1024  # request line + all header lines
MAX_HEADERS = 64
HEAD_TIMEOUT = 10.0  # seconds to receive a complete request head


class HttpError(Exception):
    """A request the front door refuses before routing (answered with ``status``, then closed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


async def read_head(
    reader: asyncio.StreamReader, first: bytes, *, timeout: float | None = None
) -> tuple[bytes, bytes]:
    """Read the request head (through the empty line) with a size, header-count and time bound.

    Returns the head and whatever arrived after it (for a WebSocket: the first frames)."""
    timeout = HEAD_TIMEOUT if timeout is None else timeout
    buf = bytearray(first)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head, rest = bytes(buf[: end + 4]), bytes(buf[end + 4 :])
            break
        if len(buf) > MAX_HEAD_BYTES:
            raise HttpError(431, "request head too large")
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise HttpError(408, "request head timeout")
        try:
            chunk = await asyncio.wait_for(reader.read(4096), remaining)
        except TimeoutError:
            raise HttpError(408, "request head timeout") from None
        if not chunk:
            raise HttpError(400, "connection closed during request head")
        buf += chunk
    if len(head) > MAX_HEAD_BYTES:
        raise HttpError(431, "request head too large")
    if head.count(b"\r\n") - 2 > MAX_HEADERS:
        raise HttpError(431, "too many header lines")
    method = head.split(b" ", 1)[0]
    if method not in (b"GET", b"HEAD"):
        raise HttpError(405, "only GET and HEAD are served")
    return head, rest


def content_security_policy() -> str:
    """The strict CSP of every page: own scripts/styles only, no inline code, no framing."""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'; object-src 'none'"
    )


SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Embedder-Policy", "require-corp"),  # with COOP: cross-origin isolated (precise timers)
    ("Cross-Origin-Resource-Policy", "same-origin"),
)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def render(self, *, head_only: bool = False) -> bytes:
        """Serialise status line, headers and (unless ``head_only``) the body."""
        try:
            reason = HTTPStatus(self.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        if self.status != 304:
            lines.append(f"Content-Type: {self.content_type}")
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append(f"Content-Security-Policy: {content_security_policy()}")
        lines += [f"{k}: {v}" for k, v in SECURITY_HEADERS]
        lines.append("Connection: close")
        out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head_only and self.status != 304:
            out += self.body
        return out


def error_response(status: int, text: str | None = None) -> Response:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return Response(status, f"{status} {text or phrase}\n".encode())


def basic_auth_ok(authorization: str | None, password: str) -> bool:
    """Check ``Authorization: Basic`` credentials: any user name, the server password."""
    if not authorization or not authorization.lower().startswith("basic "):
        return False
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    _user, sep, given = decoded.partition(":")
    return bool(sep) and hmac.compare_digest(given.encode(), password.encode())


def auth_required() -> Response:
    resp = error_response(401, "authentication required")
    resp.headers.append(("WWW-Authenticate", 'Basic realm="aiospice", charset="UTF-8"'))
    return resp
