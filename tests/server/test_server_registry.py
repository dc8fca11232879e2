"""The channel registry: a new channel type is one class registered in one table."""

from __future__ import annotations

import pytest
from spice_testclient import TestChannel
from spice_testguest import PaintGuest

from spice.channels.base import Channel
from spice.channels.registry import channel_class, register_channel, unregister_channel
from spice.proto import main as pm
from spice.proto.enums import ChannelType
from spice.proto.link import ServerKey
from spice.server.config import ServerConfig
from spice.server.server import SpiceServer


class EchoPort(Channel):
    """A toy PORT channel (ids 0 and 1) that echoes SPICEVMC_DATA back."""

    channel_type = ChannelType.PORT
    name = "port"
    known_messages = frozenset({101})

    @classmethod
    def channel_ids(cls, server):
        return [0, 1]

    @classmethod
    def offered_to(cls, profile):
        return profile != "spice-html5"

    @classmethod
    def server_caps(cls, server):
        return frozenset({0})

    def on_message(self, msg):
        self.send(101, msg.body[::-1])


@pytest.fixture
def echo_registered():
    register_channel(ChannelType.PORT, EchoPort)
    yield
    unregister_channel(ChannelType.PORT)


async def test_registered_channel_is_listed_linked_and_served(echo_registered):
    assert channel_class(ChannelType.PORT) is EchoPort
    srv = SpiceServer(PaintGuest(), ServerConfig(port=0, password="pw", ping_interval=0), key=ServerKey())
    await srv.start()
    try:
        main = await TestChannel.connect(srv.ports["plain"], ChannelType.MAIN)
        sid = pm.MainInit.parse((await main.wait_for(pm.MainMsg.INIT)).body).session_id
        main.send(pm.MainMsgc.ATTACH_CHANNELS)
        lst = pm.ChannelsList.parse((await main.wait_for(pm.MainMsg.CHANNELS_LIST)).body)
        assert {(c.type, c.id) for c in lst.channels} >= {(10, 0), (10, 1)}
        port = await TestChannel.connect(srv.ports["plain"], ChannelType.PORT, 1, connection_id=sid)
        assert port.result.server_channel_caps == {0}
        port.send(101, b"abc")
        assert (await port.wait_for(101)).body == b"cba"
        assert srv.stats.channel("port").messages_in == 2  # ACK_SYNC + the data
        assert (10, 0) not in srv.channel_list("spice-html5")
        main.close()
    finally:
        await srv.close()
