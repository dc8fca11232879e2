"""``aiospice usb`` sub-commands: ``list`` (local devices) and ``share`` (export a device)."""

from __future__ import annotations

import argparse


def _list(args: argparse.Namespace) -> int:
    from usbredir.share import list_main

    return list_main(args)


def _share(args: argparse.Namespace) -> int:
    from usbredir.share import share_main

    return share_main(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``usb list`` and ``usb share`` to the ``aiospice`` parser."""
    usb = subparsers.add_parser("usb", help="USB redirection: list and share devices")
    sub = usb.add_subparsers(dest="usb_command", required=True, metavar="SUBCOMMAND")

    p_list = sub.add_parser("list", help="list local USB devices (bus-address, VID:PID, class, product)")
    p_list.set_defaults(func=_list)

    p = sub.add_parser("share", help="export a local or virtual USB device to a SPICE server or usbredir peer")
    p.add_argument("target", nargs="?", help="spice://HOST:PORT or spice+tls://HOST:PORT")
    p.add_argument("--to", metavar="HOST:PORT", help="plain usbredir over TCP: connect to HOST:PORT")
    p.add_argument("--listen", metavar="[HOST:]PORT", help="plain usbredir over TCP: wait for one peer")
    dev = p.add_argument_group("device (one or more)")
    dev.add_argument("--device", action="append", default=[], metavar="VID:PID|BUS-ADDR",
                     help="a local USB device through pyusb")
    dev.add_argument("--keyboard", action="store_true", help="a virtual HID keyboard")
    dev.add_argument("--mouse", action="store_true", help="a virtual HID boot mouse (relative, with wheel)")
    dev.add_argument("--tablet", action="store_true", help="a virtual HID tablet (absolute pointer)")
    dev.add_argument("--storage", action="append", default=[], metavar="IMAGE[,ro]",
                     help="a virtual USB stick on an image file")
    p.add_argument("--password", help="SPICE ticket (else --password-file or $AIOSPICE_PASSWORD)")
    p.add_argument("--password-file", metavar="FILE", help="read the SPICE ticket from FILE")
    p.add_argument("--ca-file", metavar="PEM", help="CA that signed the server certificate for spice+tls:// "
                   "(default: the system's trusted CAs)")
    p.add_argument("--insecure", action="store_true",
                   help="spice+tls:// without verifying the server certificate (exposes the password)")
    p.add_argument("--type-text", metavar="TEXT", help="with --keyboard: type TEXT once the guest polls the keyboard")
    p.add_argument("--type-delay", metavar="SECONDS", type=float, default=1.0,
                   help="wait this long after the guest starts polling before typing (default 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no status line")
    p.set_defaults(func=_share)
