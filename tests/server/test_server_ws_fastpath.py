"""WebSocket framing fast paths: whole client binary frames bypass the protocol object's parser and short
outgoing batches are framed by hand; both must agree byte for byte with websockets' own framing."""

from __future__ import annotations

import asyncio

from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from spice.server.websocket import WebSocketWriter, WsStats, _deliver, _Inbound

UPGRADE = (b"GET /spice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def open_proto() -> ServerProtocol:
    proto = ServerProtocol()
    proto.receive_data(UPGRADE)
    proto.send_response(proto.accept(proto.events_received()[0]))
    proto.data_to_send()
    return proto


class Raw:
    """Stands in for the socket's StreamWriter: keeps what is written."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Payloads:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def feed_data(self, data: bytes) -> None:
        self.got.append(data)


def client_frame(opcode: Opcode, payload: bytes, mask: bytes = b"\x5a\xc3\x01\xff") -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode.value])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_server_frames(data: bytes) -> list[Frame]:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        gen = Frame.parse(reader.read_exact, mask=False)
        try:
            next(gen)
        except StopIteration as done:
            frames.append(done.value)
    return frames


STREAM = [client_frame(Opcode.BINARY, b"\x65\x00\x04\x00\x00\x00\x1e\x00\x00\x00"),
          client_frame(Opcode.PING, b"hi"),
          client_frame(Opcode.BINARY, bytes(range(256)) * 2),  # 16-bit length
          client_frame(Opcode.BINARY, b"\x02\x00\x00\x00\x00\x00")]
PAYLOADS = b"\x65\x00\x04\x00\x00\x00\x1e\x00\x00\x00" + bytes(range(256)) * 2 + b"\x02\x00\x00\x00\x00\x00"


def deliver_all(chunks: list[bytes]) -> tuple[bytes, bytes]:
    proto, raw, sink = open_proto(), Raw(), Payloads()
    inbound = _Inbound()
    for chunk in chunks:
        assert _deliver(proto, chunk, raw, sink, WsStats(), inbound)
    return b"".join(sink.got), bytes(raw.out)


def test_payloads_and_pong_are_the_same_however_the_bytes_are_split():
    data = b"".join(STREAM)
    for cut in range(1, len(data)):
        for cut2 in (cut + 1, cut + 7, len(data)):
            chunks = [data[:cut], data[cut:cut2], data[cut2:]]
            payloads, out = deliver_all([c for c in chunks if c])
            assert payloads == PAYLOADS, (cut, cut2)
            pongs = parse_server_frames(out)
            assert [(f.opcode, f.data) for f in pongs] == [(Opcode.PONG, b"hi")]


def test_whole_binary_frames_at_a_boundary_bypass_the_parser_and_a_split_one_does_not():
    proto, raw, sink = open_proto(), Raw(), Payloads()
    inbound = _Inbound()
    calls = []
    receive = proto.receive_data
    proto.receive_data = lambda data: (calls.append(data), receive(data))[1]  # type: ignore[method-assign]
    key = STREAM[0]
    assert _deliver(proto, key + key, raw, sink, WsStats(), inbound)
    assert calls == [] and sink.got == [PAYLOADS[:10]] * 2
    assert _deliver(proto, key[:3], raw, sink, WsStats(), inbound)  # half a frame: the parser keeps it
    assert _deliver(proto, key[3:] + key, raw, sink, WsStats(), inbound)
    assert len(calls) == 2 and inbound.unparsed == 0 and sink.got == [PAYLOADS[:10]] * 4
    assert _deliver(proto, key, raw, sink, WsStats(), inbound)  # at a boundary again: fast
    assert len(calls) == 2 and len(sink.got) == 5


def test_a_close_frame_still_closes():
    proto, raw, sink = open_proto(), Raw(), Payloads()
    assert not _deliver(proto, client_frame(Opcode.CLOSE, b"\x03\xe8"), raw, sink, WsStats(), _Inbound())
    assert [f.opcode for f in parse_server_frames(bytes(raw.out))] == [Opcode.CLOSE]


def test_outgoing_batches_parse_as_binary_frames_of_every_length_class():
    async def run() -> bytes:
        raw = Raw()
        writer = WebSocketWriter(open_proto(), raw, WsStats())  # type: ignore[arg-type]
        for n in (0, 1, 125, 126, 65535, 65536, 300000):
            writer.write(bytes([n % 251]) * n)
            writer.flush()
        return bytes(raw.out)

    frames = parse_server_frames(asyncio.run(run()))
    assert [(f.opcode, f.fin, len(f.data)) for f in frames] == [(Opcode.BINARY, True, n)
                                                                  for n in (1, 125, 126, 65535, 65536, 300000)]
    assert all(f.data == bytes([len(f.data) % 251]) * len(f.data) for f in frames)


def test_a_payload_that_looks_like_a_frame_is_not_taken_for_one_when_its_header_came_alone():
    inner = client_frame(Opcode.BINARY, b"xyz")
    outer = client_frame(Opcode.BINARY, inner, mask=bytes(4))  # zero mask: the payload is the inner frame
    payloads, _ = deliver_all([outer[:6], outer[6:]])
    assert payloads == inner
