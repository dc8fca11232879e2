"""``aiospice bench display``: the display pipeline under benchmark scenes, in-process.

For each workload and image type: a fresh guest, ``--clients`` clients that take on every wake-up
(an ideal fast client), ``--seconds`` of run time.  Prints frames/s, process CPU ms per frame (guest
drawing included), pipeline CPU ms per frame (frame intake + takes + encodes) and bytes per frame per
client.  ``--verify`` also decodes every command into a shadow canvas and checks it against the guest
(after the streams ended and the lossless refreshes, so also with ``--lossy``).  ``--wire`` serves
the same scenes to a real spice-gtk client and prints its display-channel bytes and our CPU;
``--xspice`` adds Xspice (libspice-server 0.15) driven by the X11 versions of the scenes as the
reference, measured the same way.

    aiospice bench display [--size 1920x1080] [--seconds 3] [--types BITMAP,LZ_RGB,LZ4,AUTO]
                           [--workloads idle-clock,typing,window-drag,full-redraw,...] [--clients N]
                           [--lossy] [--verify] [--wire [--xspice]]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from spice.display.caps import ImageCaps, ImageType
from spice.display.pipeline import DisplayPipeline, command_size
from spice.display.shadow import ShadowCanvas, visible
from spice.display.synthetic import SyntheticGuest

GTK_COMMON = {0, 2, 3}
GTK_DISPLAY = {0, 1, 2, 3, 4, 5, 7, 8, 9}
GTK_CACHE_PIXELS = 20971520  # spice-gtk 0.42 DISPLAY_INIT pixmap_cache_size
DEFAULT_WORKLOADS = "idle-clock,typing,window-drag,full-redraw"


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="run a benchmark and print figures")
    sub = p.add_subparsers(dest="bench_target", required=True, metavar="TARGET")
    d = sub.add_parser("display", help="display pipeline: frames/s, CPU per frame, bytes per frame")
    d.add_argument("--size", default="1920x1080", help="guest screen WxH (default 1920x1080)")
    d.add_argument("--seconds", type=float, default=3.0, help="run time per workload and type")
    d.add_argument("--workloads", default=DEFAULT_WORKLOADS, help="comma-separated scene names")
    d.add_argument("--types", default="BITMAP,LZ_RGB,LZ4", help="comma-separated image types (or AUTO)")
    d.add_argument("--clients", type=int, default=1, help="clients per pipeline (encodes are shared)")
    d.add_argument("--guest", choices=("auto", "builtin", "synthetic"), default="auto",
                   help="builtin = spice.guests.builtin.BuiltinGuest (auto: if it has the workload)")
    d.add_argument("--lossy", action="store_true", help="allow JPEG / MJPEG streams (issue 6 paths)")
    d.add_argument("--verify", action="store_true", help="decode everything and compare with the guest")
    d.add_argument("--wire", action="store_true",
                   help="also serve the scenes to a real spice-gtk client (SpiceClientGLib) and count its bytes")
    d.add_argument("--xspice", action="store_true",
                   help="with --wire: the same scenes as X clients on Xspice (libspice-server) as the reference")
    d.set_defaults(func=run_display)
    from spice.display import compare

    compare.register(sub)


def make_guest(kind: str, width: int, height: int, workload: str):
    if kind in ("auto", "builtin"):
        try:
            from spice.guests.builtin.guest import BuiltinGuest
            from spice.guests.builtin.workloads import WORKLOADS
        except ImportError:
            if kind == "builtin":
                raise
        else:
            if workload in WORKLOADS:
                return BuiltinGuest(width, height, workload=workload)
            if workload == "idle-clock":
                return BuiltinGuest(width, height)
            if kind == "builtin":
                raise SystemExit(f"BuiltinGuest has no workload {workload!r} (has {sorted(WORKLOADS)})")
    return SyntheticGuest(width, height, workload)


async def run_one(args, workload: str, type_name: str) -> dict:
    w, h = (int(v) for v in args.size.lower().split("x"))
    guest = make_guest(args.guest, w, h, workload)
    pipeline = DisplayPipeline(guest)
    spent = [0.0]
    on_frame = pipeline._listener.on_frame

    def timed_frame(frame):
        t0 = time.process_time()
        on_frame(frame)
        spent[0] += time.process_time() - t0

    pipeline._listener.on_frame = timed_frame
    force = None if type_name == "AUTO" else ImageType[type_name]
    caps = ImageCaps.from_caps(GTK_COMMON, GTK_DISPLAY, "spice-gtk", force=force, lossy=args.lossy,
                               cache_pixels=GTK_CACHE_PIXELS)
    loop = asyncio.get_running_loop()
    stats = {"bytes": 0, "takes": 0}
    shadows: list[ShadowCanvas] = []
    clients = []

    def make_wakeup(idx: int):
        scheduled = [False]

        def take() -> None:
            scheduled[0] = False
            t0 = time.process_time()
            cmds = clients[idx].take()
            spent[0] += time.process_time() - t0
            stats["bytes"] += sum(command_size(c) for c in cmds)
            stats["takes"] += 1
            if args.verify:
                shadows[idx].apply(cmds)

        def wakeup() -> None:
            if not scheduled[0]:
                scheduled[0] = True
                loop.call_soon(take)
        return wakeup

    for i in range(args.clients):
        c = pipeline.attach(caps, make_wakeup(i))
        clients.append(c)
        sh = ShadowCanvas(w, h)
        sh.apply(c.take())  # the first full screen is not part of the figures
        shadows.append(sh)
    await guest.start()
    frames0 = pipeline.stats.frames
    shared0, cached0, streams0 = pipeline.stats.shared, pipeline.stats.cache_hits, pipeline.stats.stream_frames
    spent[0] = 0.0
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(args.seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    frames = pipeline.stats.frames - frames0
    await guest.stop()
    await asyncio.sleep(0)
    ok = None
    if args.verify:  # after the end of streams and lossless refreshes, every client must be exact
        pipeline.tick(time.monotonic() + 1000)
        for c, sh in zip(clients, shadows, strict=True):
            sh.apply(c.take())
        ok = all(np.array_equal(sh.bgr(), visible(pipeline.snapshot)) for sh in shadows)
    pipeline.close()
    f = max(frames, 1)
    return {"workload": workload, "type": type_name, "guest": guest.name, "fps": frames / wall,
            "cpu_ms": 1000 * cpu / f, "pipe_ms": 1000 * spent[0] / f,
            "bytes": stats["bytes"] / f / args.clients, "kbps": stats["bytes"] / wall / args.clients / 1024,
            "shared": pipeline.stats.shared - shared0, "streams": pipeline.stats.stream_frames - streams0,
            "cached": pipeline.stats.cache_hits - cached0, "ok": ok}


async def _main(args) -> int:
    print(f"display pipeline, {args.size}, {args.seconds:g} s per run, {args.clients} client(s)")
    print(f"{'workload':<16} {'type':<7} {'guest':<9} {'frames/s':>8} {'cpu ms/f':>9} {'pipe ms/f':>9} "
          f"{'bytes/f/client':>14} {'KiB/s/client':>12} {'shared':>6} {'mjpeg':>5} {'cached':>6} {'verify':>6}")
    bad = 0
    for workload in args.workloads.split(","):
        for t in args.types.upper().split(","):
            r = await run_one(args, workload.strip(), t.strip())
            verdict = "-" if r["ok"] is None else ("ok" if r["ok"] else "FAIL")
            bad += r["ok"] is False
            print(f"{r['workload']:<16} {r['type']:<7} {r['guest']:<9} {r['fps']:8.1f} {r['cpu_ms']:9.2f} "
                  f"{r['pipe_ms']:9.2f} {r['bytes']:14.0f} {r['kbps']:12.1f} {r['shared']:6d} {r['streams']:5d} "
                  f"{r['cached']:6d} {verdict:>6}",
                  flush=True)
    if args.wire:
        bad += await _wire(args)
    return 1 if bad else 0


async def _wire(args) -> int:
    from spice.display import wirebench, xworkload

    w, h = (int(v) for v in args.size.lower().split("x"))
    print(f"\non the wire to spice-gtk 0.42 (SpiceClientGLib), {args.seconds:g} s after MARK + warm-up; "
          "server CPU = our process (guest included) / the Xorg process of Xspice")
    print(f"{'workload':<16} {'server':<16} {'display KiB/s':>13} {'server CPU ms/s':>15} {'frames/s':>8}")
    bad = 0
    types = [t.strip() for t in args.types.upper().split(",")]
    for workload in (x.strip() for x in args.workloads.split(",")):
        rows = [(f"aiospice {t}", wirebench.measure_ours(workload, w, h, args.seconds, t, args.lossy))
                for t in types]
        if args.xspice and wirebench.xspice_available() and workload in xworkload.WORKLOADS:
            rows.append(("Xspice", wirebench.measure_xspice(workload, w, h, args.seconds)))
        for name, coro in rows:
            r = await coro
            if r.get("errors"):
                print(f"{workload:<16} {name:<16} error: {r['errors']}")
                bad += 1
                continue
            sec = max(r["seconds"], 1e-9)
            fps = f"{r['frames'] / sec:8.1f}" if r.get("frames") else f"{'-':>8}"
            print(f"{workload:<16} {name:<16} {r['bytes'].get(wirebench.DISPLAY_CHANNEL, 0) / sec / 1024:13.1f} "
                  f"{1000 * r.get('cpu', 0) / sec:15.1f} {fps}", flush=True)
    return bad


def run_display(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))
