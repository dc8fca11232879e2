"""Main channel (type 1) messages, spice.md §5."""

from __future__ import annotations

import enum
import struct

import construct as c


class MainMsg(enum.IntEnum):
    MIGRATE_BEGIN = 101
    MIGRATE_CANCEL = 102
    INIT = 103
    CHANNELS_LIST = 104
    MOUSE_MODE = 105
    MULTI_MEDIA_TIME = 106
    AGENT_CONNECTED = 107
    AGENT_DISCONNECTED = 108
    AGENT_DATA = 109
    AGENT_TOKEN = 110
    NAME = 113
    UUID = 114
    AGENT_CONNECTED_TOKENS = 115


class MainMsgc(enum.IntEnum):
    CLIENT_INFO = 101
    MIGRATE_CONNECTED = 102
    MIGRATE_CONNECT_ERROR = 103
    ATTACH_CHANNELS = 104
    MOUSE_MODE_REQUEST = 105
    AGENT_START = 106
    AGENT_DATA = 107
    AGENT_TOKEN = 108
    MIGRATE_END = 109
    MIGRATE_DST_DO_SEAMLESS = 110
    MIGRATE_CONNECTED_SEAMLESS = 111
    QUALITY_INDICATOR = 112


class MainCap(enum.IntEnum):
    SEMI_SEAMLESS_MIGRATE = 0
    NAME_AND_UUID = 1
    AGENT_CONNECTED_TOKENS = 2
    SEAMLESS_MIGRATE = 3


class MouseMode(enum.IntFlag):
    SERVER = 1
    CLIENT = 2


MainInit = c.Struct(
    "session_id" / c.Int32ul,
    "display_channels_hint" / c.Int32ul,
    "supported_mouse_modes" / c.Int32ul,
    "current_mouse_mode" / c.Int32ul,
    "agent_connected" / c.Int32ul,
    "agent_tokens" / c.Int32ul,
    "multi_media_time" / c.Int32ul,
    "ram_hint" / c.Int32ul,
)
ChannelId = c.Struct("type" / c.Int8ul, "id" / c.Int8ul)
ChannelsList = c.Struct("num_of_channels" / c.Int32ul, "channels" / c.Array(c.this.num_of_channels, ChannelId))
MouseModeMsg = c.Struct("supported_modes" / c.Int16ul, "current_mode" / c.Int16ul)
MouseModeRequest = c.Struct("mode" / c.Int16ul)
Name = c.Struct("name" / c.Prefixed(c.Int32ul, c.CString("utf8")))
Uuid = c.Struct("uuid" / c.Bytes(16))
AgentTokens = c.Struct("num_tokens" / c.Int32ul)

U16 = struct.Struct("<H")
U32 = struct.Struct("<I")


def build_init(session_id: int, display_channels_hint: int, supported_mouse_modes: int, current_mouse_mode: int,
               agent_connected: bool, agent_tokens: int, multi_media_time: int, ram_hint: int = 0) -> bytes:
    return MainInit.build(dict(session_id=session_id, display_channels_hint=display_channels_hint,
                               supported_mouse_modes=supported_mouse_modes, current_mouse_mode=current_mouse_mode,
                               agent_connected=int(agent_connected), agent_tokens=agent_tokens,
                               multi_media_time=multi_media_time & 0xFFFFFFFF, ram_hint=ram_hint))


def build_channels_list(channels: list[tuple[int, int]]) -> bytes:
    return ChannelsList.build(dict(num_of_channels=len(channels),
                                   channels=[dict(type=t, id=i) for t, i in channels]))


def build_mouse_mode(supported: int, current: int) -> bytes:
    return MouseModeMsg.build(dict(supported_modes=supported, current_mode=current))


def build_name(name: str) -> bytes:
    return Name.build(dict(name=name))
