"""Operator endpoints follow the SPICE ticket policy (no fail-open when ticketing has no password,
expired passwords are refused) — checked through the front door's router; unauthenticated plain
usbredir off loopback is warned about."""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace

import pytest
from websockets.datastructures import Headers

from spice.proto.link import TicketAuth
from spice.server.config import ServerConfig
from spice.server.frontdoor import route


def _server(auth: TicketAuth) -> SimpleNamespace:
    return SimpleNamespace(config=ServerConfig(port=0), auth=auth, usb=None, ports={})


def _basic(pw: str) -> Headers:
    return Headers({"Authorization": "Basic " + base64.b64encode(f"op:{pw}".encode()).decode()})


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/usb"])
def test_operator_endpoints_follow_ticket_policy(path):
    assert route(_server(TicketAuth(None)), path, Headers(), "http").status == 200
    assert route(_server(TicketAuth(b"pw")), path, Headers(), "http").status == 401
    assert route(_server(TicketAuth(b"pw")), path, _basic("nope"), "http").status == 401
    assert route(_server(TicketAuth(b"pw")), path, _basic("pw"), "http").status == 200
    # ticketing on but no password: SPICE refuses every link, so must HTTP
    assert route(_server(TicketAuth(b"")), path, Headers(), "http").status == 401
    expired = TicketAuth(b"pw", expires_at=time.monotonic() - 1)
    assert route(_server(expired), path, _basic("pw"), "http").status == 401


def test_plain_usbredir_off_loopback_is_warned_about():
    tls_only = dict(host="0.0.0.0", password="x", port=None, tls_port=5901)
    assert ServerConfig(**tls_only).exposure_warning() is None
    assert "usbredir" in ServerConfig(**tls_only, usbredir_listen=4000).exposure_warning()
    assert ServerConfig(host="127.0.0.1", password="x", usbredir_listen=4000).exposure_warning() is None
