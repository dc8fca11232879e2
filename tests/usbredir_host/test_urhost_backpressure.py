"""A usbredir peer that queues bulk OUT data faster than the device takes it is no longer read:
the share process's memory for queued data stays bounded (usbredir.host.MAX_PENDING_BYTES)."""

from __future__ import annotations

import asyncio

import usbredir.host as host_mod
from usbredir import proto as P
from usbredir.device import Speed, Status, TransferResult, UsbDevice
from usbredir.host import serve_stream
from usbredir.parser import Role, UsbredirParser


class SlowSink(UsbDevice):
    """A high-speed device with one bulk OUT endpoint that accepts nothing until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.accepted = 0

    @property
    def speed(self) -> Speed:
        return Speed.HIGH

    @property
    def device_descriptor(self) -> bytes:
        return bytes([18, 1, 0, 2, 0, 0, 0, 64, 0x09, 0x12, 1, 0, 0, 1, 0, 0, 0, 1])

    @property
    def config_descriptors(self) -> list[bytes]:
        cfg = bytes([9, 2, 25, 0, 1, 1, 0, 0x80, 50])
        iface = bytes([9, 4, 0, 0, 1, 0xFF, 0, 0, 0])
        ep = bytes([7, 5, 0x01, 2, 0, 2, 0])
        return [cfg + iface + ep]

    async def control(self, setup, data=b""):
        return TransferResult(Status.SUCCESS)

    async def bulk(self, endpoint, data=None, length=0):
        await self.release.wait()
        self.accepted += len(data or b"")
        return TransferResult(Status.SUCCESS, actual=len(data or b""))


async def test_flooding_peer_is_not_read_past_the_pending_limit(monkeypatch):
    monkeypatch.setattr(host_mod, "MAX_PENDING_BYTES", 4 << 20)
    device = SlowSink()
    server_side: list[asyncio.StreamReader] = []

    async def on_conn(reader, writer):
        server_side.append(reader)
        await serve_stream(device, reader, writer, close_device=False)

    srv = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    guest = UsbredirParser(Role.GUEST, P.Cap.CONNECT_DEVICE_VERSION | P.Cap.EP_INFO_MAX_PACKET_SIZE
                           | P.Cap.IDS_64BIT | P.Cap.BULK_LENGTH_32BIT, "test guest")
    writer.writelines(guest.data_to_send())
    while not guest.negotiated:  # the host's hello
        guest.receive_data(await reader.read(65536))
        guest.events_received()
    chunk = bytes(1 << 20)
    sent = 0

    async def flood() -> None:
        nonlocal sent
        for i in range(64):  # 64 MiB offered; the device takes none of it
            guest.send(P.BulkPacket(id=i + 1, endpoint=0x01, length=len(chunk), data=chunk))
            writer.writelines(guest.data_to_send())
            await writer.drain()
            sent += len(chunk)

    task = asyncio.create_task(flood())
    await asyncio.sleep(2.0)
    assert not task.done(), "the host kept reading although the device accepted nothing"
    assert sent < 40 << 20  # socket buffers hold some; the rest waits at the peer
    device.release.set()  # the device drains: reading resumes and everything arrives
    await asyncio.wait_for(task, 30)
    for _ in range(300):
        if device.accepted == 64 << 20:
            break
        await asyncio.sleep(0.05)
    assert device.accepted == 64 << 20
    writer.close()
    srv.close()
