"""Normalised text lines for usbredir packets, the same format tests/usbredir_proto/harness.c uses."""

from __future__ import annotations

from usbredir import filter as usbfilter
from usbredir.proto import PACKET_CLASSES, Cap, PacketType, verify_caps

NO_ID = {PacketType.HELLO, PacketType.DEVICE_CONNECT, PacketType.DEVICE_DISCONNECT, PacketType.RESET,
         PacketType.INTERFACE_INFO, PacketType.EP_INFO, PacketType.FILTER_REJECT, PacketType.FILTER_FILTER,
         PacketType.DEVICE_DISCONNECT_ACK}


def _arr(v) -> str:
    return ",".join(str(int(x)) for x in v)


def to_line(pkt, negotiated: int) -> str:
    """The harness line of one packet, given the negotiated caps of the receiving side."""
    t = PacketType(pkt.TYPE)
    parts = [t.name.lower()]
    if t == PacketType.HELLO:
        return f"hello version={pkt.version} caps={int(verify_caps(pkt.caps))}"
    if t not in NO_ID:
        parts.append(f"id={pkt.id}")
    for name, value in zip(pkt._fields[1:], pkt[1:], strict=True):
        if t == PacketType.DEVICE_CONNECT and name == "device_version_bcd" \
                and not negotiated & Cap.CONNECT_DEVICE_VERSION:
            continue
        if t == PacketType.EP_INFO and (
                (name == "max_packet_size" and not negotiated & Cap.EP_INFO_MAX_PACKET_SIZE)
                or (name == "max_streams" and not negotiated & Cap.BULK_STREAMS)):
            continue
        if t == PacketType.INTERFACE_INFO and name == "interface":
            parts.append(f"interface_count={len(value)}")
        if t == PacketType.FILTER_FILTER:
            value = usbfilter.format_rules(usbfilter.parse_rules(value))
        if name == "data":
            parts.append("data=" + bytes(value).hex())
        elif isinstance(value, tuple):
            parts.append(f"{name}={_arr(value)}")
        elif name == "length" and value is None:
            parts.append(f"length={len(pkt.data)}")
        else:
            parts.append(f"{name}={value if isinstance(value, str) else int(value)}")
    return " ".join(parts)


def from_line(line: str):
    """The packet a harness line describes (inverse of :func:`to_line`)."""
    name, *kvs = line.split()
    t = PacketType[name.upper()]
    cls = PACKET_CLASSES[t]
    values: dict = {}
    for kv in kvs:
        k, _, v = kv.partition("=")
        if k == "interface_count" or (k == "caps" and t == PacketType.HELLO):
            if k == "caps":
                values[k] = int(v)
            continue
        if k == "data":
            values[k] = bytes.fromhex(v)
        elif k in ("rules", "version"):
            values[k] = v
        elif k in cls._fields and isinstance(cls._field_defaults.get(k), tuple):
            values[k] = tuple(int(x) for x in v.split(",")) if v else ()
        else:
            values[k] = int(v)
    return cls(**values)
