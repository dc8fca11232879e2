"""Our usbredir parser against libusbredirparser 0.13 (C harness): every packet type, both roles,
32/64-bit ids and cap-dependent layouts, in both directions; plus randomised packets."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from usbredir_proto_lines import from_line, to_line

from usbredir import filter as usbfilter
from usbredir.parser import ProtocolError, Role, UsbredirParser
from usbredir.proto import (
    ALL_CAPS,
    STRUCT_FORMATS,
    AllocBulkStreams,
    AltSettingStatus,
    BufferedBulkPacket,
    BulkPacket,
    BulkReceivingStatus,
    BulkStreamsStatus,
    CancelDataPacket,
    Cap,
    ConfigurationStatus,
    ControlPacket,
    DeviceConnect,
    DeviceDisconnect,
    EpInfo,
    FilterFilter,
    FilterReject,
    FreeBulkStreams,
    GetAltSetting,
    GetConfiguration,
    InterfaceInfo,
    InterruptPacket,
    InterruptReceivingStatus,
    IsoPacket,
    IsoStreamStatus,
    PacketType,
    Reset,
    SetAltSetting,
    SetConfiguration,
    StartBulkReceiving,
    StartInterruptReceiving,
    StartIsoStream,
    StopBulkReceiving,
    StopInterruptReceiving,
    StopIsoStream,
    type_header,
    verify_caps,
)

CAPS_CASES = [
    pytest.param(ALL_CAPS, ALL_CAPS, id="all-64bit"),
    pytest.param(ALL_CAPS & ~Cap.IDS_64BIT, ALL_CAPS, id="32bit-ids"),
    pytest.param(Cap(0), Cap(0), id="no-caps"),
    pytest.param(Cap.EP_INFO_MAX_PACKET_SIZE | Cap.IDS_64BIT, ALL_CAPS, id="maxp-only"),
]
OTHER = {Role.HOST: "guest", Role.GUEST: "host"}


def run(harness, *args: str, data: bytes = b"") -> bytes:
    return subprocess.run([str(harness), *args], input=data, capture_output=True, check=True, timeout=60).stdout


def samples(role: Role, neg: int) -> list:
    """One or more packets of every type ``role`` may send, valid under the negotiated caps."""
    out: list = []
    payload = bytes(range(256)) * 3
    if role is Role.HOST:
        out += [
            InterfaceInfo(interface=(0, 1, 2), interface_class=(8, 3, 255), interface_subclass=(6, 0, 1),
                          interface_protocol=(0x50, 1, 2)),
            EpInfo(type=tuple(i % 4 if i % 5 else 255 for i in range(32)), interval=tuple(range(32)),
                   interface=tuple(31 - i for i in range(32)), max_packet_size=tuple(i * 33 for i in range(32)),
                   max_streams=tuple(i * 65537 for i in range(32))),
            DeviceConnect(speed=2, device_class=0xEF, device_subclass=2, device_protocol=1, vendor_id=0x1234,
                          product_id=0x5678, device_version_bcd=0x0102),
            ConfigurationStatus(id=7, status=0, configuration=1),
            AltSettingStatus(id=8, status=2, interface=1, alt=255),
            IsoStreamStatus(id=9, status=4, endpoint=0x83),
            InterruptReceivingStatus(id=10, status=0, endpoint=0x81),
            BulkStreamsStatus(id=11, endpoints=0x00020004, no_streams=16, status=0),
            ControlPacket(id=0x1122334455 if neg & Cap.IDS_64BIT else 0x11223344, endpoint=0x80, request=6,
                          requesttype=0x80, value=0x100, index=0, data=payload[:18]),
            ControlPacket(id=13, endpoint=0x00, request=9, requesttype=0x21, status=4, value=0x200, index=1, length=8),
            BulkPacket(id=14, endpoint=0x81, status=0, data=payload, stream_id=0),
            BulkPacket(id=15, endpoint=0x02, status=3, length=4096, stream_id=5),
            IsoPacket(id=16, endpoint=0x83, status=0, data=payload[:192]),
            InterruptPacket(id=17, endpoint=0x81, status=0, data=payload[:8]),
            InterruptPacket(id=18, endpoint=0x02, status=0, length=8),
            DeviceDisconnect(),
        ]
        if neg & Cap.BULK_RECEIVING:
            out += [BulkReceivingStatus(id=19, stream_id=0, endpoint=0x81, status=0),
                    BufferedBulkPacket(id=20, stream_id=0, endpoint=0x81, status=0, data=payload[:300])]
        if neg & Cap.BULK_LENGTH_32BIT:
            out.append(BulkPacket(id=21, endpoint=0x82, data=bytes(70000)))
    else:
        out += [
            Reset(),
            SetConfiguration(id=1, configuration=1),
            GetConfiguration(id=2),
            SetAltSetting(id=3, interface=1, alt=2),
            GetAltSetting(id=4, interface=1),
            StartIsoStream(id=5, endpoint=0x83, pkts_per_urb=8, no_urbs=4),
            StopIsoStream(id=6, endpoint=0x83),
            StartInterruptReceiving(id=7, endpoint=0x81),
            StopInterruptReceiving(id=8, endpoint=0x81),
            AllocBulkStreams(id=9, endpoints=0x00020004, no_streams=16),
            FreeBulkStreams(id=10, endpoints=0x00020004),
            CancelDataPacket(id=11),
            ControlPacket(id=12, endpoint=0x80, request=6, requesttype=0x80, value=0x100, length=64),
            ControlPacket(id=13, endpoint=0x00, request=9, requesttype=0x21, value=0x200, index=1, data=b"\x01" * 8),
            BulkPacket(id=0xFFFFFFFF, endpoint=0x02, data=bytes(range(200)), stream_id=3),
            BulkPacket(id=15, endpoint=0x81, length=16384),
            IsoPacket(id=0, endpoint=0x03, data=bytes(100)),
            InterruptPacket(id=17, endpoint=0x02, data=b"abc"),
        ]
        if neg & Cap.FILTER:
            out += [FilterReject(), FilterFilter(rules="0x03,-1,-1,-1,0|-1,0x1234,0x5678,0x0100,1|-1,-1,-1,-1,1")]
        if neg & Cap.BULK_RECEIVING:
            out += [StartBulkReceiving(id=18, stream_id=0, bytes_per_transfer=512 * 4, endpoint=0x81, no_transfers=5),
                    StopBulkReceiving(id=19, stream_id=0, endpoint=0x81)]
    return out


def c_hello_for(harness, role: Role, c_caps: int, our_caps: int) -> bytes:
    """The hello a C parser of the other role writes."""
    return run(harness, "write", OTHER[role], str(int(c_caps)), data=f"peer caps={int(our_caps)}\n".encode())


def ours_to_c(harness, role: Role, our_caps: int, c_caps: int, packets: list) -> tuple[list[str], list[str]]:
    p = UsbredirParser(role, our_caps)
    p.receive_data(c_hello_for(harness, role, c_caps, p.our_caps))
    assert [type(e).__name__ for e in p.events_received()] == ["Hello"]
    for pkt in packets:
        p.send(pkt)
    got = run(harness, "parse", OTHER[role], str(int(c_caps)), data=p.bytes_to_send()).decode().splitlines()
    expected = [f"hello version={p.version} caps={int(p.our_caps)}"] + [to_line(x, p.negotiated) for x in packets]
    return got, expected


def c_to_ours(harness, role: Role, our_caps: int, c_caps: int, lines: list[str]) -> tuple[list[str], list[str]]:
    p = UsbredirParser(role, our_caps)
    ours_hello = p.bytes_to_send()
    assert ours_hello
    stream = run(harness, "write", OTHER[role], str(int(c_caps)),
                 data=(f"peer caps={int(p.our_caps)}\n" + "\n".join(lines) + "\n").encode())
    p.receive_data(stream)
    events = p.events_received()
    assert not any(isinstance(e, ProtocolError) for e in events), events
    c_caps_eff = int(verify_caps(c_caps | (Cap.DEVICE_DISCONNECT_ACK if role is Role.HOST else 0)))
    expected = [f"hello version=C harness caps={c_caps_eff}"] + lines
    return [to_line(e, p.negotiated) for e in events], expected


def test_struct_sizes_match_c_headers(harness):
    sizes = dict(line.split() for line in run(harness, "sizes").decode().splitlines())
    neg = ALL_CAPS
    for t in PacketType:
        name = f"usb_redir_{t.name.lower()}_header"
        if name in sizes:
            assert type_header(t, neg).sizeof() == int(sizes[name]), t
    assert sizes["usb_redir_header"] == "16"
    import struct
    assert struct.calcsize(STRUCT_FORMATS["header64"]) == 16 and struct.calcsize(STRUCT_FORMATS["header32"]) == 12


@pytest.mark.parametrize("role", [Role.HOST, Role.GUEST])
@pytest.mark.parametrize(("our_caps", "c_caps"), CAPS_CASES)
def test_every_packet_ours_parsed_by_c(harness, role, our_caps, c_caps):
    neg = verify_caps(our_caps) & verify_caps(c_caps | Cap.DEVICE_DISCONNECT_ACK)
    got, expected = ours_to_c(harness, role, our_caps, c_caps, samples(role, neg))
    assert got == expected


@pytest.mark.parametrize("role", [Role.HOST, Role.GUEST])
@pytest.mark.parametrize(("our_caps", "c_caps"), CAPS_CASES)
def test_every_packet_written_by_c_parsed_by_us(harness, role, our_caps, c_caps):
    other = Role.GUEST if role is Role.HOST else Role.HOST
    neg = verify_caps(our_caps | Cap.DEVICE_DISCONNECT_ACK) & verify_caps(c_caps | Cap.DEVICE_DISCONNECT_ACK)
    p = UsbredirParser(role, our_caps)
    lines = [to_line(x, p.our_caps & verify_caps(c_caps)) for x in samples(other, neg)]
    got, expected = c_to_ours(harness, role, our_caps, c_caps, lines)
    assert got == expected
    assert [from_line(x) is not None for x in lines]


# ------------------------------------------------------------------ randomised
u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def _ep(direction_in: bool):
    return st.integers(0, 15).map(lambda n: n | (0x80 if direction_in else 0))


def data_packet(sender: Role, id_max: int, len32: bool):
    """Random valid data packets from ``sender`` (data present exactly in the data direction)."""
    ids = st.integers(0, id_max)
    host = sender is Role.HOST

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(["control", "bulk", "iso", "interrupt"]))
        ep_in = draw(st.booleans())
        if kind in ("iso",) or (kind == "interrupt" and not host):
            ep_in = host  # only the data direction is valid
        carries = ep_in == host
        ep = draw(_ep(ep_in))
        length_max = (1 << 17) if (kind == "bulk" and len32) else 0xFFFF
        if carries:
            data = draw(st.binary(max_size=300))
            length = len(data)
        else:
            data, length = b"", draw(st.integers(0, length_max))
        pid, status = draw(ids), draw(u8)
        if kind == "control":
            return ControlPacket(pid, ep, draw(u8), draw(u8), status, draw(u16), draw(u16), length, data)
        if kind == "bulk":
            return BulkPacket(pid, ep, status, length, draw(u32), data)
        cls = IsoPacket if kind == "iso" else InterruptPacket
        return cls(pid, ep, status, length, data)

    return build()


@pytest.mark.parametrize("role", [Role.HOST, Role.GUEST])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_packets_both_ways(harness, role, data):
    caps = data.draw(st.sampled_from([ALL_CAPS, ALL_CAPS & ~Cap.IDS_64BIT, ALL_CAPS & ~Cap.BULK_LENGTH_32BIT]))
    neg = verify_caps(caps | Cap.DEVICE_DISCONNECT_ACK)
    id_max = 0xFFFFFFFFFFFFFFFF if neg & Cap.IDS_64BIT else 0xFFFFFFFF
    len32 = bool(neg & Cap.BULK_LENGTH_32BIT)
    mine = data.draw(st.lists(data_packet(role, id_max, len32), min_size=1, max_size=20))
    got, expected = ours_to_c(harness, role, caps, ALL_CAPS, mine)
    assert got == expected
    other = Role.GUEST if role is Role.HOST else Role.HOST
    theirs = data.draw(st.lists(data_packet(other, id_max, len32), min_size=1, max_size=20))
    got, expected = c_to_ours(harness, role, caps, ALL_CAPS, [to_line(x, neg) for x in theirs])
    assert got == expected


def test_c_parser_rejects_what_we_reject(harness):
    """Framing errors: C reports a parse error on the same streams our parser rejects."""
    import struct
    guest = UsbredirParser(Role.GUEST)
    host_hello = c_hello_for(harness, Role.GUEST, ALL_CAPS, guest.our_caps)
    hdr = struct.Struct("<IIQ").pack
    hostile = {
        "unknown type": hdr(50, 0, 0),
        "type for the other role": hdr(PacketType.SET_CONFIGURATION, 1, 0) + b"\x01",
        "short fixed header": hdr(PacketType.CONFIGURATION_STATUS, 1, 0) + b"\x00",
        "data on a no-data type": hdr(PacketType.CONFIGURATION_STATUS, 3, 0) + b"\x00\x01\x02",
        "interface_count > 32": hdr(PacketType.INTERFACE_INFO, 132, 0) + struct.pack("<I", 33) + bytes(128),
        "data length mismatch": hdr(PacketType.BULK_PACKET, 12, 1) + struct.pack("<BBHIH", 0x81, 0, 3, 0, 0) + b"ab",
        "iso in the wrong direction": hdr(PacketType.ISO_PACKET, 4, 1) + struct.pack("<BBH", 0x03, 0, 0),
        "interrupt status for OUT ep": hdr(PacketType.INTERRUPT_RECEIVING_STATUS, 2, 1) + b"\x00\x01",
        "bulk over 128 MiB": hdr(PacketType.BULK_PACKET, 10, 1) + struct.pack("<BBHIH", 0x02, 0, 0, 0, 0x801),
    }
    for why, bad in hostile.items():
        ours = UsbredirParser(Role.GUEST)
        ours.receive_data(host_hello + bad)
        events = ours.events_received()
        assert isinstance(events[-1], ProtocolError), why
        assert ours.closed
        # the same bad packet after a (64-bit capable) host hello, parsed by a C guest
        stream = UsbredirParser(Role.HOST).bytes_to_send() + bad
        c_lines = run(harness, "parse", "guest", str(int(ALL_CAPS)), data=stream).decode().splitlines()
        assert c_lines[-1] == "ERROR", (why, c_lines)


def test_filter_text_matches_c(harness):
    """filter_filter normalisation is identical (C formats rules with usbredirfilter_rules_to_string)."""
    rules = "||3,0x0,00012,-1,1||-1,-0x1,-1,-1,0|"
    got, expected = ours_to_c(harness, Role.GUEST, ALL_CAPS, ALL_CAPS, [FilterFilter(rules=rules)])
    assert got == expected
    assert got[-1] == "filter_filter rules=" + usbfilter.format_rules(usbfilter.parse_rules(rules))
