"""Sans-I/O behaviour of usbredir.parser: negotiation, splitting, limits, hostile input, send checks."""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest
from construct import Struct
from hypothesis import given, settings
from hypothesis import strategies as st

from usbredir import proto
from usbredir.parser import GuestParser, HostParser, InvalidState, ProtocolError, Role, UsbredirParser
from usbredir.proto import (
    ALL_CAPS,
    STRUCT_FORMATS,
    BulkPacket,
    Cap,
    ControlPacket,
    DeviceConnect,
    DeviceDisconnect,
    DeviceDisconnectAck,
    FilterFilter,
    Hello,
    InterruptPacket,
    PacketType,
    SetConfiguration,
)


def pair(guest_caps=ALL_CAPS, host_caps=ALL_CAPS):
    g, h = GuestParser(guest_caps), HostParser(host_caps)
    h.receive_data(g.bytes_to_send())
    g.receive_data(h.bytes_to_send())
    assert isinstance(g.events_received()[0], Hello) and isinstance(h.events_received()[0], Hello)
    return g, h


def test_hello_bytes_match_spec_example():
    """§15 of the spec: the guest hello of libusbredirparser 0.13 with version 'pyguest 1', caps 0xfe."""
    g = UsbredirParser(Role.GUEST, 0xFE, "pyguest 1")
    expected = bytes.fromhex("00000000 44000000 00000000") + b"pyguest 1".ljust(64, b"\0") + bytes.fromhex("fe000000")
    assert g.bytes_to_send() == expected


def test_spec_control_example_bytes():
    g, h = pair(0xFE, 0xFE)
    g.send(ControlPacket(id=0x1122334455, endpoint=0x80, request=6, requesttype=0x80, value=0x100, length=18))
    assert g.bytes_to_send() == bytes.fromhex("64000000 0a000000 5544332211000000 80068000 0001 0000 1200")


@pytest.mark.parametrize("name", sorted(STRUCT_FORMATS))
def test_hot_structs_derived_from_construct(name):
    """The precompiled struct formats give the same bytes as the construct declarations."""
    decl: Struct = {
        "header32": proto.Header32, "header64": proto.Header64, "control": proto.ControlPacketHeader,
        "bulk32": proto.BulkPacketHeader, "bulk16": proto.BulkPacketHeader16, "iso": proto.IsoPacketHeader,
        "interrupt": proto.InterruptPacketHeader, "buffered_bulk": proto.BufferedBulkPacketHeader,
    }[name]
    s = struct.Struct(STRUCT_FORMATS[name])
    assert s.size == decl.sizeof()
    rng = random.Random(name)
    for _ in range(50):
        values = {}
        for sub in decl.subcons:
            values[sub.name] = rng.randrange(1 << (8 * sub.sizeof()))
        raw = decl.build(values)
        assert s.pack(*values.values()) == raw
        assert s.unpack(raw) == tuple(values.values())


def test_negotiation_64_and_32_bit_ids():
    g, h = pair()
    assert g.ids_64bit and h.ids_64bit and g.has_cap(Cap.BULK_RECEIVING)
    g, h = pair(ALL_CAPS & ~Cap.IDS_64BIT)
    assert not g.ids_64bit and not h.ids_64bit
    g.send(BulkPacket(id=3, endpoint=2, data=b"xy"))
    assert len(g.bytes_to_send()) == 12 + 10 + 2
    with pytest.raises(ValueError):
        g.send(BulkPacket(id=1 << 32, endpoint=0x81, length=5))
    assert g.bytes_to_send() == b""


def test_bulk_streams_cleared_without_max_packet_size():
    p = UsbredirParser(Role.HOST, Cap.BULK_STREAMS)
    assert not p.our_caps & Cap.BULK_STREAMS


def test_header_width_changes_right_after_hello_in_same_chunk():
    g = GuestParser()
    h = HostParser()
    h.receive_data(g.bytes_to_send())
    h.send(DeviceConnect(vendor_id=1, product_id=2))
    g.receive_data(h.bytes_to_send())  # hello (12-byte header) + connect (16-byte header), one chunk
    evs = g.events_received()
    assert [type(e) for e in evs] == [Hello, DeviceConnect] and evs[1].product_id == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 700), min_size=1, max_size=60))
def test_any_split_gives_same_packets(cuts):
    g, h = pair()
    sent = [BulkPacket(id=i, endpoint=0x81, data=bytes([i]) * (i * 37 % 1500)) for i in range(30)]
    sent += [ControlPacket(id=99, endpoint=0x80, request=6, requesttype=0x80, data=b"abc")]
    for p in sent:
        h.send(p)
    stream = h.bytes_to_send()
    pos, i = 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        g.receive_data(stream[pos:pos + n])
        pos += n
        i += 1
    got = g.events_received()
    assert [(p.id, bytes(p.data)) for p in got] == [(p.id, bytes(p.data)) for p in sent]


def test_payloads_are_zero_copy_views():
    g, h = pair()
    h.send(BulkPacket(id=1, endpoint=0x81, data=b"z" * 4096))
    chunk = h.bytes_to_send()
    g.receive_data(chunk)
    (pkt,) = g.events_received()
    assert isinstance(pkt.data, memoryview) and pkt.data.obj is chunk


def test_guest_acks_disconnect_itself():
    g, h = pair()
    h.send(DeviceDisconnect())
    g.receive_data(h.bytes_to_send())
    assert g.events_received() == [DeviceDisconnect()]
    h.receive_data(g.bytes_to_send())
    assert h.events_received() == [DeviceDisconnectAck()]


# ---------------------------------------------------------------- hostile input

def hostile(after_hello: bytes, role=Role.GUEST, **kw) -> tuple[UsbredirParser, list]:
    p = UsbredirParser(role, **kw)
    peer = UsbredirParser(Role.HOST if role is Role.GUEST else Role.GUEST)
    p.receive_data(peer.bytes_to_send() + after_hello)
    return p, p.events_received()


H = struct.Struct("<IIQ").pack


@pytest.mark.parametrize(("bad", "message"), [
    (H(77, 0, 0), "unknown packet type 77"),
    (H(PacketType.RESET, 0, 0), "reset may not be sent to a usb-guest"),
    (H(PacketType.HELLO, 68, 0) + bytes(68), "second hello"),
    (H(PacketType.DEVICE_CONNECT, 8, 0) + bytes(8), "invalid length 8 for device_connect"),
    (H(PacketType.DEVICE_DISCONNECT, 4, 0) + bytes(4), "invalid length 4 for device_disconnect"),
    (H(PacketType.BULK_PACKET, 0xFFFFFFFF, 1), "exceeds the maximum"),
    (H(PacketType.CONTROL_PACKET, 13, 1) + struct.pack("<BBBBHHH", 0x80, 6, 0x80, 0, 0, 0, 18) + b"abc",
     "control data length 3 != header length 18"),
    (H(PacketType.CONTROL_PACKET, 11, 1) + struct.pack("<BBBBHHH", 0x00, 9, 0, 0, 0, 0, 1) + b"a",
     "unexpected data"),
    (H(PacketType.INTERFACE_INFO, 132, 0) + struct.pack("<I", 40) + bytes(128), "interface_count 40 > 32"),
    (H(PacketType.FILTER_FILTER, 3, 0) + b"abc", "not NUL-terminated"),
])
def test_hostile_packets_close_the_parser(bad, message):
    p, events = hostile(bad + H(PacketType.DEVICE_DISCONNECT, 0, 0))
    assert isinstance(events[-1], ProtocolError) and message in str(events[-1])
    assert p.closed and p.error is events[-1]
    assert not any(isinstance(e, DeviceDisconnect) for e in events)  # nothing after the error
    p.receive_data(H(PacketType.DEVICE_DISCONNECT, 0, 0))
    assert p.events_received() == []
    with pytest.raises(InvalidState):
        p.send(SetConfiguration(id=1))


def test_packet_before_hello_and_bad_hello():
    p = GuestParser()
    p.receive_data(struct.pack("<III", PacketType.DEVICE_DISCONNECT, 0, 0))
    assert "before hello" in str(p.events_received()[-1])
    p = GuestParser()
    p.receive_data(struct.pack("<III", 0, 66, 0) + bytes(66))
    assert "multiple of 4" in str(p.events_received()[-1])


def test_host_rejects_guest_only_and_wrong_direction_packets():
    p, events = hostile(H(PacketType.DEVICE_CONNECT, 10, 0) + bytes(10), role=Role.HOST)
    assert "device_connect may not be sent to a usb-host" in str(events[-1])
    p, events = hostile(H(PacketType.INTERRUPT_PACKET, 4, 0) + struct.pack("<BBH", 0x81, 0, 8), role=Role.HOST)
    assert "wrong direction" in str(events[-1])


def test_unparsable_filter_is_dropped_like_c():
    p, events = hostile(H(PacketType.FILTER_FILTER, 4, 0) + b"1,2\0" + H(PacketType.DEVICE_DISCONNECT, 0, 0))
    assert [type(e) for e in events] == [Hello, DeviceDisconnect]


def test_eof_inside_a_packet_is_an_error():
    g, h = pair()
    h.send(BulkPacket(id=1, endpoint=0x81, data=bytes(100)))
    g.receive_data(h.bytes_to_send()[:50])
    g.receive_eof()
    assert isinstance(g.events_received()[-1], ProtocolError) and g.closed


def test_claimed_length_does_not_drive_allocation():
    """A header claiming 128 MiB followed by a trickle: memory follows the bytes received."""
    g, h = pair()
    header = H(PacketType.BULK_PACKET, 10 + 100_000_000, 1) + struct.pack("<BBHIH", 0x81, 0, 100_000_000 & 0xFFFF,
                                                                          0, 100_000_000 >> 16)
    tracemalloc.start()
    g.receive_data(header)
    for _ in range(100):
        g.receive_data(bytes(1000))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000
    assert g.events_received() == [] and not g.closed


def test_max_packet_length_option():
    p, events = hostile(H(PacketType.BULK_PACKET, 2_000_000, 1), max_packet_length=1 << 20)
    assert "exceeds the maximum 1048576" in str(events[-1])


def test_flood_of_small_packets_is_bounded_by_what_is_buffered():
    g, h = pair()
    for i in range(5000):
        h.send(InterruptPacket(id=i, endpoint=0x81, data=b"12345678"))
    stream = h.bytes_to_send()
    g.receive_data(stream)
    assert len(g.events_received()) == 5000 and not g._head


# ---------------------------------------------------------------- send checks

def test_send_rules():
    g = GuestParser()
    with pytest.raises(InvalidState, match="before the peer's hello"):
        g.send(SetConfiguration(id=1, configuration=1))
    g, h = pair(host_caps=ALL_CAPS & ~Cap.FILTER)
    with pytest.raises(InvalidState, match="may not send device_connect"):
        g.send(DeviceConnect())
    with pytest.raises(InvalidState):
        g.send(Hello())
    with pytest.raises(ValueError, match="lacks filter"):
        g.send(FilterFilter(rules="-1,-1,-1,-1,1"))
    with pytest.raises(ValueError, match="data length"):
        g.send(ControlPacket(id=1, endpoint=0, length=4, data=b"ab"))
    with pytest.raises(ValueError, match="unexpected"):
        g.send(BulkPacket(id=1, endpoint=0x81, length=4, data=b"ab"))
    with pytest.raises(ValueError, match="wrong direction"):
        g.send(InterruptPacket(id=1, endpoint=0x81, length=8))
    with pytest.raises(ValueError):
        g.send(SetConfiguration(id=1, configuration=300))
    assert g.bytes_to_send() == b""


def test_assembly_buffer_reused_only_when_unreferenced():
    g, h = pair()
    for i in range(3):
        h.send(BulkPacket(id=i, endpoint=0x81, data=bytes([i + 1]) * 3000))
    stream = h.bytes_to_send()
    size = len(stream) // 3

    def feed(part: bytes) -> list:
        for k in range(0, len(part), 1000):  # every packet arrives in pieces
            g.receive_data(part[k:k + 1000])
        return g.events_received()

    (a,) = feed(stream[:size])
    buf_a = g._spare
    (b,) = feed(stream[size:2 * size])
    assert g._spare is not buf_a  # a still holds its buffer: not overwritten
    assert bytes(a.data) == b"\x01" * 3000 and bytes(b.data) == b"\x02" * 3000
    buf_b = g._spare
    del a, b
    (c,) = feed(stream[2 * size:])
    assert g._spare is buf_b and bytes(c.data) == b"\x03" * 3000  # released: reused


@pytest.mark.parametrize(("words", "caps"), [(b"", 0), (struct.pack("<III", 0xFF, 7, 9), 0xFF)])
def test_hello_with_zero_or_extra_cap_words(words, caps):
    p = GuestParser()
    p.receive_data(struct.pack("<III", 0, 64 + len(words), 0) + b"peer".ljust(64, b"\0") + words)
    (hello,) = p.events_received()
    assert hello.caps == caps and p.peer_caps == caps and p.ids_64bit == bool(caps & Cap.IDS_64BIT)
