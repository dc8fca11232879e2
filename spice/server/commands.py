"""``aiospice serve`` and ``aiospice certs``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from .config import ServerConfig, parse_secure_channels

log = logging.getLogger("spice.server")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1024x768, not {text!r}") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise argparse.ArgumentTypeError("size must be between 64x64 and 8192x8192")
    return w, h


def _secure(text: str) -> frozenset[int]:
    try:
        return parse_secure_channels(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _usb_filter(text: str) -> str:
    from usbredir.filter import parse_rules

    try:
        parse_rules(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"bad usbredir filter: {err}") from None
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the SPICE server",
                              description="Serve a guest desktop to SPICE clients (remote-viewer, spicy, browsers).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5900, help="plain SPICE port (default 5900; 0 = any free port)")
    p.add_argument("--no-plain", action="store_true", help="no plain port (TLS only)")
    p.add_argument("--tls-port", type=int, help="TLS SPICE port (needs --certs)")
    p.add_argument("--certs", type=Path, help="directory with server-cert.pem and server-key.pem")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--password", help="ticket password (or set AIOSPICE_PASSWORD)")
    auth.add_argument("--password-file", type=Path, help="read the password from this file (first line)")
    auth.add_argument("--disable-ticketing", action="store_true", help="allow clients without a password")
    p.add_argument("--password-expires", type=float, metavar="SECONDS",
                   help="the password stops working this many seconds after start")
    p.add_argument("--secure-channels", type=_secure, default=frozenset(), metavar="LIST",
                   help="channels refused on the plain port: main,display,inputs,cursor,usbredir or all")
    p.add_argument("--size", type=_size, default=(1024, 768), help="guest screen size WxH (default 1024x768)")
    p.add_argument("--guest", default="builtin", choices=["builtin"], help="the machine behind the display")
    p.add_argument("--workload", default=None, metavar="NAME",
                   help="make the built-in guest play a standard workload: idle-clock, typing, window-drag, "
                        "scroll, video-320x240, video-1080p, many-small-fills, photo-slideshow")
    # (USB redirection, engineer H)
    p.add_argument("--usb-channels", type=int, default=4, metavar="N",
                   help="usbredir channels offered to SPICE clients, one per redirected device (default 4; 0 = none)")
    p.add_argument("--usbredir-listen", type=int, metavar="PORT",
                   help="also accept plain usbredir over TCP on PORT (usbredirect / aiospice usb share --to)")
    p.add_argument("--usb-filter", type=_usb_filter, metavar="RULES",
                   help="usbredirfilter rules for redirected devices, e.g. '0x08,-1,-1,-1,1|-1,-1,-1,-1,0' "
                        "(class,vendor,product,version,allow|...); rejected devices get filter_reject")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    # (web front door, engineer F) extra page origins whose WebSockets are accepted
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept WebSocket connections from pages of this origin, e.g. http://host:8080 "
                        "(repeatable; the server's own origin is always accepted)")
    # (display, engineer I)
    p.add_argument("--streaming", choices=("mjpeg", "lossy", "off", "auto"), default="mjpeg",
                   help="video areas as MJPEG streams (mjpeg, default, as libspice-server), also photographic stills "
                        "as JPEG until they stay still (lossy), never lossy (off), or as each client's caps say (auto)")
    p.add_argument("--max-fps", type=float, default=None, metavar="FPS", help="cap display updates per client")
    p.add_argument("--video-codecs", default="mjpeg,h264,vp8", metavar="LIST",
                   help="stream codecs in order of preference (mjpeg, h264, vp8); each client gets the first it "
                        "announces, or the first of its own PREFERRED_VIDEO_CODEC_TYPE list (default: %(default)s: "
                        "MJPEG costs a fifth of H.264's CPU, H.264 a tenth of MJPEG's bytes)")
    p.set_defaults(func=serve)

    c = subparsers.add_parser("certs", help="create a CA and a server certificate for TLS",
                              description="Write ca-cert.pem, server-cert.pem and server-key.pem into DIR.")
    c.add_argument("dir", type=Path)
    c.add_argument("--host", action="append", help="host name or IP in the certificate (repeatable; "
                                                  "default 127.0.0.1 and localhost)")
    c.add_argument("--days", type=int, default=3650)
    c.set_defaults(func=certs)


def certs(args: argparse.Namespace) -> int:
    from spice.certs import generate

    hosts = args.host or ["127.0.0.1", "localhost"]
    files = generate(args.dir, hosts, args.days)
    for name, path in files.items():
        print(f"wrote {path}" + (" (keep private)" if name.endswith("key.pem") else ""))
    print(f"connect with: remote-viewer --spice-ca-file={files['ca-cert.pem']} spice://{hosts[0]}?tls-port=5901")
    return 0


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    password = args.password
    if args.password_file is not None:
        password = args.password_file.read_text().splitlines()[0] if args.password_file.read_text() else ""
    if password is None and not args.disable_ticketing:
        password = os.environ.get("AIOSPICE_PASSWORD") or None
    cfg = ServerConfig(host=args.host, port=None if args.no_plain else args.port, tls_port=args.tls_port,
                       certs_dir=args.certs, password=password, disable_ticketing=args.disable_ticketing,
                       password_expires=args.password_expires, secure_channels=args.secure_channels)
    cfg.usb_channels = max(0, min(getattr(args, "usb_channels", 0) or 0, 64))
    cfg.usbredir_listen = getattr(args, "usbredir_listen", None)
    cfg.usb_filter = getattr(args, "usb_filter", None)
    cfg.extra["allow_origin"] = list(getattr(args, "allow_origin", None) or [])  # read by spice.server.frontdoor
    cfg.streaming, cfg.max_fps = getattr(args, "streaming", "auto"), getattr(args, "max_fps", None)
    if getattr(args, "video_codecs", None):
        from spice.display import video

        cfg.video_codecs = video.parse_codecs(args.video_codecs)  # ValueError: a usage error
    return cfg


def make_guest(name: str, size: tuple[int, int], workload: str | None = None):
    if name == "builtin":
        from spice.guests.builtin import BuiltinGuest

        return BuiltinGuest(width=size[0], height=size[1], workload=workload)
    raise ValueError(f"unknown guest {name!r}")


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)
    except OSError as err:
        print(f"aiospice serve: cannot read password file: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # --video-codecs
        print(f"aiospice serve: {err}", file=sys.stderr)
        return 2
    problem = cfg.auth_error()
    if problem is None and args.workload is not None:
        from spice.guests.builtin import WORKLOADS

        if args.workload not in WORKLOADS:
            problem = f"unknown workload {args.workload!r} (choose from {', '.join(sorted(WORKLOADS))})"
    if problem:
        print(f"aiospice serve: refusing to start: {problem}", file=sys.stderr)
        return 2
    warning = cfg.exposure_warning()
    if warning:
        print(f"aiospice serve: WARNING: {warning}", file=sys.stderr)
    return asyncio.run(_serve(cfg, args))


async def _serve(cfg: ServerConfig, args: argparse.Namespace) -> int:
    from .server import SpiceServer

    guest = make_guest(args.guest, args.size, args.workload)
    server = SpiceServer(guest, cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except (OSError, ValueError) as err:  # port in use, unreadable certificates, ...
        print(f"aiospice serve: cannot start: {err}", file=sys.stderr)
        await server.close()
        return 1
    # what start-up built lives as long as the server: out of every later collection (shorter GC pauses)
    gc.collect()
    gc.freeze()
    ports = ", ".join(f"{k} {cfg.host}:{v}" for k, v in server.ports.items())
    print(f"aiospice: serving {args.guest} guest {args.size[0]}x{args.size[1]} on {ports}", flush=True)
    await stop.wait()
    log.info("signal received: closing %d connection(s)", len(server.connections))
    await server.close()
    print("aiospice: stopped", flush=True)
    return 0
