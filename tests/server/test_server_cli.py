"""``aiospice serve`` / ``aiospice certs``: refusal without a password, warnings, signals, TLS files."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys

import pytest
from spice_testclient import LinkRefused, TestChannel

from spice.cli import build_parser
from spice.proto import main as pm
from spice.proto.channel import PeerDisconnecting
from spice.proto.enums import BaseMsg, ChannelType, LinkError
from spice.server.commands import config_from_args
from spice.server.config import ServerConfig, parse_secure_channels

ENV = {k: v for k, v in os.environ.items() if k != "AIOSPICE_PASSWORD"}


def cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spice.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**ENV, **(env or {})})


def test_serve_refuses_without_password():
    r = cli("serve", "--port", "0")
    assert r.returncode == 2 and "refusing to start" in r.stderr and "--disable-ticketing" in r.stderr


def test_serve_reports_missing_certificates(tmp_path):
    r = cli("serve", "--port", "0", "--tls-port", "0", "--certs", str(tmp_path), "--password", "x")
    assert r.returncode == 1 and "cannot start" in r.stderr and "server-cert.pem" in r.stderr, r.stderr


def test_password_sources(tmp_path):
    p = build_parser()
    assert config_from_args(p.parse_args(["serve", "--password", "a"])).password == "a"
    f = tmp_path / "pw"
    f.write_text("from-file\nignored\n")
    assert config_from_args(p.parse_args(["serve", "--password-file", str(f)])).password == "from-file"
    os.environ["AIOSPICE_PASSWORD"] = "from-env"
    try:
        assert config_from_args(p.parse_args(["serve"])).password == "from-env"
        cfg = config_from_args(p.parse_args(["serve", "--disable-ticketing"]))
        assert cfg.password is None and cfg.auth_error() is None
    finally:
        del os.environ["AIOSPICE_PASSWORD"]
    assert ServerConfig(password=None).auth_error() is not None
    assert ServerConfig(password="").auth_error() is not None  # an empty password would refuse everyone
    cfg = config_from_args(p.parse_args(["serve", "--password", "x", "--secure-channels", "main,display",
                                         "--password-expires", "30", "--size", "800x600"]))
    assert cfg.secure_channels == {1, 2} and cfg.password_expires == 30
    assert parse_secure_channels("all") >= {1, 2, 3, 4, 9}
    with pytest.raises(SystemExit):
        p.parse_args(["serve", "--secure-channels", "bogus"])


def test_non_loopback_without_tls_warns():
    assert ServerConfig(host="0.0.0.0", password="x").exposure_warning()
    assert ServerConfig(host="127.0.0.1", password="x").exposure_warning() is None
    assert ServerConfig(host="0.0.0.0", password="x", port=None, tls_port=5901).exposure_warning() is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_serve_builtin_and_signal_closes_clients_cleanly(sig):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spice.cli", "serve", "--port", "0", "--size", "320x200",
        env={**ENV, "AIOSPICE_PASSWORD": "envpw"}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        port = int(re.search(r"plain 127\.0\.0\.1:(\d+)", line).group(1))
        main = await TestChannel.connect(port, ChannelType.MAIN, password="envpw")
        init = pm.MainInit.parse((await main.wait_for(pm.MainMsg.INIT)).body)
        inp = await TestChannel.connect(port, ChannelType.INPUTS, connection_id=init.session_id, password="envpw")
        with pytest.raises(LinkRefused) as e:
            await TestChannel.connect(port, ChannelType.MAIN, password="wrong")
        assert e.value.code == LinkError.PERMISSION_DENIED
        proc.send_signal(sig)
        for ch in (main, inp):
            await ch.read_until_closed(10)
            assert any(isinstance(e, PeerDisconnecting) for e in ch.events), (ch.messages, ch.events)
        notify = [m for m in main.messages if m.type == BaseMsg.NOTIFY]
        assert notify and b"server shutting down" in notify[0].body
        rc = await asyncio.wait_for(proc.wait(), 20)
        out = (await proc.stdout.read()).decode()
        assert rc == 0 and "stopped" in out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_certs_command_and_tls_link(tmp_path):
    r = cli("certs", str(tmp_path / "c"), "--host", "127.0.0.1")
    assert r.returncode == 0, r.stderr
    names = sorted(os.listdir(tmp_path / "c"))
    assert names == ["ca-cert.pem", "ca-key.pem", "server-cert.pem", "server-key.pem"]
    assert oct(os.stat(tmp_path / "c" / "server-key.pem").st_mode & 0o777) == "0o600"
    assert cli("certs", str(tmp_path / "other")).returncode == 0

    from spice_testguest import PaintGuest

    from spice.server.server import SpiceServer

    srv = SpiceServer(PaintGuest(), ServerConfig(port=None, tls_port=0, certs_dir=tmp_path / "c", password="pw",
                                                 ping_interval=0))
    await srv.start()
    try:
        good = ssl.create_default_context(cafile=str(tmp_path / "c" / "ca-cert.pem"))
        main = await TestChannel.connect(srv.ports["tls"], ChannelType.MAIN, ssl=good)
        await main.wait_for(pm.MainMsg.INIT)
        main.close()
        bad = ssl.create_default_context(cafile=str(tmp_path / "other" / "ca-cert.pem"))
        with pytest.raises(ssl.SSLCertVerificationError):
            await TestChannel.connect(srv.ports["tls"], ChannelType.MAIN, ssl=bad)
    finally:
        await srv.close()
