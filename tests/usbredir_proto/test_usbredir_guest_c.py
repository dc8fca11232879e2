"""The usb-guest core (usbredir.redirected.GuestCore) against libusbredirparser in the host role:
the C side announces a device and replays scripted replies; the C side parses our requests."""

from __future__ import annotations

import subprocess

import pytest

from usbredir.device import SetupPacket, Status
from usbredir.proto import Cap
from usbredir.redirected import Attached, Completed, DataAvailable, GuestCore

HELLO_LEN = 12 + 68


def c_host(harness, our_caps: int, lines: list[str], c_caps: int = 0xFF) -> bytes:
    text = f"peer caps={int(our_caps)}\n" + "\n".join(lines) + "\n"
    return subprocess.run([str(harness), "write", "host", str(c_caps)], input=text.encode(), capture_output=True,
                          check=True, timeout=30).stdout


def c_parse_as_host(harness, stream: bytes, c_caps: int = 0xFF) -> list[str]:
    return subprocess.run([str(harness), "parse", "host", str(c_caps)], input=stream, capture_output=True,
                          check=True, timeout=30).stdout.decode().splitlines()


ATTACH = [
    "interface_info interface_count=1 interface=0 interface_class=3 interface_subclass=1 interface_protocol=1",
    "ep_info type=0," + ",".join(["255"] * 15) + ",0,3," + ",".join(["255"] * 14)
    + " interval=" + ",".join(["0"] * 17 + ["10"] + ["0"] * 14) + " interface=" + ",".join(["0"] * 32)
    + " max_packet_size=" + ",".join(["64"] * 32) + " max_streams=" + ",".join(["0"] * 32),
    "device_connect speed=1 device_class=0 device_subclass=0 device_protocol=0 vendor_id=1133 product_id=49164"
    " device_version_bcd=4352",
]


@pytest.mark.parametrize("c_caps", [0xFF, 0xFF & ~Cap.IDS_64BIT, Cap.EP_INFO_MAX_PACKET_SIZE])
def test_guest_core_with_c_host(harness, c_caps):
    core = GuestCore()
    hello = core.bytes_to_send()
    core.receive_data(c_host(harness, core.parser.our_caps, ATTACH, c_caps))
    (ev,) = core.events_received()
    assert isinstance(ev, Attached) and (ev.info.connect.vendor_id, ev.info.connect.product_id) == (1133, 49164)
    assert ev.info.ep_type(0x81) == 3 and ev.info.speed == 1
    # requests: GET_DESCRIPTOR, SET_CONFIGURATION, interrupt IN polling starts the stream
    rid = core.control(SetupPacket(0x80, 6, 0x0100, 0, 18))
    cid = core.control(SetupPacket(0x00, 9, 1, 0, 0))
    assert core.interrupt(0x81, None, 8).status == Status.NAK
    lines = c_parse_as_host(harness, hello + core.bytes_to_send(), c_caps)
    assert lines[1:] == [
        f"control_packet id={rid} endpoint=128 request=6 requesttype=128 status=0 value=256 index=0 length=18 data=",
        f"set_configuration id={cid} configuration=1",
        "start_interrupt_receiving id=0 endpoint=129",
    ]
    desc = bytes(range(18))
    replies = [
        f"control_packet id={rid} endpoint=128 request=6 requesttype=128 status=0 value=256 index=0 length=18"
        f" data={desc.hex()}",
        "interface_info interface_count=1 interface=0 interface_class=3 interface_subclass=1 interface_protocol=1",
        ATTACH[1],
        f"configuration_status id={cid} status=0 configuration=1",
        "interrupt_receiving_status id=0 status=0 endpoint=129",
        "interrupt_packet id=0 endpoint=129 status=0 length=8 data=0000040000000000",
        "interrupt_packet id=1 endpoint=129 status=0 length=8 data=0000000000000000",
        f"control_packet id={rid + 999} endpoint=128 request=6 requesttype=128 status=0 value=0 index=0 length=1"
        " data=00",
    ]
    core.receive_data(c_host(harness, core.parser.our_caps, replies, c_caps)[HELLO_LEN:])
    evs = core.events_received()
    done = {e.id: e.result for e in evs if isinstance(e, Completed)}
    assert bytes(done[rid].data) == desc and done[cid].status == Status.SUCCESS
    assert any(isinstance(e, DataAvailable) for e in evs)
    assert bytes(core.interrupt(0x81, None, 8).data) == bytes.fromhex("0000040000000000")
    assert bytes(core.interrupt(0x81, None, 8).data) == bytes(8)
    assert core.interrupt(0x81, None, 8).status == Status.NAK
    assert core.stats.dropped_replies == 1 and not core.closed
