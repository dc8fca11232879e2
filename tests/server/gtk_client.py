"""A scripted spice-gtk (SpiceClientGLib) client; run under /usr/bin/python3 (which has ``gi``).

    gtk_client.py URI PASSWORD OUT.json [--type TEXT] [--click X,Y] [--dump FB.raw]
                  [--ca-file F] [--secure-channels main,display] [--settle SECONDS]

Connects main, opens every channel it is offered (as remote-viewer does), waits for the
display's MARK, optionally types TEXT (press/release, ``\\n`` = Enter) and clicks at X,Y in
client mouse mode, waits, dumps the primary surface (BGRX rows) to FB.raw and writes a JSON
report: channels opened (type, id), display size, events seen, errors.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

# set-1 make codes for the characters we type
SCANCODES = {**{c: code for c, code in zip("1234567890", range(0x02, 0x0C), strict=True)},
             **{c: code for c, code in zip("qwertyuiop", range(0x10, 0x1A), strict=True)},
             **{c: code for c, code in zip("asdfghjkl", range(0x1E, 0x27), strict=True)},
             **{c: code for c, code in zip("zxcvbnm", range(0x2C, 0x33), strict=True)},
             " ": 0x39, "\n": 0x1C, "-": 0x0C, ".": 0x34, "/": 0x35}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("password")
    ap.add_argument("out")
    ap.add_argument("--type", default="")
    ap.add_argument("--click", default="")
    ap.add_argument("--dump", default="")
    ap.add_argument("--ca-file", default="")
    ap.add_argument("--secure-channels", default="")
    ap.add_argument("--settle", type=float, default=1.5)
    ap.add_argument("--server-mouse", default="", help="DX,DY,N: switch to server mouse mode, N relative motions")
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()

    loop = GLib.MainLoop()
    report = {"channels": [], "events": [], "errors": [], "mark": False, "size": None, "mouse_mode": None,
              "cursor_moves": [], "cursor_shapes": []}
    state = {"primary": None, "inputs": None, "display": None, "main": None, "done": False}
    session = SpiceClientGLib.Session()
    session.set_property("uri", args.uri)
    session.set_property("password", args.password)
    if args.ca_file:
        session.set_property("ca-file", args.ca_file)
    if args.secure_channels:
        session.set_property("secure-channels", args.secure_channels.split(","))

    def finish() -> bool:
        if state["done"]:
            return False
        state["done"] = True
        if args.dump and state["primary"] is not None:
            addr, stride, w, h = state["primary"]
            with open(args.dump, "wb") as f:
                f.write(ctypes.string_at(addr, stride * h))
        session.disconnect()
        GLib.timeout_add(300, loop.quit)
        return False

    def do_input() -> bool:
        inp = state["inputs"]
        if inp is None:
            report["errors"].append("no inputs channel")
            GLib.timeout_add(100, finish)
            return False
        for i, ch in enumerate(args.type):
            code = SCANCODES[ch]
            if i % 2:  # both paths: KEY_SCANCODE (press+release) and KEY_DOWN/KEY_UP
                inp.key_press_and_release(code)
            else:
                inp.key_press(code)
                inp.key_release(code)
        if args.click:
            x, y = (int(v) for v in args.click.split(","))
            inp.position(x, y, 0, 0)
            inp.button_press(1, 1)  # SPICE_MOUSE_BUTTON_LEFT, mask LEFT
            inp.button_release(1, 0)
        if args.server_mouse:
            state["main"].request_mouse_mode(1)  # SPICE_MOUSE_MODE_SERVER
            GLib.timeout_add(500, do_motion)
        else:
            GLib.timeout_add(int(args.settle * 1000), finish)
        return False

    def do_motion() -> bool:
        dx, dy, n = (int(v) for v in args.server_mouse.split(","))
        report["mouse_mode"] = state["main"].get_property("mouse-mode")
        for _ in range(n):
            state["inputs"].motion(dx, dy, 0)
        GLib.timeout_add(int(args.settle * 1000), finish)
        return False

    def on_cursor_move(channel, x, y):
        report["cursor_moves"].append([x, y])

    def on_cursor_set(channel, width, height, hot_x, hot_y, rgba):
        data = ctypes.string_at(rgba, width * height * 4).hex() if rgba else ""
        report["cursor_shapes"].append([width, height, hot_x, hot_y, data])

    def on_mark(channel, mark):
        report["events"].append(f"mark {mark}")
        if mark and not report["mark"]:
            report["mark"] = True
            GLib.timeout_add(300, do_input)

    def on_primary_create(channel, fmt, width, height, stride, shmid, imgdata):
        state["primary"] = (imgdata, stride, width, height)
        report["size"] = [width, height]

    def on_channel_event(channel, event):
        name = channel.get_property("channel-type")
        report["events"].append(f"{name}:{channel.get_property('channel-id')} {event.value_nick}")
        if event in (SpiceClientGLib.ChannelEvent.ERROR_AUTH, SpiceClientGLib.ChannelEvent.ERROR_CONNECT,
                     SpiceClientGLib.ChannelEvent.ERROR_TLS, SpiceClientGLib.ChannelEvent.ERROR_LINK,
                     SpiceClientGLib.ChannelEvent.ERROR_IO):
            report["errors"].append(f"{name}: {event.value_nick}")
            GLib.timeout_add(100, finish)
        elif event == SpiceClientGLib.ChannelEvent.OPENED:
            report["channels"].append({"type": channel.get_property("channel-type"),
                                       "id": channel.get_property("channel-id")})

    def on_new_channel(sess, channel):
        GObject.Object.connect(channel, "channel-event", on_channel_event)
        if isinstance(channel, SpiceClientGLib.DisplayChannel):
            state["display"] = channel
            GObject.Object.connect(channel, "display-primary-create", on_primary_create)
            GObject.Object.connect(channel, "display-mark", on_mark)
        if isinstance(channel, SpiceClientGLib.InputsChannel):
            state["inputs"] = channel
        if isinstance(channel, SpiceClientGLib.MainChannel):
            state["main"] = channel
        if isinstance(channel, SpiceClientGLib.CursorChannel):
            GObject.Object.connect(channel, "cursor-move", on_cursor_move)
            GObject.Object.connect(channel, "cursor-set", on_cursor_set)
        if not isinstance(channel, SpiceClientGLib.MainChannel):
            channel.connect()

    def on_timeout() -> bool:
        report["errors"].append("timeout")
        finish()
        return False

    GObject.Object.connect(session, "channel-new", on_new_channel)
    if not session.connect():
        report["errors"].append("session.connect() failed")
    else:
        GLib.timeout_add(int(args.timeout * 1000), on_timeout)
        loop.run()
    with open(args.out, "w") as f:
        json.dump(report, f)
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
