"""The usbredir channel module on its own: SPICEVMC decoding, LZ4 both ways, who is offered it."""

from __future__ import annotations

import struct

import lz4.block
import pytest

from spice.channels.base import ChannelError
from spice.channels.registry import channel_class
from spice.channels.usbredir import SPICEVMC_COMPRESSED_DATA, SPICEVMC_DATA, UsbredirChannel, decode
from spice.proto.enums import ChannelType
from spice.proto.headers import Message


def msg(t: int, body: bytes) -> Message:
    return Message(t, body, 1)


def test_registry_and_offer():
    assert channel_class(ChannelType.USBREDIR) is UsbredirChannel
    assert UsbredirChannel.offered_to("spice-gtk")
    assert not UsbredirChannel.offered_to("spice-html5") and not UsbredirChannel.offered_to("web")
    assert UsbredirChannel.server_caps(None) == frozenset({0})  # SPICEVMC_CAP_DATA_COMPRESS_LZ4
    assert UsbredirChannel.flow_control is False  # spicevmc: no SET_ACK, as spice-server


def test_decode_plain_and_lz4():
    data = bytes(range(256)) * 40
    assert decode(msg(SPICEVMC_DATA, data)) == data
    packed = lz4.block.compress(data, store_size=False)
    assert decode(msg(SPICEVMC_COMPRESSED_DATA, struct.pack("<BI", 1, len(data)) + packed)) == data
    assert decode(msg(SPICEVMC_COMPRESSED_DATA, b"\x00abc")) == b"abc"


@pytest.mark.parametrize("body", [b"", b"\x02xx", b"\x01\x00", struct.pack("<BI", 1, 5000) + b"\xff" * 40,
                                  struct.pack("<BI", 1, 1 << 31) + b"\0" * 8,
                                  struct.pack("<BI", 1, 10) + lz4.block.compress(b"x" * 100, store_size=False)])
def test_decode_rejects_bad_compressed(body):
    with pytest.raises(ChannelError):
        decode(msg(SPICEVMC_COMPRESSED_DATA, body))
