"""Helpers for the USB end-to-end tests: a served built-in guest, the share client as a subprocess,
FAT/ISO images with known hashes, the HTTP API (imported by name: unique module)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from spice.guests.builtin import BuiltinGuest
from spice.server.config import ServerConfig
from spice.server.server import SpiceServer

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "usb-e2e"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_fat_image(path: Path, size_mb: int, files: dict[str, bytes]) -> None:
    """mkfs.vfat image holding ``files`` (copied in with mtools)."""
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.vfat", "-n", "AIOSPICE", str(path)], check=True, capture_output=True)
    for name, data in files.items():
        src = path.with_name(path.name + ".src")
        src.write_bytes(data)
        subprocess.run(["mcopy", "-i", str(path), str(src), f"::{name}"], check=True, capture_output=True)
        src.unlink()


def fat_read(path: Path, name: str) -> bytes:
    return subprocess.run(["mtype", "-i", str(path), f"::{name}"], check=True, capture_output=True).stdout


def fsck_clean(path: Path) -> tuple[bool, str]:
    r = subprocess.run(["fsck.fat", "-n", str(path)], capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


@contextlib.asynccontextmanager
async def served_guest(**cfg_kw):
    """A BuiltinGuest behind a SpiceServer on a free port with USB on; yields the server."""
    guest = BuiltinGuest(800, 600)
    cfg_kw.setdefault("usb_channels", 4)
    cfg = ServerConfig(port=0, password=PASSWORD, ping_interval=0, **cfg_kw)
    server = SpiceServer(guest, cfg)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class Share:
    """``aiospice usb share`` (python3 -m spice.cli) running as a subprocess."""

    def __init__(self, *args: str, password: str | None = PASSWORD) -> None:
        self.args = list(args)
        self.password = password
        self.proc: asyncio.subprocess.Process | None = None
        self.output: str | None = None

    async def start(self) -> Share:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if self.password is not None:
            env["AIOSPICE_PASSWORD"] = self.password
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spice.cli", "usb", "share", *self.args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        return self

    async def stop(self, timeout: float = 15) -> str:
        """SIGINT (clean detach: images flushed), then the output (kept: stop twice is fine)."""
        assert self.proc is not None
        if self.output is not None:
            return self.output
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            self.proc.kill()
            out, _ = await self.proc.communicate()
        self.output = out.decode(errors="replace")
        return self.output

    async def __aenter__(self) -> Share:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def http_get(port: int, path: str, password: str | None = None) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = ""
    if password is not None:
        auth = "Authorization: Basic " + base64.b64encode(f"op:{password}".encode()).decode() + "\r\n"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
    data = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def usb_api(server: SpiceServer) -> list[dict]:
    status, body = await http_get(server.ports["plain"], "/api/v1/usb", PASSWORD)
    assert status == 200, body
    return json.loads(body)["devices"]


async def wait_until(predicate, timeout: float = 20.0, interval: float = 0.02):
    """Poll ``predicate()`` (sync or async) until truthy; returns its value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        v = predicate()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(interval)


async def shell(guest: BuiltinGuest, line: str, timeout: float = 30) -> list[str]:
    """Type ``line`` into the guest terminal; the lines it printed."""
    before = len(guest.terminal.lines)
    guest.terminal.type_text(line + "\n")
    await asyncio.sleep(0)
    await asyncio.wait_for(guest.shell.wait_idle(), timeout)
    return guest.terminal.lines[before:]
