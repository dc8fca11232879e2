"""``aiospice bench compare``: aiospice against Xspice (libspice-server 0.15), side by side, one table.

For each workload both servers play the same content — aiospice as ``aiospice serve --workload NAME``
in its own process, Xspice (Xorg + spiceqxl) with the X11 version of the scene played by a
python-xlib client (:mod:`spice.display.xworkload`) — and the same SpiceClientGLib viewer
(:mod:`spice.display.probe_viewer`, system Python) connects, waits for MARK + a warm-up and measures
for ``--seconds``:

* bytes: everything the client read on all its channels (the socket bytes, what a counting proxy sees);
* CPU: user+system seconds of the server process(es), read from the kernel's per-process CPU clock
  (nanoseconds; ``/proc/PID/stat``'s 10 ms ticks are too coarse for an idle window): our whole process
  (guest drawing included) / Xorg + the X client that draws;
* fps: the rate of the scene's pictures delivered to the client, first to last (bursts of
  display-invalidate, parts that come within half a scene frame joined; the clock box is left out except
  in ``idle-clock``, whose scene it is: :class:`spice.display.framecount.FrameCounter`);
* latency (the ``echo`` row): key press on the inputs channel -> first changed pixels in the client's
  framebuffer, p50 / p99 (aiospice's built-in terminal vs an X window that draws each key press).

* ``--browser`` adds ``echo-browser``: the same key latency in headless Chromium, our web client on
  aiospice against spice-html5 on Xspice (:mod:`spice.display.browserbench`), both servers up at once
  and the keys going to each client in turns (the same machine load for both).

* ``--rounds N`` measures every row N times, the two servers taking turns (aiospice, Xspice, aiospice,
  ...), and pools the windows: a slow drift of the machine's load (the other tenants of a VM) then falls
  on both servers alike.  The ``echo`` row always runs at least LATENCY_WINDOWS rounds.

* The latency rows press about LATENCY_KEYS keys per client (their windows are longer than
  ``--seconds``), so a p99 rests on the ten slowest presses rather than on the second or third.

    aiospice bench compare [--seconds 10] [--size 1024x768] [--workloads a,b,...] [--streaming on|off]
                           [--ours-streaming mjpeg|lossy|off] [--ours-video-codecs LIST] [--browser]
                           [--rounds N] [--latency-keys N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from spice.display import wirebench, xworkload

ALL_WORKLOADS = ("idle-clock", "typing", "window-drag", "scroll", "video-320x240", "video-1080p",
                 "many-small-fills", "photo-slideshow", "echo")
ROOT = Path(__file__).resolve().parents[2]
# the key-latency rows (echo, echo-browser) run at least this many windows (the spice-gtk row in turns)
LATENCY_WINDOWS = 3
LATENCY_KEYS = 1000  # key presses per client in a latency row: p99 is then the 10th slowest
KEY_PERIOD = 0.16  # seconds per key and client in both rows (a press every 0.15 s, and its handling)


def latency_seconds(seconds: float, windows: int, keys: int = LATENCY_KEYS) -> float:
    """Length of each of ``windows`` latency windows: ``seconds``, or longer to reach ``keys`` presses."""
    return max(seconds, keys * KEY_PERIOD / windows)


def register(sub) -> None:
    c = sub.add_parser("compare", help="aiospice vs Xspice (libspice-server), same spice-gtk client, one table")
    c.add_argument("--seconds", type=float, default=10.0, help="measured window per workload and server")
    c.add_argument("--size", default="1024x768", help="screen WxH for both servers")
    c.add_argument("--workloads", default=",".join(ALL_WORKLOADS), help="comma-separated workload names")
    c.add_argument("--streaming", choices=("on", "off"), default="on",
                   help="video streaming on both servers (on: aiospice --streaming mjpeg / Xspice 'filter')")
    c.add_argument("--ours-streaming", choices=("mjpeg", "lossy", "off"), default=None,
                   help="override aiospice's --streaming (e.g. lossy: photographic stills as JPEG too)")
    c.add_argument("--warmup", type=float, default=1.5, help="seconds after MARK before measuring")
    c.add_argument("--browser", action="store_true",
                   help="add echo-browser: key latency in Chromium, our web client vs spice-html5 on Xspice")
    c.add_argument("--ours-video-codecs", default=None, metavar="LIST",
                   help="aiospice's --video-codecs (e.g. h264: its streams to spice-gtk in H.264)")
    c.add_argument("--latency-keys", type=int, default=LATENCY_KEYS, metavar="N",
                   help="key presses per client the latency rows aim for (0: windows of --seconds)")
    c.add_argument("--rounds", type=int, default=1,
                   help="windows per row and server, the servers taking turns; the figures pool them")
    c.set_defaults(func=run_compare)


async def _listening(port: int, proc: asyncio.subprocess.Process, timeout: float = 20) -> bool:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.returncode is not None:
            return False
        with contextlib.suppress(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return True
        await asyncio.sleep(0.1)
    return False


# width, height at the top right: both guests' clock (the built-in top bar's, the X scene's window)
CLOCK_BOX = (240, 30)


def _probe_args(workload: str, warmup: float, width: int) -> list[str]:
    args = ["--warmup", str(warmup)]
    if workload in xworkload.RATES and workload != "echo":  # (echo: the keys set its rate)
        args += ["--scene-fps", str(xworkload.RATES[workload])]
    if workload != "idle-clock":
        w, h = CLOCK_BOX
        args += ["--clock-area", f"{width - w},0,{w},{h}"]
    if workload == "echo":
        args.append("--keys")
    return args


async def _browser(fn, port: int, seconds: float, sample) -> dict:
    """Chromium key latency (``browserbench``), with the server CPU sampled around it."""
    cpu0 = sample()[0]
    t0 = time.monotonic()
    try:
        r = await asyncio.wait_for(fn(port, seconds), seconds + 90)
    except Exception as err:  # playwright / browser failures are reported in the table
        return {"errors": [f"browser: {type(err).__name__}: {err}"[:200]]}
    r.update(cpu=sample()[0] - cpu0, seconds=time.monotonic() - t0, bytes={}, frames=0)
    return r


async def browser_in_turns(width: int, height: int, seconds: float, streaming: str = "on",
                           ours_streaming: str | None = None, ours_args: Sequence[str] = ()) -> tuple[dict, dict]:
    """The ``echo-browser`` row with both servers up at once: keys go to our web client on aiospice and
    to spice-html5 on Xspice in turns (``browserbench.in_turns``), so both see the same machine load;
    each server's CPU is sampled over the whole (shared) window."""
    from spice.display import browserbench

    async def on_xspice(xport: int, xsample) -> dict:
        async def on_ours(oport: int, osample) -> dict:
            cpu0, t0 = (osample()[0], xsample()[0]), time.monotonic()
            try:
                ours, html5 = await asyncio.wait_for(browserbench.in_turns(oport, xport, seconds), 2 * seconds + 90)
            except Exception as err:  # playwright / browser failures are reported in the table
                ours = html5 = {"errors": [f"browser: {type(err).__name__}: {err}"[:200]]}
            took = time.monotonic() - t0
            for r, cpu in ((ours, osample()[0] - cpu0[0]), (html5, xsample()[0] - cpu0[1])):
                r.update(cpu=cpu, seconds=took, bytes={}, frames=0)
            result["html5"] = html5
            return ours

        return await measure_ours("echo", width, height, seconds, ours_streaming or streaming, browser=on_ours,
                                  extra=ours_args)

    result: dict = {}
    x = await measure_xspice("echo", width, height, seconds, streaming, browser=on_xspice)
    return x, result.get("html5", x)  # (a server that did not start: its error for both)


async def measure_ours(workload: str, width: int, height: int, seconds: float, streaming: str = "on",
                       warmup: float = 1.5, browser: bool = False, extra: Sequence[str] = ()) -> dict:
    """``aiospice serve`` in its own process (``extra``: more of its options), measured by the probe viewer."""
    port = wirebench.free_port()
    cmd = [sys.executable, "-m", "spice.cli", "serve", "--port", str(port), "--disable-ticketing",
           "--size", f"{width}x{height}", "--log-level", "warning",
           "--streaming", {"on": "mjpeg", "off": "off"}.get(streaming, streaming)]
    if workload != "echo":
        cmd += ["--workload", workload]
    cmd += list(extra)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        if not await _listening(port, proc):
            err = (await proc.stderr.read()).decode(errors="replace")[-300:] if proc.returncode is not None else ""
            return {"errors": [f"aiospice did not listen {err}".strip()]}
        sample = lambda: (wirebench.proc_cpu(proc.pid), 0)  # noqa: E731
        if callable(browser):  # (the browser row in turns: this server stays up while it runs)
            return await browser(port, sample)
        if browser:
            from spice.display import browserbench

            return await _browser(browserbench.ours, port, seconds, sample)
        return await wirebench.probe(f"spice://127.0.0.1:{port}", seconds, sample,
                                     extra=_probe_args(workload, warmup, width), timeout=seconds + 60)
    finally:
        await wirebench._stop(proc)


async def measure_xspice(workload: str, width: int, height: int, seconds: float, streaming: str = "on",
                         warmup: float = 1.5, browser: bool = False) -> dict:
    """Xorg + spiceqxl with the X11 scene; CPU = Xorg + the X client."""
    port = wirebench.free_port()
    n = next(i for i in range(150, 250) if not os.path.exists(f"/tmp/.X11-unix/X{i}")
             and not os.path.exists(f"/tmp/.X{i}-lock"))
    tmp = Path(tempfile.mkdtemp(prefix="aiospice-xspice-"))
    conf = tmp / "xorg.conf"
    text = wirebench.XORG_CONF.format(w=width, h=height, fb_mb=max(16, width * height * 4 // (1 << 20) + 4))
    text = text.replace('    Option "NumHeads" "1"\n', '    Option "NumHeads" "1"\n    Option "StreamingVideo" "%s"\n'
                        % ("filter" if streaming == "on" else "off"))
    conf.write_text(text)
    env = {**os.environ, "XSPICE_PORT": str(port), "XSPICE_ADDR": "127.0.0.1", "XSPICE_DISABLE_TICKETING": "1"}
    xorg = work = None
    try:
        xorg = await asyncio.create_subprocess_exec(
            "Xorg", "-config", str(conf), "-noreset", "-nolisten", "tcp", "-logfile", str(tmp / "Xorg.log"),
            f":{n}", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        if not await _listening(port, xorg):
            return {"errors": ["Xspice did not listen"]}
        xenv = {**os.environ, "DISPLAY": f":{n}", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        work = await asyncio.create_subprocess_exec(sys.executable, "-m", "spice.display.xworkload", workload,
                                                    env=xenv, stdout=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(1.0)
        if work.returncode is not None:
            return {"errors": [f"X client {workload} exited {work.returncode}"]}

        def sample() -> tuple[float, int]:
            cpu = wirebench.proc_cpu(xorg.pid)
            with contextlib.suppress(OSError):
                cpu += wirebench.proc_cpu(work.pid)
            return cpu, 0

        if callable(browser):
            return await browser(port, sample)
        if browser:
            from spice.display import browserbench

            return await _browser(browserbench.html5, port, seconds, sample)
        return await wirebench.probe(f"spice://127.0.0.1:{port}", seconds, sample,
                                     extra=_probe_args(workload, warmup, width), timeout=seconds + 60)
    finally:
        await wirebench._stop(work)
        await wirebench._stop(xorg)
        shutil.rmtree(tmp, ignore_errors=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def pool(results: list[dict]) -> dict:
    """One result from several windows of the same server: bytes, CPU, seconds, frames and misses added,
    latencies joined; any window's errors make it an error."""
    errors = [e for r in results for e in r.get("errors") or []]
    if errors:
        return {"errors": errors}
    out: dict = {"bytes": {}, "seconds": 0.0, "cpu": 0.0, "frames": 0, "bursts": 0, "intervals": 0,
                 "span": 0.0, "latency_ms": [], "key_misses": 0}
    for r in results:
        for ch, n in (r.get("bytes") or {}).items():
            out["bytes"][ch] = out["bytes"].get(ch, 0) + n
        out["seconds"] += r.get("seconds") or 0.0
        out["cpu"] += r.get("cpu", 0.0)
        out["frames"] += r.get("frames") or 0
        out["bursts"] += r.get("bursts") or 0
        out["intervals"] += max(0, (r.get("frames") or 0) - 1)
        out["span"] += r.get("span") or 0.0
        out["latency_ms"] += r.get("latency_ms") or []
        out["key_misses"] += r.get("key_misses", 0)
    return out


def summarise(r: dict, seconds: float) -> dict:
    """Per-10-s bytes and CPU, fps and latency percentiles from a :func:`pool`ed result (or a browser row's)."""
    sec = max(r.get("seconds") or seconds, 1e-9)
    lat = r.get("latency_ms") or []
    if r.get("span"):  # (pooled) first picture to last: the window's phase does not add or drop one
        fps = r["intervals"] / r["span"]
    else:
        fps = (r.get("frames") or 0) / sec
    return {"kb10": sum(r.get("bytes", {}).values()) * 10 / sec / 1000,
            "display_kb10": r.get("bytes", {}).get(wirebench.DISPLAY_CHANNEL, 0) * 10 / sec / 1000,
            "cpu10": r.get("cpu", 0.0) * 10 / sec, "fps": fps,
            "bursts_per_s": (r.get("bursts") or 0) / sec,
            "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99), "n_lat": len(lat),
            "misses": r.get("key_misses", 0)}


def _row(r: dict, seconds: float) -> dict | str:
    """A table cell: the summary of a result, or its errors."""
    return "; ".join(map(str, r["errors"])) if r.get("errors") else summarise(r, seconds)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}"


def _fmt(v: float | None, spec: str) -> str:
    return format("-", ">" + spec.split(".")[0]) if v is None else format(v, spec)


def format_table(rows: list[tuple[str, str, dict | str]]) -> list[str]:
    head = (f"{'workload':<17} {'server':<9} {'KB/10s':>9} {'CPU s/10s':>9} {'fps':>6} {'lat p50':>8} "
            f"{'lat p99':>8}   {'bytes x':>7} {'CPU x':>6} {'fps x':>6} {'p50 x':>6} {'p99 x':>6}")
    out = [head, "-" * len(head)]
    by = {}
    for wl, server, s in rows:
        by.setdefault(wl, {})[server] = s
    for wl, servers in by.items():
        ref = servers.get("Xspice")
        for server, s in servers.items():
            if isinstance(s, str):
                out.append(f"{wl:<17} {server:<9} error: {s}")
                continue
            line = (f"{wl:<17} {server:<9} {s['kb10']:9.1f} {s['cpu10']:9.3f} {s['fps']:6.1f} "
                    f"{_fmt(s['p50'], '8.2f')} {_fmt(s['p99'], '8.2f')}")
            if server == "aiospice" and isinstance(ref, dict):
                line += (f"   {_ratio(s['kb10'], ref['kb10']):>7} {_ratio(s['cpu10'], ref['cpu10']):>6} "
                         f"{_ratio(s['fps'], ref['fps']):>6} {_ratio(s['p50'], ref['p50']):>6} "
                         f"{_ratio(s['p99'], ref['p99']):>6}")
            out.append(line)
    return out


async def compare(workloads: list[str], width: int, height: int, seconds: float, streaming: str = "on",
                  warmup: float = 1.5, echo=print, ours_streaming: str | None = None,
                  browser: bool = False, rounds: int = 1,
                  ours_args: Sequence[str] = (), latency_keys: int = LATENCY_KEYS) -> list[tuple[str, str, dict | str]]:
    """Measure every workload on both servers; return (workload, server, summary-or-error) rows.

    ``browser``: one more row, ``echo-browser``: key latency in Chromium, our web client on aiospice
    against spice-html5 on Xspice.  ``rounds``: windows per row and server, in turns, pooled.
    ``ours_args``: more ``aiospice serve`` options (e.g. ``--video-codecs h264``).  ``latency_keys``: key
    presses per client the latency rows aim for (0: just their windows of ``seconds``)."""
    rows: list[tuple[str, str, dict | str]] = []
    have_x = wirebench.xspice_available()
    runs = [(wl, False) for wl in workloads] + ([("echo", True)] if browser else [])
    for wl, in_browser in runs:
        label = "echo-browser" if in_browser else wl
        if in_browser and have_x:  # one session, the keys in turns: as many keys as the echo row
            window = latency_seconds(seconds * max(rounds, LATENCY_WINDOWS), 1, latency_keys)
            pair = await browser_in_turns(width, height, window, streaming, ours_streaming, ours_args)
            for server, r in zip(("aiospice", "Xspice"), pair, strict=True):
                rows.append((label, server, _row(r, window)))
                s = rows[-1][2]
                echo(f"  measured {label} on {server}: " + (s if isinstance(s, str) else
                     f"{s['cpu10']:.3f} CPU s/10s, {s['n_lat']} keys (in turns with the other)"), flush=True)
            continue
        n = max(rounds, LATENCY_WINDOWS) if wl == "echo" else max(1, rounds)
        win = latency_seconds(seconds, n, latency_keys) if wl == "echo" else seconds
        results: dict[str, list[dict]] = {"aiospice": [], "Xspice": []}
        for _ in range(n):
            for server, fn in (("aiospice", measure_ours), ("Xspice", measure_xspice)):
                if server == "Xspice" and not have_x:
                    continue
                mode = ours_streaming if server == "aiospice" and ours_streaming else streaming
                more = {"extra": ours_args} if server == "aiospice" else {}
                results[server].append(await fn(wl, width, height, win, mode, warmup, browser=in_browser, **more))
        for server in ("aiospice", "Xspice"):
            if server == "Xspice" and not have_x:
                rows.append((label, server, "xserver-xspice not installed"))
                continue
            rows.append((label, server, _row(pool(results[server]), win * n)))
            s = rows[-1][2]
            echo(f"  measured {label} on {server}" + (f" ({n} windows)" if n > 1 else "") + ": "
                 + (s if isinstance(s, str) else f"{s['kb10']:.1f} KB/10s, {s['cpu10']:.3f} CPU s/10s, "
                    f"{s['fps']:.1f} fps ({s['bursts_per_s']:.1f} bursts/s)"), flush=True)
    return rows


def run_compare(args: argparse.Namespace) -> int:
    w, h = (int(v) for v in args.size.lower().split("x"))
    names = [x.strip() for x in args.workloads.split(",") if x.strip()]
    bad = [x for x in names if x not in ALL_WORKLOADS]
    if bad:
        print(f"unknown workload(s): {', '.join(bad)} (choose from {', '.join(ALL_WORKLOADS)})", file=sys.stderr)
        return 2
    print(f"aiospice vs Xspice (libspice-server), {w}x{h}, {args.seconds:g} s windows, spice-gtk "
          f"(SpiceClientGLib) client, streaming {args.streaming}"
          + (f" (aiospice --streaming {args.ours_streaming})" if args.ours_streaming else "")
          + (f" (aiospice --video-codecs {args.ours_video_codecs})" if args.ours_video_codecs else "") + "; bytes = all channels, CPU = server process(es) "
          "incl. the drawing client, latency in ms (echo: key press -> changed pixels, about "
          f"{args.latency_keys} keys per client over {max(args.rounds, LATENCY_WINDOWS)} windows)"
          + (f"; {args.rounds} windows per row and server, in turns" if args.rounds > 1 else ""), flush=True)
    rows = asyncio.run(compare(names, w, h, args.seconds, args.streaming, args.warmup,
                               ours_streaming=args.ours_streaming, browser=args.browser, rounds=args.rounds,
                               ours_args=["--video-codecs", args.ours_video_codecs] if args.ours_video_codecs else [],
                               latency_keys=args.latency_keys))
    print()
    for line in format_table(rows):
        print(line)
    print("ratios are aiospice / Xspice (goal: bytes <= 0.7, CPU <= 1.0, fps >= 1.0, latency <= 1.0)")
    return 1 if any(isinstance(s, str) for _, _, s in rows) else 0
