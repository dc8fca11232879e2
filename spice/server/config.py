"""Server configuration (what ``aiospice serve`` options become)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from spice.proto.enums import ChannelType

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int | None = 5900  # plain port; None = no plain listener
    tls_port: int | None = None
    certs_dir: Path | None = None  # holds server-cert.pem and server-key.pem
    password: str | None = None  # None together with disable_ticketing = no auth
    disable_ticketing: bool = False
    password_expires: float | None = None  # seconds from start; None = never
    secure_channels: frozenset[int] = frozenset()  # channel types refused on the plain port (NEED_SECURED)
    name: str = "aiospice"
    link_timeout: float = 10.0  # whole link handshake
    ack_window: int = 20
    ack_timeout: float = 30.0  # a client that stays blocked this long is disconnected
    ping_interval: float = 30.0  # PING on the main channel for the metrics round trip (0 = off)
    max_connections: int = 256
    max_pending_bytes: int = 16 << 20  # per connection, queued but unwritable
    usb_channels: int = 0  # usbredir (spicevmc) channels offered, ids 0..N-1 (`serve` default 4)
    usbredir_listen: int | None = None  # plain usbredir (usb-guest) TCP port; 0 = any free port
    usb_filter: str | None = None  # usbredirfilter rules deciding which redirected devices are accepted
    # display (engineer I): "auto" = each client's caps decide (lossless unless told), "mjpeg" = MJPEG streams
    # for video areas to every client (libspice-server's default), "lossy" = that + photographic stills as JPEG
    # with a lossless refresh once still, "off" = never lossy; frame-rate cap per client
    streaming: str = "auto"
    max_fps: float | None = None
    video_codecs: tuple[int, ...] | None = None  # stream codecs, preferred first (None: spice.display.video's)
    extra: dict = field(default_factory=dict)

    def auth_error(self) -> str | None:
        """Why the configuration must not start, or None."""
        if not self.password and not self.disable_ticketing:
            return ("no password set: pass --password, --password-file or AIOSPICE_PASSWORD, "
                    "or --disable-ticketing to allow anyone to connect")
        if self.password is not None and len(self.password.encode()) > 60:
            return "password longer than 60 bytes (SPICE clients refuse it)"
        if self.tls_port is not None and self.certs_dir is None:
            return "--tls-port needs --certs DIR (create one with `aiospice certs DIR`)"
        return None

    def exposure_warning(self) -> str | None:
        """What an operator should know about listening off loopback, or None."""
        if self.host in LOOPBACK:
            return None
        warnings = []
        if self.port is not None:
            warnings.append(f"listening on {self.host}:{self.port} without TLS: passwords and screen contents "
                            "cross the network in the clear")
        if self.usbredir_listen is not None:
            warnings.append(f"plain usbredir on {self.host} (--usbredir-listen) has no password and no TLS: "
                            "anyone who reaches it can plug USB devices (keyboards too) into the guest")
        return "; ".join(warnings) or None


SECURE_CHANNEL_NAMES = {
    "main": ChannelType.MAIN, "display": ChannelType.DISPLAY, "inputs": ChannelType.INPUTS,
    "cursor": ChannelType.CURSOR, "usbredir": ChannelType.USBREDIR, "playback": ChannelType.PLAYBACK,
    "record": ChannelType.RECORD, "port": ChannelType.PORT, "webdav": ChannelType.WEBDAV,
    "smartcard": ChannelType.SMARTCARD,
}


def parse_secure_channels(text: str) -> frozenset[int]:
    """``main,display`` or ``all`` -> channel type numbers."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if "all" in names:
        return frozenset(SECURE_CHANNEL_NAMES.values())
    bad = [n for n in names if n not in SECURE_CHANNEL_NAMES]
    if bad:
        raise ValueError(f"unknown channel name(s): {', '.join(bad)}")
    return frozenset(SECURE_CHANNEL_NAMES[n] for n in names)
