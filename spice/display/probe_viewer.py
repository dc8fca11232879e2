"""A measuring SPICE viewer (SpiceClientGLib); run it with the system Python that has ``gi``.

    /usr/bin/python3 probe_viewer.py URI [--password PW] [--warmup S] [--seconds S] [--timeout S]

Connects like remote-viewer (opens every offered channel), waits for the display's MARK plus
``--warmup`` seconds (the first full screen is not measured), prints ``START`` and reads every
channel's ``total-read-bytes``; after ``--seconds`` prints ``END`` and one JSON line:
``{"bytes": {channel_type: n}, "seconds": s, "size": [w, h], "errors": [...]}``.
Used by ``aiospice bench display --wire`` for our server and for Xspice alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("--password", default="")
    ap.add_argument("--warmup", type=float, default=1.5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    loop = GLib.MainLoop()
    channels: list = []
    state = {"start": None, "t0": 0.0, "size": None, "errors": [], "marked": False}
    session = SpiceClientGLib.Session()
    session.set_property("uri", args.uri)
    if args.password:
        session.set_property("password", args.password)

    def counts() -> dict[str, int]:
        out: dict[str, int] = {}
        for ch in channels:
            key = str(ch.get_property("channel-type"))
            out[key] = out.get(key, 0) + int(ch.get_property("total-read-bytes"))
        return out

    def finish() -> bool:
        end = counts()
        start = state["start"] or {}
        print("END", flush=True)
        print(json.dumps({"bytes": {k: v - start.get(k, 0) for k, v in end.items()},
                          "seconds": time.monotonic() - state["t0"], "size": state["size"],
                          "errors": state["errors"]}), flush=True)
        session.disconnect()
        GLib.timeout_add(200, loop.quit)
        return False

    def begin() -> bool:
        state["start"] = counts()
        state["t0"] = time.monotonic()
        print("START", flush=True)
        GLib.timeout_add(int(args.seconds * 1000), finish)
        return False

    def on_mark(channel, mark):
        if mark and not state["marked"]:
            state["marked"] = True
            GLib.timeout_add(int(args.warmup * 1000), begin)

    def on_primary(channel, fmt, width, height, stride, shmid, imgdata):
        state["size"] = [width, height]

    def on_event(channel, event):
        if event in (SpiceClientGLib.ChannelEvent.ERROR_AUTH, SpiceClientGLib.ChannelEvent.ERROR_CONNECT,
                     SpiceClientGLib.ChannelEvent.ERROR_LINK, SpiceClientGLib.ChannelEvent.ERROR_IO):
            state["errors"].append(f"{channel.get_property('channel-type')}: {event.value_nick}")
            if state["start"] is None:
                GLib.timeout_add(100, loop.quit)

    def on_new(sess, channel):
        channels.append(channel)
        GObject.Object.connect(channel, "channel-event", on_event)
        if isinstance(channel, SpiceClientGLib.DisplayChannel):
            GObject.Object.connect(channel, "display-primary-create", on_primary)
            GObject.Object.connect(channel, "display-mark", on_mark)
        if not isinstance(channel, SpiceClientGLib.MainChannel):
            channel.connect()

    def on_timeout() -> bool:
        if state["start"] is None:
            state["errors"].append("timeout before the measurement started")
            print(json.dumps({"bytes": {}, "seconds": 0, "size": state["size"], "errors": state["errors"]}),
                  flush=True)
            loop.quit()
        return False

    GObject.Object.connect(session, "channel-new", on_new)
    if not session.connect():
        print(json.dumps({"errors": ["connect failed"]}), flush=True)
        return 1
    GLib.timeout_add(int(args.timeout * 1000), on_timeout)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
