"""``aiospice`` command line: each area registers its own sub-commands."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiospice", description="SPICE remote-display and USB-redirection server")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each module adds its sub-commands and sets ``func`` (called with the parsed args, returns an exit code).
    from spice.server import commands as server_commands  # serve, certs
    from usbredir import commands as usb_commands  # usb list, usb share

    server_commands.register(sub)
    usb_commands.register(sub)
    try:
        from spice.display import bench as display_bench  # bench display
    except ImportError:  # pragma: no cover - optional while the display bench is absent
        display_bench = None
    if display_bench is not None:
        display_bench.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
