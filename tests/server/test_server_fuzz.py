"""Property tests: arbitrary bytes into the sans-I/O link and channel layers never crash them."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from spice.proto.channel import ChannelProtocol, ChannelProtocolError
from spice.proto.enums import LinkError
from spice.proto.inputs import ScancodeDecoder
from spice.proto.link import ClientLink, LinkFailed, LinkRequest, ServerKey, ServerLink, build_link_mess

KEY = ServerKey()
VALID = build_link_mess(0, 1, 0, {0, 3}, {2})


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=5))
def test_server_link_survives_garbage(data, cuts):
    sv = ServerLink(KEY)
    for part in chunks(data, cuts):
        for ev in sv.receive_data(part):
            if isinstance(ev, LinkRequest):
                sv.accept(set())
            assert not isinstance(ev, LinkFailed) or isinstance(ev.code, LinkError)
    sv.receive_eof()
    out = sv.data_to_send()
    assert len(out) <= 16 + 178 + 4 * 2 + 4  # at most one reply (+ caps) and one result


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(0, len(VALID)))
def test_server_link_valid_prefix_then_garbage(tail, cut):
    sv = ServerLink(KEY)
    evs = sv.receive_data(VALID[:cut] + tail)
    evs += sv.receive_data(VALID[cut:]) if cut < len(VALID) and not evs else []
    for ev in evs:
        assert isinstance(ev, LinkRequest | LinkFailed)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_client_link_survives_garbage_reply(data):
    cl = ClientLink(1, 0, 0, "pw")
    cl.data_to_send()
    for ev in cl.receive_data(b"REDQ" + struct.pack("<III", 2, 2, len(data)) + data):
        assert type(ev).__name__ in ("LinkFailed", "LinkResult", "LinkReplyReceived")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=162, max_size=162))
def test_client_link_survives_garbage_key(key):
    body = struct.pack("<I", 0) + key + struct.pack("<III", 1, 0, 178) + struct.pack("<I", 0xB)
    evs = ClientLink(1, 0, 0, "pw").receive_data(b"REDQ" + struct.pack("<III", 2, 2, len(body)) + body)
    assert type(evs[-1]).__name__ == "LinkFailed"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.booleans(), st.lists(st.integers(0, 2000), max_size=6))
def test_channel_protocol_survives_garbage(data, mini, cuts):
    proto = ChannelProtocol(mini, server=True, max_message=512)
    try:
        for part in chunks(data, cuts):
            proto.receive_data(part)
    except ChannelProtocolError:
        return
    assert proto.codec.buffered <= 512 + 18  # never more than one bounded message pending


@given(st.binary(max_size=64))
def test_scancode_decoder_total(data):
    for code, pressed in ScancodeDecoder().feed(data):
        assert 1 <= code & 0xFF <= 0x7F and code >> 8 in (0, 1) and isinstance(pressed, bool)
