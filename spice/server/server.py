"""The SPICE server object: listeners (TCP, TLS), key, password, sessions, guest, display pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any

from spice.guests.base import Guest
from spice.proto.enums import ChannelType, LinkError, NotifySeverity, NotifyVisibility
from spice.proto.link import ServerKey, TicketAuth

from .config import ServerConfig
from .connection import ChannelConnection, handle_spice_stream
from .session import SessionRegistry
from .stats import Stats

log = logging.getLogger("spice.server")
MAX_IMAGE_PIXELS = 8192 * 8192
HTTP_PREFIXES = (b"GET ", b"HEAD", b"POST", b"PUT ", b"OPTI", b"DELE", b"PATC", b"CONN", b"TRAC")


def make_tls_context(certs_dir) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = certs_dir / "server-cert.pem", certs_dir / "server-key.pem"
    for f in (cert, key):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found (create it with `aiospice certs {certs_dir}`)")
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class SpiceServer:
    """Serves one guest to any number of SPICE clients."""

    def __init__(self, guest: Guest, config: ServerConfig | None = None, key: ServerKey | None = None) -> None:
        self.guest = guest
        self.config = config or ServerConfig()
        self.key = key or ServerKey()
        cfg = self.config
        password = None if cfg.disable_ticketing and cfg.password is None else (cfg.password or "").encode()
        expires = time.monotonic() + cfg.password_expires if cfg.password_expires else None
        self.auth = TicketAuth(password, expires)
        self.sessions = SessionRegistry()
        self.stats = Stats()
        self.connections: set[ChannelConnection] = set()
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._pipeline: Any = None
        self.stats.pipeline = lambda: getattr(self._pipeline, "stats", None)
        self.ports: dict[str, int] = {}
        self.usb: Any = None  # spice.server.usb.ServerUsb once started (USB redirection on)

    # -- display pipeline shared by all display channels (messages encoded once, fanned out)
    @property
    def display_pipeline(self) -> Any:
        if self._pipeline is None:
            try:
                from spice.display.pipeline import DisplayPipeline
            except ImportError:
                from .simple_display import SimpleDisplayPipeline

                log.info("spice.display.pipeline not available: using the plain BITMAP pipeline")
                self._pipeline = SimpleDisplayPipeline(self.guest)
            else:
                # One DRAW_COPY per dirty rectangle, never cut into bands: spicy-screenshot (and
                # spice-gtk's first display-invalidate) needs the first draw to be the whole screen.
                self._pipeline = DisplayPipeline(self.guest, max_band_pixels=MAX_IMAGE_PIXELS,
                                                 max_fps=self.config.max_fps or None)
                if self.config.streaming in ("mjpeg", "lossy"):  # video areas as MJPEG streams
                    self._pipeline.lossy = True
                    self._pipeline.jpeg_stills = self.config.streaming == "lossy"  # + JPEG stills, refreshed
                elif self.config.streaming == "off":
                    self._pipeline.lossy, self._pipeline.streams = False, False
                if self.config.video_codecs:
                    self._pipeline.video_codecs = self.config.video_codecs
        return self._pipeline

    def set_password(self, password: str | None, expires_in: float | None = None) -> None:
        """Change the ticket; ``None`` means ticketing disabled.  Applies to new links."""
        self.auth = TicketAuth(None if password is None else password.encode(),
                               time.monotonic() + expires_in if expires_in else None)

    # -- listeners
    async def start(self, start_guest: bool = True) -> None:
        cfg = self.config
        if start_guest:
            await self.guest.start()
        if self.usb is None and (cfg.usb_channels > 0 or cfg.usbredir_listen is not None):
            from .usb import start_usb

            self.usb = await start_usb(self)
        if cfg.port is not None:
            srv = await asyncio.start_server(self._on_accept, cfg.host, cfg.port, limit=1 << 20)
            self._servers.append(srv)
            self.ports["plain"] = srv.sockets[0].getsockname()[1]
            log.info("SPICE listening on %s:%d", cfg.host, self.ports["plain"])
        if cfg.tls_port is not None:
            assert cfg.certs_dir is not None
            ctx = make_tls_context(cfg.certs_dir)
            srv = await asyncio.start_server(self._on_accept, cfg.host, cfg.tls_port, ssl=ctx,
                                             ssl_handshake_timeout=cfg.link_timeout, limit=1 << 20)
            self._servers.append(srv)
            self.ports["tls"] = srv.sockets[0].getsockname()[1]
            log.info("SPICE (TLS) listening on %s:%d", cfg.host, self.ports["tls"])

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tasks) >= self.config.max_connections:
            self.stats.connections_refused += 1
            log.warning("%s: refused, %d connections open (limit)", writer.get_extra_info("peername"),
                        len(self._tasks))
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            try:
                first = await asyncio.wait_for(reader.readexactly(4), self.config.link_timeout)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError) as err:
                peer = writer.get_extra_info("peername")
                self.stats.link_failures["TIMEOUT" if isinstance(err, TimeoutError) else "ERROR"] += 1
                log.info("%s: closed before sending 4 bytes (%s)", peer, type(err).__name__)
                writer.close()
                return
            if first.startswith(HTTP_PREFIXES):
                frontdoor = _frontdoor()
                if frontdoor is not None:
                    await frontdoor.handle_http(self, reader, writer, first)
                    return
            await handle_spice_stream(self, reader, writer, first)
        except asyncio.CancelledError:
            writer.close()
            raise

    async def close(self, reason: LinkError = LinkError.OK) -> None:
        """Stop listening, say DISCONNECTING on every channel, close every client, stop the guest."""
        for srv in self._servers:
            srv.close()
        self.notify_all("server shutting down", severity=NotifySeverity.WARN)
        for conn in list(self.connections):
            conn.close("server shutting down", disconnecting=int(reason))
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 5)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for t in list(self._tasks):
            t.cancel()
        self._servers.clear()
        if self._pipeline is not None and hasattr(self._pipeline, "close"):
            self._pipeline.close()
        if self.usb is not None:
            await self.usb.close()
            self.usb = None
        await self.guest.stop()

    def notify_all(self, text: str, severity: int = NotifySeverity.INFO) -> None:
        """Send a NOTIFY (high visibility) on every main channel."""
        for conn in list(self.connections):
            ch = conn.channel
            if ch is not None and ch.channel_type == ChannelType.MAIN:
                conn.protocol.notify(text, severity, NotifyVisibility.HIGH)
                conn.wakeup()

    def channel_list(self, profile: str | None = None) -> list[tuple[int, int]]:
        """(type, id) of every channel offered in CHANNELS_LIST, from the channel registry."""
        from spice.channels.registry import channel_class, channel_types

        out = []
        for t in channel_types():
            if t == ChannelType.MAIN:
                continue
            cls = channel_class(t)
            if cls is not None and (profile is None or cls.offered_to(profile)):
                out += [(t, i) for i in cls.channel_ids(self)]
        return out


def _frontdoor():
    try:
        from . import frontdoor
    except ImportError:
        return None
    return frontdoor
