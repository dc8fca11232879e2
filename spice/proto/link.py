"""The SPICE link handshake, sans-I/O, for both the server and the client side.

Server: feed bytes with :meth:`ServerLink.receive_data`; it returns events
(:class:`LinkRequest`, then :class:`TicketReceived`, or :class:`LinkFailed`).  The caller
decides (session lookup, TLS policy, password) and answers with :meth:`ServerLink.accept`
/ :meth:`ServerLink.reject` and :meth:`ServerLink.finish`; bytes to write come out of
:meth:`ServerLink.data_to_send`.  Bytes received after the link belong to the channel and
are handed on in :attr:`ServerLink.remaining`.

Client: :class:`ClientLink` builds the link message, parses the reply, encrypts the ticket
(RSA-OAEP-SHA1 with the server's DER SPKI key) and reports :class:`LinkResult`.

Wire facts: spice.md §2.
"""

from __future__ import annotations

import enum
import hmac
import struct
import time
from dataclasses import dataclass, field

import construct as c
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .caps import MAX_CAP_WORDS, caps_to_words, pack_words, unpack_words, words_to_caps
from .enums import (
    ENCRYPTED_TICKET_BYTES,
    MAX_PASSWORD_LENGTH,
    SPICE_MAGIC,
    TICKET_PUBKEY_BYTES,
    VERSION_MAJOR,
    VERSION_MINOR,
    AuthMechanism,
    CommonCap,
    LinkError,
)

LinkHeader = c.Struct(
    "magic" / c.Bytes(4),
    "major_version" / c.Int32ul,
    "minor_version" / c.Int32ul,
    "size" / c.Int32ul,
)
LinkMess = c.Struct(
    "connection_id" / c.Int32ul,
    "channel_type" / c.Int8ul,
    "channel_id" / c.Int8ul,
    "num_common_caps" / c.Int32ul,
    "num_channel_caps" / c.Int32ul,
    "caps_offset" / c.Int32ul,
)
LinkReply = c.Struct(
    "error" / c.Int32ul,
    "pub_key" / c.Bytes(TICKET_PUBKEY_BYTES),
    "num_common_caps" / c.Int32ul,
    "num_channel_caps" / c.Int32ul,
    "caps_offset" / c.Int32ul,
)
LINK_HEADER_SIZE = LinkHeader.sizeof()  # 16
LINK_MESS_SIZE = LinkMess.sizeof()  # 18
LINK_REPLY_SIZE = LinkReply.sizeof()  # 178
MAX_LINK_SIZE = 4096  # spice-server's limit for header.size

OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)

#: Common caps a ticket-auth server announces: AUTH_SELECTION | AUTH_SPICE | MINI_HEADER (never SASL).
SERVER_COMMON_CAPS = frozenset({CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE, CommonCap.MINI_HEADER})
#: What our client announces: AUTH_SELECTION | MINI_HEADER.
CLIENT_COMMON_CAPS = frozenset({CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.MINI_HEADER})


class LinkProtocolError(Exception):
    """A link failed; ``code`` is the SpiceLinkErr to report."""

    def __init__(self, code: LinkError, reason: str) -> None:
        super().__init__(f"{code.name}: {reason}")
        self.code = code
        self.reason = reason


def link_error(code: int) -> LinkError:
    """Map a wire u32 to :class:`LinkError` (unknown values -> ERROR)."""
    try:
        return LinkError(code)
    except ValueError:
        return LinkError.ERROR


# --- keys and tickets ----------------------------------------------------------------------

class ServerKey:
    """An RSA-1024 key pair (e = 65537) whose public half is sent as 162-byte DER SPKI."""

    def __init__(self, private_key: rsa.RSAPrivateKey | None = None) -> None:
        self.private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.public_der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if len(self.public_der) != TICKET_PUBKEY_BYTES:  # pragma: no cover - RSA-1024 always gives 162
            raise ValueError("RSA-1024 SPKI must be 162 bytes")

    def decrypt_ticket(self, ticket: bytes) -> bytes | None:
        """Return the ticket plaintext up to its first NUL, or None if it does not decrypt.

        Also accepts spice-html5's occasionally right-zero-padded ciphertext (spice.md §2.6)
        by retrying with the buffer rotated right when it ends with zero bytes.
        """
        tries = [ticket]
        zeros = len(ticket) - len(ticket.rstrip(b"\0"))
        for k in range(1, min(zeros, 4) + 1):
            tries.append(bytes(k) + ticket[:-k])
        for t in tries:
            try:
                plain = self.private_key.decrypt(t, OAEP)
            except ValueError:
                continue
            return plain.split(b"\0", 1)[0]
        return None


def encrypt_ticket(public_der: bytes, password: str | bytes) -> bytes:
    """Encrypt ``password`` + NUL with RSA-OAEP-SHA1 for the DER SPKI key from a link reply."""
    pw = password.encode() if isinstance(password, str) else password
    if len(pw) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password longer than {MAX_PASSWORD_LENGTH} bytes")
    key = serialization.load_der_public_key(public_der)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("link reply key is not RSA")
    return key.encrypt(pw + b"\0", OAEP)


@dataclass
class TicketAuth:
    """Password policy: ``password`` None disables ticketing; ``expires_at`` is a monotonic time."""

    password: bytes | None
    expires_at: float | None = None

    def check(self, plaintext: bytes | None, now: float | None = None) -> LinkError:
        if plaintext is None:
            return LinkError.PERMISSION_DENIED  # undecryptable ticket, even without ticketing
        if self.password is None:
            return LinkError.OK
        if not self.password:
            return LinkError.PERMISSION_DENIED
        if self.expires_at is not None and (time.monotonic() if now is None else now) >= self.expires_at:
            return LinkError.PERMISSION_DENIED
        return LinkError.OK if hmac.compare_digest(plaintext, self.password) else LinkError.PERMISSION_DENIED


# --- message builders and parsers ----------------------------------------------------------

def build_link_header(size: int) -> bytes:
    return LinkHeader.build(dict(magic=SPICE_MAGIC, major_version=VERSION_MAJOR, minor_version=VERSION_MINOR,
                                 size=size))


def build_link_mess(connection_id: int, channel_type: int, channel_id: int,
                    common_caps: frozenset[int] | set[int], channel_caps: frozenset[int] | set[int]) -> bytes:
    cw, chw = caps_to_words(common_caps), caps_to_words(channel_caps)
    body = LinkMess.build(dict(connection_id=connection_id, channel_type=channel_type, channel_id=channel_id,
                               num_common_caps=len(cw), num_channel_caps=len(chw),
                               caps_offset=LINK_MESS_SIZE)) + pack_words(cw + chw)
    return build_link_header(len(body)) + body


def build_link_reply(error: int, pub_key: bytes = bytes(TICKET_PUBKEY_BYTES),
                     common_caps: frozenset[int] | set[int] = frozenset(),
                     channel_caps: frozenset[int] | set[int] = frozenset()) -> bytes:
    cw, chw = caps_to_words(common_caps), caps_to_words(channel_caps)
    if error:
        cw, chw = [], []
    body = LinkReply.build(dict(error=error, pub_key=pub_key, num_common_caps=len(cw),
                                num_channel_caps=len(chw), caps_offset=LINK_REPLY_SIZE)) + pack_words(cw + chw)
    return build_link_header(len(body)) + body


def parse_link_header(data: bytes) -> int:
    """Validate a 16-byte link header; return the size that follows."""
    h = LinkHeader.parse(data)
    if h.magic != SPICE_MAGIC:
        raise LinkProtocolError(LinkError.INVALID_MAGIC, f"bad magic {bytes(h.magic)!r}")
    if h.major_version != VERSION_MAJOR:
        raise LinkProtocolError(LinkError.VERSION_MISMATCH, f"protocol version {h.major_version}.{h.minor_version}")
    return h.size


def _parse_caps(body: bytes, fixed: int, nc: int, nch: int, offset: int) -> tuple[frozenset[int], frozenset[int]]:
    if nc > MAX_CAP_WORDS or nch > MAX_CAP_WORDS:
        raise LinkProtocolError(LinkError.INVALID_DATA, f"too many capability words ({nc}+{nch})")
    if offset < fixed or offset + 4 * (nc + nch) > len(body):
        raise LinkProtocolError(LinkError.INVALID_DATA,
                                f"caps at offset {offset} ({nc}+{nch} words) outside the {len(body)}-byte message")
    words = unpack_words(body, nc + nch, offset)
    return words_to_caps(words[:nc]), words_to_caps(words[nc:])


# --- server side ---------------------------------------------------------------------------

class LinkState(enum.Enum):
    HEADER = "header"
    MESS = "mess"
    DECIDE = "decide"  # waiting for accept()/reject()
    MECHANISM = "mechanism"
    TICKET = "ticket"
    RESULT = "result"  # waiting for finish()
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class LinkRequest:
    """The client's link message arrived."""

    connection_id: int
    channel_type: int
    channel_id: int
    common_caps: frozenset[int]
    channel_caps: frozenset[int]
    minor_version: int


@dataclass(frozen=True)
class TicketReceived:
    """The 128-byte ticket arrived; ``plaintext`` is None if it did not decrypt."""

    plaintext: bytes | None


@dataclass(frozen=True)
class LinkFailed:
    code: LinkError
    reason: str


@dataclass(frozen=True)
class LinkEstablished:
    """The link completed (result OK sent / received)."""

    mini_header: bool


class ServerLink:
    """Server side of one channel's link handshake."""

    def __init__(self, key: ServerKey, common_caps: frozenset[int] = SERVER_COMMON_CAPS,
                 max_size: int = MAX_LINK_SIZE) -> None:
        self.key = key
        self.common_caps = common_caps
        self.max_size = max_size
        self.state = LinkState.HEADER
        self.request: LinkRequest | None = None
        self.remaining = b""
        self._buf = bytearray()
        self._out = bytearray()
        self._need = LINK_HEADER_SIZE
        self._size = 0
        self._minor = 0

    # -- input
    def receive_data(self, data: bytes) -> list[object]:
        if self.state in (LinkState.DONE, LinkState.FAILED):
            self.remaining += data
            return []
        self._buf += data
        try:
            return self._advance()
        except LinkProtocolError as err:
            return [self._fail(err.code, err.reason)]

    def receive_eof(self) -> list[object]:
        if self.state in (LinkState.DONE, LinkState.FAILED):
            return []
        failed = LinkFailed(LinkError.ERROR, f"connection closed during link (in {self.state.value}, "
                                             f"{len(self._buf)} bytes pending)")
        self.state = LinkState.FAILED
        return [failed]

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) < n:
            return None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _advance(self) -> list[object]:
        events: list[object] = []
        while True:
            st = self.state
            if st is LinkState.HEADER:
                if len(self._buf) >= 4 and bytes(self._buf[:4]) != SPICE_MAGIC:
                    raise LinkProtocolError(LinkError.INVALID_MAGIC, f"bad magic {bytes(self._buf[:4])!r}")
                raw = self._take(LINK_HEADER_SIZE)
                if raw is None:
                    return events
                h = LinkHeader.parse(raw)
                self._minor = h.minor_version
                if h.major_version != VERSION_MAJOR:
                    raise LinkProtocolError(LinkError.VERSION_MISMATCH,
                                            f"client protocol {h.major_version}.{h.minor_version}, server 2.2")
                if h.size < LINK_MESS_SIZE or h.size > self.max_size:
                    raise LinkProtocolError(LinkError.INVALID_DATA, f"link message size {h.size}")
                self._size = h.size
                self.state = LinkState.MESS
            elif st is LinkState.MESS:
                raw = self._take(self._size)
                if raw is None:
                    return events
                m = LinkMess.parse(raw)
                common, chan = _parse_caps(raw, LINK_MESS_SIZE, m.num_common_caps, m.num_channel_caps,
                                           m.caps_offset)
                self.request = LinkRequest(m.connection_id, m.channel_type, m.channel_id, common, chan,
                                           self._minor)
                self.state = LinkState.DECIDE
                events.append(self.request)
                return events
            elif st is LinkState.MECHANISM:
                raw = self._take(4)
                if raw is None:
                    return events
                (mech,) = struct.unpack("<I", raw)
                if mech != AuthMechanism.SPICE:
                    return events + [self._fail_result(LinkError.INVALID_DATA,
                                                       f"unsupported auth mechanism {mech}")]
                self.state = LinkState.TICKET
            elif st is LinkState.TICKET:
                raw = self._take(ENCRYPTED_TICKET_BYTES)
                if raw is None:
                    return events
                self.state = LinkState.RESULT
                events.append(TicketReceived(self.key.decrypt_ticket(raw)))
                return events
            else:  # DECIDE / RESULT: wait for the caller; keep bytes
                return events

    # -- decisions
    def accept(self, channel_caps: frozenset[int] | set[int]) -> list[object]:
        """Send the reply with our key and caps; then expect the auth data."""
        assert self.state is LinkState.DECIDE and self.request is not None
        self._out += build_link_reply(LinkError.OK, self.key.public_der, self.common_caps, channel_caps)
        if CommonCap.PROTOCOL_AUTH_SELECTION in self.request.common_caps:
            self.state = LinkState.MECHANISM
        else:
            self.state = LinkState.TICKET
        try:
            return self._advance()
        except LinkProtocolError as err:
            return [self._fail(err.code, err.reason)]

    def reject(self, code: LinkError, reason: str = "") -> LinkFailed:
        """Refuse the link message with an error reply (NEED_SECURED, BAD_CONNECTION_ID, ...)."""
        return self._fail(code, reason or code.name)

    def finish(self, code: LinkError, reason: str = "") -> LinkEstablished | LinkFailed:
        """Send the u32 link result after the ticket."""
        assert self.state is LinkState.RESULT
        if code != LinkError.OK:
            return self._fail_result(code, reason or code.name)
        self._out += struct.pack("<I", 0)
        self.state = LinkState.DONE
        self.remaining = bytes(self._buf)
        self._buf.clear()
        assert self.request is not None
        return LinkEstablished(CommonCap.MINI_HEADER in self.request.common_caps)

    def _fail(self, code: LinkError, reason: str) -> LinkFailed:
        if self.state in (LinkState.HEADER, LinkState.MESS, LinkState.DECIDE):
            self._out += build_link_reply(code)
        else:
            self._out += struct.pack("<I", code)
        self.state = LinkState.FAILED
        return LinkFailed(code, reason)

    def _fail_result(self, code: LinkError, reason: str) -> LinkFailed:
        self._out += struct.pack("<I", code)
        self.state = LinkState.FAILED
        return LinkFailed(code, reason)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out


# --- client side ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkReplyReceived:
    error: LinkError
    common_caps: frozenset[int]
    channel_caps: frozenset[int]


@dataclass(frozen=True)
class LinkResult:
    """The server's final u32; ``mini_header`` tells the framing to use from now on."""

    error: LinkError
    mini_header: bool
    server_common_caps: frozenset[int] = field(default_factory=frozenset)
    server_channel_caps: frozenset[int] = field(default_factory=frozenset)


class ClientLink:
    """Client side of one channel's link: send link mess, read reply, send ticket, read result."""

    def __init__(self, channel_type: int, channel_id: int = 0, connection_id: int = 0,
                 password: str | bytes = "", common_caps: frozenset[int] = CLIENT_COMMON_CAPS,
                 channel_caps: frozenset[int] | set[int] = frozenset()) -> None:
        self.common_caps = frozenset(common_caps)
        self.password = password
        self._out = bytearray(build_link_mess(connection_id, channel_type, channel_id, self.common_caps,
                                              frozenset(channel_caps)))
        self._buf = bytearray()
        self.state = "header"
        self._size = 0
        self.reply: LinkReplyReceived | None = None
        self.remaining = b""

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[object]:
        if self.state in ("done", "failed"):
            self.remaining += data
            return []
        self._buf += data
        events: list[object] = []
        try:
            while True:
                if self.state == "header":
                    if len(self._buf) < LINK_HEADER_SIZE:
                        break
                    self._size = parse_link_header(bytes(self._buf[:LINK_HEADER_SIZE]))
                    if self._size < 4 or self._size > MAX_LINK_SIZE:
                        raise LinkProtocolError(LinkError.INVALID_DATA, f"link reply size {self._size}")
                    del self._buf[:LINK_HEADER_SIZE]
                    self.state = "reply"
                elif self.state == "reply":
                    if len(self._buf) < min(self._size, LINK_REPLY_SIZE):
                        break
                    (err,) = struct.unpack_from("<I", self._buf)
                    if err:
                        self.state = "failed"
                        events.append(LinkResult(link_error(err), False))
                        break
                    if self._size < LINK_REPLY_SIZE:
                        raise LinkProtocolError(LinkError.INVALID_DATA, f"link reply of {self._size} bytes")
                    if len(self._buf) < self._size:
                        break
                    raw = bytes(self._buf[:self._size])
                    del self._buf[:self._size]
                    r = LinkReply.parse(raw)
                    common, chan = _parse_caps(raw, LINK_REPLY_SIZE, r.num_common_caps, r.num_channel_caps,
                                               r.caps_offset)
                    self.reply = LinkReplyReceived(LinkError.OK, common, chan)
                    events.append(self.reply)
                    if CommonCap.PROTOCOL_AUTH_SELECTION in common and \
                            CommonCap.PROTOCOL_AUTH_SELECTION in self.common_caps:
                        if CommonCap.AUTH_SPICE not in common:
                            raise LinkProtocolError(LinkError.ERROR, "server offers no SPICE ticket auth")
                        self._out += struct.pack("<I", AuthMechanism.SPICE)
                    try:
                        self._out += encrypt_ticket(bytes(r.pub_key), self.password)
                    except (ValueError, TypeError) as err:
                        raise LinkProtocolError(LinkError.ERROR, f"cannot use the server's key: {err}") from err
                    self.state = "result"
                elif self.state == "result":
                    if len(self._buf) < 4:
                        break
                    (err,) = struct.unpack_from("<I", self._buf)
                    del self._buf[:4]
                    self.state = "done" if err == 0 else "failed"
                    self.remaining = bytes(self._buf)
                    self._buf.clear()
                    assert self.reply is not None
                    # mini headers only if both announced them (spice-server decides from the client's caps)
                    mini = CommonCap.MINI_HEADER in self.reply.common_caps and CommonCap.MINI_HEADER in self.common_caps
                    events.append(LinkResult(link_error(err), mini,
                                             self.reply.common_caps, self.reply.channel_caps))
                    break
        except LinkProtocolError as err:
            self.state = "failed"
            events.append(LinkFailed(err.code, err.reason))
        return events
