"""usbredir wire protocol 0.7 (usbredir 0.13): every packet declared once.

* :class:`PacketType`, :class:`Cap` (hello capability bits) and the limits; status / speed /
  endpoint-type codes are :class:`usbredir.device.Status`, ``Speed``, ``EndpointType``.
* ``construct`` declarations: :data:`Header32`, :data:`Header64` and one type-specific header per
  packet type (:func:`type_header`, which picks the layout for the negotiated capabilities).
* One immutable packet class per type (``typing.NamedTuple``; every class has ``TYPE`` and the
  fields ``id`` .. ``data`` named as in ``usbredirproto.h``).  Array fields are tuples
  (``InterfaceInfo``: ``interface_count`` entries; ``EpInfo``: 32 entries indexed by :func:`ep2i`).
  ``data`` is a ``memoryview``/bytes payload (control/bulk/iso/interrupt/buffered-bulk only).
* :data:`STRUCT_FORMATS`: ``struct`` format strings derived from the declarations, used by
  :mod:`usbredir.parser` on the hot path.

The sans-I/O parser is :mod:`usbredir.parser`.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from construct import Array, Bytes, Construct, FormatField, Int8ul, Int16ul, Int32ul, Int64ul, Renamed, Struct

from .device import EndpointType, Speed, Status

__all__ = [
    "PacketType", "Cap", "Speed", "EndpointType", "Status", "ALL_CAPS", "MAX_BULK_TRANSFER_SIZE",
    "MAX_PACKET_SIZE", "Header32", "Header64", "type_header", "struct_format", "ep2i", "i2ep",
    "PACKET_CLASSES", "DATA_TYPES", "HOST_TO_GUEST", "GUEST_TO_HOST", "Packet",
]


class PacketType(enum.IntEnum):
    HELLO = 0
    DEVICE_CONNECT = 1
    DEVICE_DISCONNECT = 2
    RESET = 3
    INTERFACE_INFO = 4
    EP_INFO = 5
    SET_CONFIGURATION = 6
    GET_CONFIGURATION = 7
    CONFIGURATION_STATUS = 8
    SET_ALT_SETTING = 9
    GET_ALT_SETTING = 10
    ALT_SETTING_STATUS = 11
    START_ISO_STREAM = 12
    STOP_ISO_STREAM = 13
    ISO_STREAM_STATUS = 14
    START_INTERRUPT_RECEIVING = 15
    STOP_INTERRUPT_RECEIVING = 16
    INTERRUPT_RECEIVING_STATUS = 17
    ALLOC_BULK_STREAMS = 18
    FREE_BULK_STREAMS = 19
    BULK_STREAMS_STATUS = 20
    CANCEL_DATA_PACKET = 21
    FILTER_REJECT = 22
    FILTER_FILTER = 23
    DEVICE_DISCONNECT_ACK = 24
    START_BULK_RECEIVING = 25
    STOP_BULK_RECEIVING = 26
    BULK_RECEIVING_STATUS = 27
    CONTROL_PACKET = 100
    BULK_PACKET = 101
    ISO_PACKET = 102
    INTERRUPT_PACKET = 103
    BUFFERED_BULK_PACKET = 104


class Cap(enum.IntFlag):
    """hello ``capabilities[0]`` bits."""

    BULK_STREAMS = 1 << 0
    CONNECT_DEVICE_VERSION = 1 << 1
    FILTER = 1 << 2
    DEVICE_DISCONNECT_ACK = 1 << 3
    EP_INFO_MAX_PACKET_SIZE = 1 << 4
    IDS_64BIT = 1 << 5
    BULK_LENGTH_32BIT = 1 << 6
    BULK_RECEIVING = 1 << 7


ALL_CAPS = Cap(0xFF)
MAX_BULK_TRANSFER_SIZE = 128 * 1024 * 1024
MAX_PACKET_SIZE = MAX_BULK_TRANSFER_SIZE + 1024  # limit for header.length
CAPS_SIZE = 1  # uint32 words of capabilities we know


def verify_caps(caps: int) -> Cap:
    """Clear BULK_STREAMS when EP_INFO_MAX_PACKET_SIZE is missing (as the C parser does)."""
    caps &= 0xFFFFFFFF
    if caps & Cap.BULK_STREAMS and not caps & Cap.EP_INFO_MAX_PACKET_SIZE:
        caps &= ~Cap.BULK_STREAMS
    return Cap(caps)


def ep2i(ep: int) -> int:
    """Endpoint address -> index in the 32-entry ep_info arrays (OUT 0-15, IN 16-31)."""
    return ((ep & 0x80) >> 3) | (ep & 0x0F)


def i2ep(i: int) -> int:
    return ((i & 0x10) << 3) | (i & 0x0F)


# --------------------------------------------------------------------------------------------
# construct declarations (the single source of truth for layouts)

Header32 = Struct("type" / Int32ul, "length" / Int32ul, "id" / Int32ul)
Header64 = Struct("type" / Int32ul, "length" / Int32ul, "id" / Int64ul)

_A8 = Array(32, Int8ul)
HelloHeader = Struct("version" / Bytes(64))
DeviceConnectHeader = Struct(
    "speed" / Int8ul, "device_class" / Int8ul, "device_subclass" / Int8ul, "device_protocol" / Int8ul,
    "vendor_id" / Int16ul, "product_id" / Int16ul, "device_version_bcd" / Int16ul,
)
DeviceConnectHeaderNoVersion = Struct(*DeviceConnectHeader.subcons[:-1])
InterfaceInfoHeader = Struct(
    "interface_count" / Int32ul, "interface" / _A8, "interface_class" / _A8,
    "interface_subclass" / _A8, "interface_protocol" / _A8,
)
EpInfoHeader = Struct(
    "type" / _A8, "interval" / _A8, "interface" / _A8,
    "max_packet_size" / Array(32, Int16ul), "max_streams" / Array(32, Int32ul),
)
EpInfoHeaderNoMaxStreams = Struct(*EpInfoHeader.subcons[:4])
EpInfoHeaderNoMaxPktsz = Struct(*EpInfoHeader.subcons[:3])
SetConfigurationHeader = Struct("configuration" / Int8ul)
ConfigurationStatusHeader = Struct("status" / Int8ul, "configuration" / Int8ul)
SetAltSettingHeader = Struct("interface" / Int8ul, "alt" / Int8ul)
GetAltSettingHeader = Struct("interface" / Int8ul)
AltSettingStatusHeader = Struct("status" / Int8ul, "interface" / Int8ul, "alt" / Int8ul)
StartIsoStreamHeader = Struct("endpoint" / Int8ul, "pkts_per_urb" / Int8ul, "no_urbs" / Int8ul)
StopIsoStreamHeader = Struct("endpoint" / Int8ul)
IsoStreamStatusHeader = Struct("status" / Int8ul, "endpoint" / Int8ul)
StartInterruptReceivingHeader = Struct("endpoint" / Int8ul)
StopInterruptReceivingHeader = Struct("endpoint" / Int8ul)
InterruptReceivingStatusHeader = Struct("status" / Int8ul, "endpoint" / Int8ul)
AllocBulkStreamsHeader = Struct("endpoints" / Int32ul, "no_streams" / Int32ul)
FreeBulkStreamsHeader = Struct("endpoints" / Int32ul)
BulkStreamsStatusHeader = Struct("endpoints" / Int32ul, "no_streams" / Int32ul, "status" / Int8ul)
StartBulkReceivingHeader = Struct(
    "stream_id" / Int32ul, "bytes_per_transfer" / Int32ul, "endpoint" / Int8ul, "no_transfers" / Int8ul
)
StopBulkReceivingHeader = Struct("stream_id" / Int32ul, "endpoint" / Int8ul)
BulkReceivingStatusHeader = Struct("stream_id" / Int32ul, "endpoint" / Int8ul, "status" / Int8ul)
ControlPacketHeader = Struct(
    "endpoint" / Int8ul, "request" / Int8ul, "requesttype" / Int8ul, "status" / Int8ul,
    "value" / Int16ul, "index" / Int16ul, "length" / Int16ul,
)
BulkPacketHeader = Struct(
    "endpoint" / Int8ul, "status" / Int8ul, "length" / Int16ul, "stream_id" / Int32ul, "length_high" / Int16ul
)
BulkPacketHeader16 = Struct(*BulkPacketHeader.subcons[:4])
IsoPacketHeader = Struct("endpoint" / Int8ul, "status" / Int8ul, "length" / Int16ul)
InterruptPacketHeader = Struct("endpoint" / Int8ul, "status" / Int8ul, "length" / Int16ul)
BufferedBulkPacketHeader = Struct(
    "stream_id" / Int32ul, "length" / Int32ul, "endpoint" / Int8ul, "status" / Int8ul
)
Empty = Struct()

_FIXED_HEADERS: dict[PacketType, Struct] = {
    PacketType.HELLO: HelloHeader,
    PacketType.DEVICE_DISCONNECT: Empty,
    PacketType.RESET: Empty,
    PacketType.INTERFACE_INFO: InterfaceInfoHeader,
    PacketType.SET_CONFIGURATION: SetConfigurationHeader,
    PacketType.GET_CONFIGURATION: Empty,
    PacketType.CONFIGURATION_STATUS: ConfigurationStatusHeader,
    PacketType.SET_ALT_SETTING: SetAltSettingHeader,
    PacketType.GET_ALT_SETTING: GetAltSettingHeader,
    PacketType.ALT_SETTING_STATUS: AltSettingStatusHeader,
    PacketType.START_ISO_STREAM: StartIsoStreamHeader,
    PacketType.STOP_ISO_STREAM: StopIsoStreamHeader,
    PacketType.ISO_STREAM_STATUS: IsoStreamStatusHeader,
    PacketType.START_INTERRUPT_RECEIVING: StartInterruptReceivingHeader,
    PacketType.STOP_INTERRUPT_RECEIVING: StopInterruptReceivingHeader,
    PacketType.INTERRUPT_RECEIVING_STATUS: InterruptReceivingStatusHeader,
    PacketType.ALLOC_BULK_STREAMS: AllocBulkStreamsHeader,
    PacketType.FREE_BULK_STREAMS: FreeBulkStreamsHeader,
    PacketType.BULK_STREAMS_STATUS: BulkStreamsStatusHeader,
    PacketType.CANCEL_DATA_PACKET: Empty,
    PacketType.FILTER_REJECT: Empty,
    PacketType.FILTER_FILTER: Empty,
    PacketType.DEVICE_DISCONNECT_ACK: Empty,
    PacketType.START_BULK_RECEIVING: StartBulkReceivingHeader,
    PacketType.STOP_BULK_RECEIVING: StopBulkReceivingHeader,
    PacketType.BULK_RECEIVING_STATUS: BulkReceivingStatusHeader,
    PacketType.CONTROL_PACKET: ControlPacketHeader,
    PacketType.ISO_PACKET: IsoPacketHeader,
    PacketType.INTERRUPT_PACKET: InterruptPacketHeader,
    PacketType.BUFFERED_BULK_PACKET: BufferedBulkPacketHeader,
}


def type_header(ptype: int, negotiated: int) -> Struct:
    """The type-specific header layout of ``ptype`` given the negotiated (both-sides) caps."""
    if ptype == PacketType.DEVICE_CONNECT:
        return DeviceConnectHeader if negotiated & Cap.CONNECT_DEVICE_VERSION else DeviceConnectHeaderNoVersion
    if ptype == PacketType.EP_INFO:
        if negotiated & Cap.BULK_STREAMS:
            return EpInfoHeader
        if negotiated & Cap.EP_INFO_MAX_PACKET_SIZE:
            return EpInfoHeaderNoMaxStreams
        return EpInfoHeaderNoMaxPktsz
    if ptype == PacketType.BULK_PACKET:
        return BulkPacketHeader if negotiated & Cap.BULK_LENGTH_32BIT else BulkPacketHeader16
    return _FIXED_HEADERS[PacketType(ptype)]


def struct_format(s: Construct) -> str:
    """The ``struct`` format of a construct ``Struct`` made of fixed-size integer fields/arrays."""
    out = ["<"]
    for sub in s.subcons:
        inner = sub.subcon if isinstance(sub, Renamed) else sub
        if isinstance(inner, Array):
            out.append(f"{inner.count}{inner.subcon.fmtstr[1:]}")
        elif isinstance(inner, FormatField):
            out.append(inner.fmtstr[1:])
        elif isinstance(inner, Bytes):
            out.append(f"{inner.length}s")
        else:  # pragma: no cover - declarations above only use these
            raise TypeError(f"no struct format for {inner!r}")
    return "".join(out)


#: hot-path formats, derived from the declarations (cross-checked in tests)
STRUCT_FORMATS: dict[str, str] = {
    "header32": struct_format(Header32),
    "header64": struct_format(Header64),
    "control": struct_format(ControlPacketHeader),
    "bulk32": struct_format(BulkPacketHeader),
    "bulk16": struct_format(BulkPacketHeader16),
    "iso": struct_format(IsoPacketHeader),
    "interrupt": struct_format(InterruptPacketHeader),
    "buffered_bulk": struct_format(BufferedBulkPacketHeader),
}
assert struct.calcsize(STRUCT_FORMATS["header64"]) == 16 and struct.calcsize(STRUCT_FORMATS["bulk32"]) == 10

# --------------------------------------------------------------------------------------------
# packet classes

_Z32 = (0,) * 32


class Hello(NamedTuple):
    id: int = 0
    version: str = ""
    caps: int = 0
    TYPE = PacketType.HELLO


class DeviceConnect(NamedTuple):
    id: int = 0
    speed: int = Speed.HIGH
    device_class: int = 0
    device_subclass: int = 0
    device_protocol: int = 0
    vendor_id: int = 0
    product_id: int = 0
    device_version_bcd: int = 0  # 0 when CONNECT_DEVICE_VERSION is not negotiated
    TYPE = PacketType.DEVICE_CONNECT


class DeviceDisconnect(NamedTuple):
    id: int = 0
    TYPE = PacketType.DEVICE_DISCONNECT


class Reset(NamedTuple):
    id: int = 0
    TYPE = PacketType.RESET


class InterfaceInfo(NamedTuple):
    id: int = 0
    interface: tuple[int, ...] = ()  # one entry per interface (interface_count = len)
    interface_class: tuple[int, ...] = ()
    interface_subclass: tuple[int, ...] = ()
    interface_protocol: tuple[int, ...] = ()
    TYPE = PacketType.INTERFACE_INFO


class EpInfo(NamedTuple):
    id: int = 0
    type: tuple[int, ...] = (EndpointType.INVALID,) * 32  # indexed by ep2i()
    interval: tuple[int, ...] = _Z32
    interface: tuple[int, ...] = _Z32
    max_packet_size: tuple[int, ...] = _Z32  # zeros when not negotiated
    max_streams: tuple[int, ...] = _Z32
    TYPE = PacketType.EP_INFO


class SetConfiguration(NamedTuple):
    id: int = 0
    configuration: int = 0
    TYPE = PacketType.SET_CONFIGURATION


class GetConfiguration(NamedTuple):
    id: int = 0
    TYPE = PacketType.GET_CONFIGURATION


class ConfigurationStatus(NamedTuple):
    id: int = 0
    status: int = Status.SUCCESS
    configuration: int = 0
    TYPE = PacketType.CONFIGURATION_STATUS


class SetAltSetting(NamedTuple):
    id: int = 0
    interface: int = 0
    alt: int = 0
    TYPE = PacketType.SET_ALT_SETTING


class GetAltSetting(NamedTuple):
    id: int = 0
    interface: int = 0
    TYPE = PacketType.GET_ALT_SETTING


class AltSettingStatus(NamedTuple):
    id: int = 0
    status: int = Status.SUCCESS
    interface: int = 0
    alt: int = 0
    TYPE = PacketType.ALT_SETTING_STATUS


class StartIsoStream(NamedTuple):
    id: int = 0
    endpoint: int = 0
    pkts_per_urb: int = 0
    no_urbs: int = 0
    TYPE = PacketType.START_ISO_STREAM


class StopIsoStream(NamedTuple):
    id: int = 0
    endpoint: int = 0
    TYPE = PacketType.STOP_ISO_STREAM


class IsoStreamStatus(NamedTuple):
    id: int = 0
    status: int = Status.SUCCESS
    endpoint: int = 0
    TYPE = PacketType.ISO_STREAM_STATUS


class StartInterruptReceiving(NamedTuple):
    id: int = 0
    endpoint: int = 0x81
    TYPE = PacketType.START_INTERRUPT_RECEIVING


class StopInterruptReceiving(NamedTuple):
    id: int = 0
    endpoint: int = 0x81
    TYPE = PacketType.STOP_INTERRUPT_RECEIVING


class InterruptReceivingStatus(NamedTuple):
    id: int = 0
    status: int = Status.SUCCESS
    endpoint: int = 0x81
    TYPE = PacketType.INTERRUPT_RECEIVING_STATUS


class AllocBulkStreams(NamedTuple):
    id: int = 0
    endpoints: int = 0
    no_streams: int = 0
    TYPE = PacketType.ALLOC_BULK_STREAMS


class FreeBulkStreams(NamedTuple):
    id: int = 0
    endpoints: int = 0
    TYPE = PacketType.FREE_BULK_STREAMS


class BulkStreamsStatus(NamedTuple):
    id: int = 0
    endpoints: int = 0
    no_streams: int = 0
    status: int = Status.SUCCESS
    TYPE = PacketType.BULK_STREAMS_STATUS


class CancelDataPacket(NamedTuple):
    id: int = 0  # the id of the data packet to cancel
    TYPE = PacketType.CANCEL_DATA_PACKET


class FilterReject(NamedTuple):
    id: int = 0
    TYPE = PacketType.FILTER_REJECT


class FilterFilter(NamedTuple):
    id: int = 0
    rules: str = ""  # wire text without the NUL; parse with usbredir.filter.parse_rules
    TYPE = PacketType.FILTER_FILTER


class DeviceDisconnectAck(NamedTuple):
    id: int = 0
    TYPE = PacketType.DEVICE_DISCONNECT_ACK


class StartBulkReceiving(NamedTuple):
    id: int = 0
    stream_id: int = 0
    bytes_per_transfer: int = 0
    endpoint: int = 0x81
    no_transfers: int = 0
    TYPE = PacketType.START_BULK_RECEIVING


class StopBulkReceiving(NamedTuple):
    id: int = 0
    stream_id: int = 0
    endpoint: int = 0x81
    TYPE = PacketType.STOP_BULK_RECEIVING


class BulkReceivingStatus(NamedTuple):
    id: int = 0
    stream_id: int = 0
    endpoint: int = 0x81
    status: int = Status.SUCCESS
    TYPE = PacketType.BULK_RECEIVING_STATUS


# Data packets: ``length`` None on send means len(data).  In the data direction (IN reply,
# OUT request) ``data`` must be ``length`` bytes; otherwise ``data`` is empty.

class ControlPacket(NamedTuple):
    id: int = 0
    endpoint: int = 0
    request: int = 0
    requesttype: int = 0
    status: int = Status.SUCCESS
    value: int = 0
    index: int = 0
    length: int | None = None
    data: bytes | bytearray | memoryview = b""
    TYPE = PacketType.CONTROL_PACKET


class BulkPacket(NamedTuple):
    id: int = 0
    endpoint: int = 0
    status: int = Status.SUCCESS
    length: int | None = None  # full (length_high << 16 | length) value
    stream_id: int = 0
    data: bytes | bytearray | memoryview = b""
    TYPE = PacketType.BULK_PACKET


class IsoPacket(NamedTuple):
    id: int = 0
    endpoint: int = 0
    status: int = Status.SUCCESS
    length: int | None = None
    data: bytes | bytearray | memoryview = b""
    TYPE = PacketType.ISO_PACKET


class InterruptPacket(NamedTuple):
    id: int = 0
    endpoint: int = 0
    status: int = Status.SUCCESS
    length: int | None = None
    data: bytes | bytearray | memoryview = b""
    TYPE = PacketType.INTERRUPT_PACKET


class BufferedBulkPacket(NamedTuple):
    id: int = 0
    stream_id: int = 0
    length: int | None = None
    endpoint: int = 0x81
    status: int = Status.SUCCESS
    data: bytes | bytearray | memoryview = b""
    TYPE = PacketType.BUFFERED_BULK_PACKET


Packet = (
    Hello | DeviceConnect | DeviceDisconnect | Reset | InterfaceInfo | EpInfo | SetConfiguration
    | GetConfiguration | ConfigurationStatus | SetAltSetting | GetAltSetting | AltSettingStatus
    | StartIsoStream | StopIsoStream | IsoStreamStatus | StartInterruptReceiving | StopInterruptReceiving
    | InterruptReceivingStatus | AllocBulkStreams | FreeBulkStreams | BulkStreamsStatus | CancelDataPacket
    | FilterReject | FilterFilter | DeviceDisconnectAck | StartBulkReceiving | StopBulkReceiving
    | BulkReceivingStatus | ControlPacket | BulkPacket | IsoPacket | InterruptPacket | BufferedBulkPacket
)

PACKET_CLASSES: dict[PacketType, type] = {
    cls.TYPE: cls
    for cls in (
        Hello, DeviceConnect, DeviceDisconnect, Reset, InterfaceInfo, EpInfo, SetConfiguration,
        GetConfiguration, ConfigurationStatus, SetAltSetting, GetAltSetting, AltSettingStatus,
        StartIsoStream, StopIsoStream, IsoStreamStatus, StartInterruptReceiving, StopInterruptReceiving,
        InterruptReceivingStatus, AllocBulkStreams, FreeBulkStreams, BulkStreamsStatus, CancelDataPacket,
        FilterReject, FilterFilter, DeviceDisconnectAck, StartBulkReceiving, StopBulkReceiving,
        BulkReceivingStatus, ControlPacket, BulkPacket, IsoPacket, InterruptPacket, BufferedBulkPacket,
    )
}

DATA_TYPES = frozenset(range(100, 105))
#: packet types that may carry trailing data after the type header
EXTRA_DATA_TYPES = DATA_TYPES | {PacketType.HELLO, PacketType.FILTER_FILTER}

_T = PacketType
#: types only the usb-host sends (the guest receives) / only the usb-guest sends
HOST_TO_GUEST = frozenset({
    _T.DEVICE_CONNECT, _T.DEVICE_DISCONNECT, _T.INTERFACE_INFO, _T.EP_INFO, _T.CONFIGURATION_STATUS,
    _T.ALT_SETTING_STATUS, _T.ISO_STREAM_STATUS, _T.INTERRUPT_RECEIVING_STATUS, _T.BULK_STREAMS_STATUS,
    _T.BULK_RECEIVING_STATUS, _T.BUFFERED_BULK_PACKET,
})
GUEST_TO_HOST = frozenset({
    _T.RESET, _T.SET_CONFIGURATION, _T.GET_CONFIGURATION, _T.SET_ALT_SETTING, _T.GET_ALT_SETTING,
    _T.START_ISO_STREAM, _T.STOP_ISO_STREAM, _T.START_INTERRUPT_RECEIVING, _T.STOP_INTERRUPT_RECEIVING,
    _T.ALLOC_BULK_STREAMS, _T.FREE_BULK_STREAMS, _T.CANCEL_DATA_PACKET, _T.FILTER_REJECT,
    _T.DEVICE_DISCONNECT_ACK, _T.START_BULK_RECEIVING, _T.STOP_BULK_RECEIVING,
})
BOTH_WAYS = frozenset(PacketType) - HOST_TO_GUEST - GUEST_TO_HOST
assert BOTH_WAYS == {_T.HELLO, _T.FILTER_FILTER, *range(100, 104)}

__all__ += [cls.__name__ for cls in PACKET_CLASSES.values()]
