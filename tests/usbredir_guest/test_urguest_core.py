"""GuestCore (sans-I/O usb-guest) against a scripted usb-host built on our HostParser:
attach, request mapping, streams, status mapping, and hostile host streams."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from usbredir import proto as P
from usbredir.device import EndpointType, SetupPacket, Status, TransferResult
from usbredir.parser import HostParser
from usbredir.redirected import Attached, Closed, Completed, DataAvailable, Detached, GuestCore

EP_TYPES = [255] * 32
EP_TYPES[0] = EP_TYPES[16] = EndpointType.CONTROL
EP_TYPES[P.ep2i(0x81)] = EndpointType.INTERRUPT
EP_TYPES[P.ep2i(0x82)] = EndpointType.BULK
EP_TYPES[P.ep2i(0x02)] = EndpointType.BULK
EP_TYPES[P.ep2i(0x83)] = EndpointType.ISO
INTERVAL = [0] * 32
INTERVAL[P.ep2i(0x81)] = INTERVAL[P.ep2i(0x83)] = 4
IFACE = [0] * 32
IFACE[P.ep2i(0x83)] = 1
MAXP = [64] * 32
EP_INFO = P.EpInfo(0, tuple(EP_TYPES), tuple(INTERVAL), tuple(IFACE), tuple(MAXP))
IFACES = P.InterfaceInfo(0, (0, 1), (3, 1), (1, 2), (1, 0))
CONNECT = P.DeviceConnect(0, 2, 0, 0, 0, 0x1234, 0x5678, 0x0100)


class Link:
    """A GuestCore wired to a scripted usb-host parser."""

    def __init__(self, *, rules=None, host_caps=P.ALL_CAPS, attach=True, **kw) -> None:
        self.core = GuestCore(rules, **kw)
        self.host = HostParser(host_caps)
        self.to_host()
        self.from_host()
        if attach:
            self.host_send(IFACES, EP_INFO, CONNECT)
            evs = self.core.events_received()
            assert [type(e) for e in evs] == [Attached]

    def to_host(self) -> list:
        self.host.receive_data(self.core.bytes_to_send())
        return self.host.events_received()

    def from_host(self) -> None:
        self.core.receive_data(self.host.bytes_to_send())

    def host_send(self, *pkts) -> None:
        for p in pkts:
            self.host.send(p)
        self.from_host()


def test_attach_info_and_filter_sent_after_hello():
    link = Link(rules="0x08,-1,-1,-1,0|-1,-1,-1,-1,1", attach=False)
    assert link.host.peer_version == "aiospice usb-guest 0.1"
    evs = link.to_host()  # the filter goes out once the host's hello is in
    assert [type(e) for e in evs] == [P.FilterFilter]
    assert evs[0].rules == "0x08,-1,-1,-1,0|-1,-1,-1,-1,1"
    link.host_send(IFACES, EP_INFO, CONNECT)
    (ev,) = link.core.events_received()
    assert isinstance(ev, Attached) and ev.info.connect.vendor_id == 0x1234 and ev.info.ep_type(0x81) == 3


def test_control_and_standard_requests_map_to_packets():
    link = Link()
    core = link.core
    assert core.control(SetupPacket(0x00, 5, 7, 0, 0)) == TransferResult(Status.SUCCESS)  # SET_ADDRESS local
    rid = core.control(SetupPacket(0x80, 6, 0x100, 0, 18))
    cfg = core.control(SetupPacket(0x00, 9, 1, 0, 0))
    alt = core.control(SetupPacket(0x01, 11, 1, 1, 0))
    gcfg = core.control(SetupPacket(0x80, 8, 0, 0, 1))
    galt = core.control(SetupPacket(0x81, 10, 0, 1, 1))
    out = core.control(SetupPacket(0x21, 9, 0x200, 0, 3), b"abc")
    reqs = link.to_host()
    assert reqs == [
        P.ControlPacket(rid, 0x80, 6, 0x80, 0, 0x100, 0, 18, b""),
        P.SetConfiguration(cfg, 1), P.SetAltSetting(alt, 1, 1), P.GetConfiguration(gcfg), P.GetAltSetting(galt, 1),
        P.ControlPacket(out, 0x00, 9, 0x21, 0, 0x200, 0, 3, b"abc"),
    ]
    desc = bytes(range(18))
    link.host_send(reqs[0]._replace(length=18, data=desc), P.ConfigurationStatus(cfg, 0, 1),
                   P.AltSettingStatus(alt, 0, 1, 1), P.ConfigurationStatus(gcfg, 0, 1),
                   P.AltSettingStatus(galt, 0, 1, 1), reqs[5]._replace(status=4, data=b""))
    done = {e.id: e.result for e in core.events_received() if isinstance(e, Completed)}
    assert bytes(done[rid].data) == desc and done[rid].status == Status.SUCCESS
    assert done[cfg].status == Status.SUCCESS and done[alt].status == Status.SUCCESS
    assert bytes(done[gcfg].data) == b"\x01" and bytes(done[galt].data) == b"\x01"
    assert done[out].status == Status.STALL


@pytest.mark.parametrize(("wire", "seen"), [(0, Status.SUCCESS), (1, Status.IOERROR), (2, Status.IOERROR),
                                            (3, Status.IOERROR), (4, Status.STALL), (5, Status.IOERROR),
                                            (6, Status.BABBLE), (77, Status.IOERROR)])
def test_status_mapping(wire, seen):
    link = Link()
    link.core.bulk(0x82, None, 64)
    (req,) = link.to_host()
    link.host_send(req._replace(status=wire, length=0))
    (ev,) = link.core.events_received()
    assert ev.result.status == seen


def test_bulk_in_reply_longer_than_requested_is_babble():
    link = Link()
    rid = link.core.bulk(0x82, None, 4)
    (req,) = link.to_host()
    link.host_send(req._replace(length=8, data=b"12345678"))
    (ev,) = link.core.events_received()
    assert ev.id == rid and ev.result.status == Status.BABBLE and bytes(ev.result.data) == b"1234"


def test_unknown_ids_wrong_endpoint_and_cancelled_replies_are_dropped():
    link = Link()
    core = link.core
    rid = core.bulk(0x82, None, 64)
    (req,) = link.to_host()
    link.host_send(req._replace(id=rid + 1000, length=1, data=b"x"),          # unknown id
                   P.BulkPacket(rid, 0x02, 0, 0, 0, b""),                      # right id, wrong endpoint
                   P.ControlPacket(rid, 0x80, 6, 0x80, 0, 0, 0, 1, b"y"))     # right id, wrong type
    assert core.events_received() == [] and core.stats.dropped_replies == 3
    core.cancel(rid)
    assert link.to_host() == [P.CancelDataPacket(rid)]
    link.host_send(req._replace(status=1, length=0))
    assert core.events_received() == [] and core.stats.dropped_replies == 4
    # a second late reply for the same id is unknown now: dropped as well
    link.host_send(req._replace(status=0, length=0))
    assert core.events_received() == [] and core.stats.dropped_replies == 5


def test_interrupt_in_stream_queue_bounded_and_stall_restart():
    link = Link()
    core = link.core
    assert core.interrupt(0x81, None, 8).status == Status.NAK
    assert link.to_host() == [P.StartInterruptReceiving(0, 0x81)]
    assert core.interrupt(0x81, None, 8).status == Status.NAK
    link.host_send(P.InterruptReceivingStatus(0, 0, 0x81))
    for i in range(5000):  # flood
        link.host.send(P.InterruptPacket(i, 0x81, 0, 8, struct.pack("<Q", i)))
    link.from_host()
    assert any(isinstance(e, DataAvailable) for e in core.events_received())
    got = []
    while (r := core.interrupt(0x81, None, 8)).status == Status.SUCCESS:
        got.append(struct.unpack("<Q", bytes(r.data))[0])
    assert r.status == Status.NAK
    assert got == list(range(4000, 5000))  # bounded queue keeps the newest 1000
    assert core.stats.dropped_stream_packets == 4000
    link.host_send(P.InterruptReceivingStatus(0, 4, 0x81))  # the stream died
    assert core.interrupt(0x81, None, 8).status == Status.STALL
    assert core.interrupt(0x81, None, 8).status == Status.NAK  # restarted
    assert link.to_host() == [P.StartInterruptReceiving(0, 0x81)]


def test_unsolicited_stream_data_is_dropped():
    link = Link()
    link.host_send(P.InterruptPacket(0, 0x81, 0, 3, b"abc"), P.IsoPacket(0, 0x83, 0, 3, b"abc"))
    assert link.core.events_received() == [] and link.core.stats.dropped_stream_packets == 2


def test_set_interface_stops_that_interfaces_streams():
    link = Link()
    core = link.core
    assert core.iso(0x83, None, 64) == TransferResult(Status.SUCCESS, b"", 0)
    assert core.interrupt(0x81, None, 8).status == Status.NAK
    (start_iso, start_int) = link.to_host()
    assert isinstance(start_iso, P.StartIsoStream) and start_iso.endpoint == 0x83 and start_iso.pkts_per_urb >= 1
    link.host_send(P.IsoPacket(0, 0x83, 0, 3, b"iso"))
    assert core.iso(0x83, None, 64) == TransferResult(Status.SUCCESS, b"iso", 3)
    alt = core.control(SetupPacket(0x01, 11, 1, 1, 0))  # interface 1 owns 0x83
    assert link.to_host() == [P.StopIsoStream(0, 0x83), P.SetAltSetting(alt, 1, 1)]


def test_buffered_bulk_when_announced():
    link = Link(buffered_bulk=[0x82])
    core = link.core
    assert core.bulk(0x82, None, 100).status == Status.NAK
    (start,) = link.to_host()
    assert isinstance(start, P.StartBulkReceiving) and start.endpoint == 0x82 and start.bytes_per_transfer % 64 == 0
    link.host_send(P.BulkReceivingStatus(0, 0, 0x82, 0), P.BufferedBulkPacket(0, 0, 5, 0x82, 0, b"hello"),
                   P.BufferedBulkPacket(1, 0, 6, 0x82, 0, b" world"))
    assert bytes(core.bulk(0x82, None, 8).data) == b"hello wo"
    assert bytes(core.bulk(0x82, None, 8).data) == b"rld"
    assert core.bulk(0x82, None, 8).status == Status.NAK


def test_disconnect_fails_pending_and_acks():
    link = Link()
    core = link.core
    rid = core.bulk(0x82, None, 64)
    link.to_host()
    link.host_send(P.DeviceDisconnect())
    evs = core.events_received()
    assert Completed(rid, TransferResult(Status.IOERROR)) in evs and isinstance(evs[-1], Detached)
    assert link.to_host() == [P.DeviceDisconnectAck()]
    assert core.bulk(0x82, None, 64).status == Status.IOERROR
    # the same connection can carry the next device
    link.host_send(IFACES, EP_INFO, CONNECT)
    assert [type(e) for e in core.events_received()] == [Attached]


def test_filter_reject_sends_filter_reject():
    link = Link(rules="0x03,-1,-1,-1,0|-1,-1,-1,-1,1", attach=False)  # block HID (interface class 3)
    link.to_host()
    link.host_send(IFACES, EP_INFO, CONNECT)
    assert link.core.events_received() == [] and link.core.stats.rejected == 1
    assert link.to_host() == [P.FilterReject()]


@pytest.mark.parametrize("script", [
    [CONNECT],                                                                     # connect before infos
    [IFACES, EP_INFO._replace(interval=(0,) * 32), CONNECT],                       # interrupt ep interval 0
    [IFACES, EP_INFO._replace(type=(7,) * 32), CONNECT],                           # bad ep type
])
def test_inconsistent_device_is_rejected(script):
    link = Link(attach=False)
    link.to_host()
    link.host_send(*script)
    assert not link.core.attached and link.core.stats.rejected >= 1
    assert P.FilterReject() in link.to_host()


@pytest.mark.parametrize("garbage", [
    b"\xff" * 64,
    struct.pack("<IIQ", 200, 0, 0),
    struct.pack("<IIQ", P.PacketType.BULK_PACKET, 0xFFFFFFF0, 1),
    struct.pack("<IIQ", P.PacketType.DEVICE_CONNECT, 3, 0) + b"abc",
    struct.pack("<IIQ", P.PacketType.SET_CONFIGURATION, 1, 0) + b"\x01",
])
def test_garbage_from_host_closes_cleanly(garbage):
    link = Link()
    rid = link.core.bulk(0x82, None, 64)
    link.core.receive_data(garbage)
    evs = link.core.events_received()
    assert Completed(rid, TransferResult(Status.IOERROR)) in evs
    assert isinstance(evs[-1], Closed) and evs[-1].error is not None and link.core.closed
    assert link.core.bulk(0x82, None, 64).status == Status.IOERROR


def test_huge_reply_claim_is_bounded():
    """A host claiming a 100 MB reply is refused by the guest's length limit, before buffering."""
    link = Link()
    link.core.bulk(0x82, None, 64)
    tracemalloc.start()
    link.core.receive_data(struct.pack("<IIQ", P.PacketType.BULK_PACKET, 100_000_010, 1) + bytes(64 * 1024))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert link.core.closed and peak < 1_000_000


async def test_cancel_and_wait_ends_a_task_that_swallowed_its_first_cancel():
    """Python 3.11's wait_for can lose a cancel; a poll loop that then waits with no timeout must still end."""
    import asyncio as aio

    from usbredir.guest.core import cancel_and_wait

    swallowed = []

    async def poll_loop():
        try:
            await aio.sleep(3600)
        except aio.CancelledError:
            swallowed.append(True)  # as if wait_for had returned a result instead
        await aio.Event().wait()  # the next interrupt transfer, no timeout

    task = aio.create_task(poll_loop())
    await aio.sleep(0)
    await aio.wait_for(cancel_and_wait(task, retry=0.05), 5)
    assert swallowed and task.cancelled()
