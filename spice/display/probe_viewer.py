"""A measuring SPICE viewer (SpiceClientGLib); run it with the system Python that has ``gi``.

    /usr/bin/python3 probe_viewer.py URI [--password PW] [--warmup S] [--seconds S] [--timeout S]

Connects like remote-viewer (opens every offered channel), waits for the display's MARK plus
``--warmup`` seconds (the first full screen is not measured), prints ``START`` and reads every
channel's ``total-read-bytes``; after ``--seconds`` prints ``END`` and one JSON line:
``{"bytes": {channel_type: n}, "seconds": s, "size": [w, h], "frames": n, "latency_ms": [...],
"errors": [...]}``.  ``frames`` counts the pictures delivered: bursts of ``display-invalidate``
signals.  Parts that arrive within half a frame of ``--scene-fps`` are one picture, and updates wholly
inside ``--clock-area`` are left out (:class:`framecount.FrameCounter`); ``span`` is the time from the
first picture to the last, ``bursts`` the plain count of 4 ms-separated bursts of every update.  With
``--keys`` it also presses a key every ``--key-interval`` seconds on the inputs channel and records
the time from the press to the first framebuffer change outside the areas that changed during the
warm-up (a clock): ``latency_ms``.
Used by ``aiospice bench display --wire`` and ``aiospice bench compare`` for our server and Xspice alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

try:  # run as a script (system Python): its folder is on sys.path
    from framecount import FrameCounter, inside
except ImportError:
    from spice.display.framecount import FrameCounter, inside


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("--password", default="")
    ap.add_argument("--warmup", type=float, default=1.5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--keys", action="store_true", help="measure key press -> changed pixels latency")
    ap.add_argument("--key-interval", type=float, default=0.15)
    ap.add_argument("--clock-area", type=lambda v: tuple(int(n) for n in v.split(",")), default=None,
                    help="X,Y,W,H: updates wholly inside it are not counted as frames")
    ap.add_argument("--scene-fps", type=float, default=None, help="the scene's frame rate, if known")
    ap.add_argument("--scancode", type=lambda v: int(v, 0), default=0x1E, help="PC/AT set-1 scancode ('a')")
    args = ap.parse_args()
    loop = GLib.MainLoop()
    channels: list = []
    state = {"start": None, "t0": 0.0, "size": None, "errors": [], "marked": False, "key_t0": None,
             "inputs": None}
    background: list[tuple[int, int, int, int]] = []  # areas that changed during the warm-up
    latencies: list[float] = []
    counter = FrameCounter(args.clock_area, args.scene_fps)
    misses = [0]
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
                          "frames": counter.frames, "bursts": counter.bursts, "span": counter.span,
                          "latency_ms": latencies, "key_misses": misses[0], "errors": state["errors"]}), flush=True)
        session.disconnect()
        GLib.timeout_add(200, loop.quit)
        return False

    def begin() -> bool:
        state["start"] = counts()
        state["t0"] = time.monotonic()
        print("START", flush=True)
        GLib.timeout_add(int(args.seconds * 1000), finish)
        if args.keys:
            GLib.timeout_add(int(args.key_interval * 1000), press)
        return False

    def press() -> bool:
        inputs = state["inputs"]
        if state["start"] is None or inputs is None:
            return False
        if state["key_t0"] is not None:  # the previous press never showed: a miss
            misses[0] += 1
            inputs.key_release(args.scancode)
        state["key_t0"] = time.monotonic()
        inputs.key_press(args.scancode)
        return True

    def in_background(x: int, y: int, w: int, h: int) -> bool:
        return any(inside(area, x, y, w, h) for area in background)

    def on_invalidate(channel, x, y, w, h):
        now = time.monotonic()
        if state["start"] is None:
            if state["marked"]:
                background.append((x, y, w, h))
            return
        counter.update(now, x, y, w, h)
        t0 = state["key_t0"]
        if t0 is not None and not in_background(x, y, w, h):
            latencies.append(1000 * (now - t0))
            state["key_t0"] = None
            state["inputs"].key_release(args.scancode)

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
            GObject.Object.connect(channel, "display-invalidate", on_invalidate)
        if isinstance(channel, SpiceClientGLib.InputsChannel):
            state["inputs"] = channel
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
