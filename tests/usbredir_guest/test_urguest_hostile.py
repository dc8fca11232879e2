"""Hostile usb-hosts against the TCP listener: garbage, floods, too many connections, a host that
vanishes with transfers in flight.  Each ends in a clean close; the listener keeps serving."""

from __future__ import annotations

import asyncio
import struct

import pytest

from usbredir import proto as P
from usbredir.device import EndpointType, SetupPacket, Status
from usbredir.guest_listener import GuestListener
from usbredir.parser import HostParser

pytestmark = pytest.mark.timeout(60)

TYPES = [255] * 32
TYPES[0] = TYPES[16] = EndpointType.CONTROL
TYPES[P.ep2i(0x81)] = EndpointType.INTERRUPT
INTERVAL = [0] * 32
INTERVAL[P.ep2i(0x81)] = 8
DEVICE = [P.InterfaceInfo(0, (0,), (3,), (1,), (1,)),
          P.EpInfo(0, tuple(TYPES), tuple(INTERVAL), (0,) * 32, (8,) * 32),
          P.DeviceConnect(0, 1, 0, 0, 0, 0x1111, 0x2222, 0x0100)]
DESC = bytes([18, 1, 0, 2, 0, 0, 0, 8, 0x11, 0x11, 0x22, 0x22, 0, 1, 0, 0, 0, 1])
CONFIG = bytes([9, 2, 25, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 1, 3, 1, 1, 0, 7, 5, 0x81, 3, 8, 0, 8])


class ScriptedHost:
    """A usb-host on a raw socket driven by our HostParser (answers the descriptor reads)."""

    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer
        self.p = HostParser()
        self.requests: list = []

    @classmethod
    async def connect(cls, port: int) -> ScriptedHost:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def pump(self, answer: bool = True) -> None:
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            self.p.receive_data(data)
            for ev in self.p.events_received():
                self.requests.append(ev)
                if isinstance(ev, P.Hello):
                    self.send(*DEVICE)
                elif isinstance(ev, P.ControlPacket) and answer:
                    blob = {1: DESC, 2: CONFIG}.get(ev.value >> 8, b"")
                    self.send(ev._replace(length=min(len(blob), ev.length), data=blob[:ev.length],
                                          status=0 if blob else 4))

    def send(self, *pkts) -> None:
        for pkt in pkts:
            self.p.send(pkt)
        self.writer.writelines(self.p.data_to_send())


async def test_garbage_closes_connection_listener_keeps_serving():
    async with GuestListener() as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n" * 10)
        assert await asyncio.wait_for(reader.read(), 10) != b""  # our hello, then EOF
        assert reader.at_eof()
        writer.close()
        host = await ScriptedHost.connect(listener.port)
        pump = asyncio.create_task(host.pump())
        dev = await listener.next_device(timeout=10)
        assert (dev.vendor_id, dev.product_id) == (0x1111, 0x2222) and dev.config_descriptors == [CONFIG]
        host.writer.close()
        await asyncio.wait_for(pump, 10)


async def test_host_vanishing_fails_pending_transfers():
    gone = asyncio.Event()
    async with GuestListener() as listener:
        host = await ScriptedHost.connect(listener.port)
        pump = asyncio.create_task(host.pump())
        dev = await listener.next_device(timeout=10)
        dev.on_disconnect = gone.set
        pump.cancel()  # from now on the host answers nothing
        pending = asyncio.create_task(dev.control(SetupPacket(0x80, 0, 0, 0, 2)))
        await asyncio.sleep(0.1)
        assert not pending.done()
        host.writer.close()
        assert (await asyncio.wait_for(pending, 10)).status == Status.IOERROR
        await asyncio.wait_for(gone.wait(), 10)
        assert dev.detached


async def test_interrupt_flood_and_unknown_replies_are_bounded():
    async with GuestListener() as listener:
        host = await ScriptedHost.connect(listener.port)
        pump = asyncio.create_task(host.pump())
        dev = await listener.next_device(timeout=10)
        assert (await dev.interrupt(0x81, None, 8)).status == Status.NAK  # starts the stream
        await asyncio.sleep(0.1)
        host.send(P.InterruptReceivingStatus(0, 0, 0x81))
        for i in range(20_000):
            host.p.send(P.InterruptPacket(i, 0x81, 0, 8, struct.pack("<Q", i)))
        for i in range(2000):
            host.p.send(P.ControlPacket(10_000 + i, 0x80, 6, 0x80, 0, 0, 0, 4, b"junk"))
        host.writer.writelines(host.p.data_to_send())
        core = dev.conn.core
        for _ in range(200):
            if core.stats.dropped_replies >= 2000:
                break
            await asyncio.sleep(0.05)
        assert core.stats.dropped_replies == 2000
        queue = core._streams[0x81].queue
        assert len(queue) == 1000  # bounded: the newest 1000 of 20000
        r = await dev.interrupt(0x81, None, 8)
        assert r.status == Status.SUCCESS and struct.unpack("<Q", bytes(r.data))[0] == 19_000
        await asyncio.wait_for(dev.wait_for_data(0x81), 1)  # more data queued: returns at once
        host.writer.close()
        await asyncio.wait_for(pump, 10)


async def test_too_many_connections_are_refused():
    async with GuestListener(max_connections=2) as listener:
        conns = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(3)]
        await asyncio.sleep(0.2)
        assert len(listener.connections) == 2
        assert await asyncio.wait_for(conns[2][0].read(), 5) == b""  # closed without a hello
        for _, w in conns:
            w.close()


async def test_disconnect_then_next_device_on_the_same_connection():
    loop = asyncio.get_running_loop()
    async with GuestListener() as listener:
        host = await ScriptedHost.connect(listener.port)
        pump = asyncio.create_task(host.pump())
        first = await listener.next_device(timeout=10)
        gone_at: list[float] = []
        first.on_disconnect = lambda: gone_at.append(loop.time())
        host.send(P.DeviceDisconnect())
        await asyncio.sleep(0.05)
        host.send(*DEVICE)  # the next device, at once
        second = await listener.next_device(timeout=10)
        assert first.detached and not second.detached and second is not first
        assert loop.time() - gone_at[0] >= 0.19  # announced after the re-attach delay
        assert any(isinstance(r, P.DeviceDisconnectAck) for r in host.requests)
        assert (await first.control(SetupPacket(0x80, 6, 0x100, 0, 18))).status == Status.IOERROR
        assert bytes((await second.control(SetupPacket(0x80, 6, 0x100, 0, 18))).data) == DESC
        host.writer.close()
        await asyncio.wait_for(pump, 10)
