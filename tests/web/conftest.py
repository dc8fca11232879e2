"""Fixtures for the front-door tests: a listener that hands non-REDQ connections to ``handle_http``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from spice.server.frontdoor import handle_http


@dataclass
class StubConfig:
    password: str | None = None
    allow_origin: list[str] = field(default_factory=list)
    port: int | None = None
    tls_port: int | None = None
    name: str = "aiospice-test"
    web_root: str | None = None
    ws_first_data_timeout: float | None = None


@dataclass
class StubServer:
    config: StubConfig = field(default_factory=StubConfig)
    stats: object | None = None


async def echo_spice(server, reader: asyncio.StreamReader, writer, first: bytes = b"") -> None:
    """Stand-in for the SPICE connection: echoes bytes; b"burst" makes it write 1000 small pieces."""
    while True:
        data = await reader.read(65536)
        if not data:
            break
        if data == b"burst":
            for i in range(1000):
                writer.write(i.to_bytes(4, "little") + b"xx")
            await writer.drain()
        else:
            writer.write(data)
            await writer.drain()
    writer.close()


class FrontDoor:
    def __init__(self, stub: StubServer) -> None:
        self.stub = stub
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.handled = 0

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(4)
        if first == b"REDQ" or not first:
            writer.close()
            return
        self.handled += 1
        await handle_http(self.stub, reader, writer, first, spice_handler=echo_spice)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.stub.config.port = self.port

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def frontdoor():
    fd = FrontDoor(StubServer())
    await fd.start()
    yield fd
    await fd.stop()
