"""SPICE numeric constants shared by every channel (spice-protocol ``enums.h`` / ``protocol.h``)."""

from __future__ import annotations

import enum

SPICE_MAGIC = b"REDQ"
VERSION_MAJOR = 2
VERSION_MINOR = 2
TICKET_PUBKEY_BYTES = 162
ENCRYPTED_TICKET_BYTES = 128
MAX_PASSWORD_LENGTH = 60


class ChannelType(enum.IntEnum):
    MAIN = 1
    DISPLAY = 2
    INPUTS = 3
    CURSOR = 4
    PLAYBACK = 5
    RECORD = 6
    TUNNEL = 7
    SMARTCARD = 8
    USBREDIR = 9
    PORT = 10
    WEBDAV = 11


CHANNEL_NAMES = {t: t.name.lower() for t in ChannelType}


class LinkError(enum.IntEnum):
    OK = 0
    ERROR = 1
    INVALID_MAGIC = 2
    INVALID_DATA = 3
    VERSION_MISMATCH = 4
    NEED_SECURED = 5
    NEED_UNSECURED = 6
    PERMISSION_DENIED = 7
    BAD_CONNECTION_ID = 8
    CHANNEL_NOT_AVAILABLE = 9


class CommonCap(enum.IntEnum):
    PROTOCOL_AUTH_SELECTION = 0
    AUTH_SPICE = 1
    AUTH_SASL = 2
    MINI_HEADER = 3


class AuthMechanism(enum.IntEnum):
    SPICE = 1
    SASL = 2


class BaseMsg(enum.IntEnum):
    """Server -> client messages every channel understands."""

    MIGRATE = 1
    MIGRATE_DATA = 2
    SET_ACK = 3
    PING = 4
    WAIT_FOR_CHANNELS = 5
    DISCONNECTING = 6
    NOTIFY = 7
    LIST = 8


class BaseMsgc(enum.IntEnum):
    """Client -> server messages every channel may send."""

    ACK_SYNC = 1
    ACK = 2
    PONG = 3
    MIGRATE_FLUSH_MARK = 4
    MIGRATE_DATA = 5
    DISCONNECTING = 6


class NotifySeverity(enum.IntEnum):
    INFO = 0
    WARN = 1
    ERROR = 2


class NotifyVisibility(enum.IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2
