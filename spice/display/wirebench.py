"""Bytes on the wire to a real spice-gtk client, for our server and for Xspice (libspice-server).

Both servers are measured the same way: a SpiceClientGLib viewer (``probe_viewer.py`` under the
system Python) connects, waits for MARK plus a warm-up, then counts the bytes it reads on every
channel for N seconds while the server's CPU time is sampled (our process for aiospice, the Xorg
process for Xspice).  Xspice is driven by the X11 version of the same scenes (``xworkload.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
PROBE = Path(__file__).with_name("probe_viewer.py")
DISPLAY_CHANNEL = "2"

XORG_CONF = """Section "Device"
    Identifier "XSPICE"
    Driver "spiceqxl"
    Option "NumHeads" "1"
    Option "FrameBufferSize" "{fb_mb}"
    Option "SurfaceBufferSize" "128"
    Option "CommandBufferSize" "128"
    Option "EnableImageCache" "True"
    Option "EnableFallbackCache" "True"
    Option "EnableSurfaces" "True"
EndSection
Section "InputDevice"
    Identifier "XSPICE POINTER"
    Driver "xspice pointer"
EndSection
Section "InputDevice"
    Identifier "XSPICE KEYBOARD"
    Driver "xspice keyboard"
EndSection
Section "Monitor"
    Identifier "Monitor"
EndSection
Section "Screen"
    Identifier "Screen"
    Monitor "Monitor"
    Device "XSPICE"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Virtual {w} {h}
        Modes "{w}x{h}"
    EndSubSection
EndSection
Section "ServerLayout"
    Identifier "Layout"
    Screen "Screen"
    InputDevice "XSPICE KEYBOARD"
    InputDevice "XSPICE POINTER"
EndSection
Section "ServerFlags"
    Option "AutoAddDevices" "False"
EndSection
"""


def xspice_available() -> bool:
    return shutil.which("Xorg") is not None and os.path.exists("/usr/lib/xorg/modules/drivers/spiceqxl_drv.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads, ended ones too), to the nanosecond:
    the kernel's CPU-time clock of that process.  ``/proc/PID/stat`` counts 10 ms ticks, and an idle
    server's 10 s window is only a tick or two there (its fallback when the clock cannot be read)."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
    except OSError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def probe(uri: str, seconds: float, sample: Callable[[], tuple[float, int]], timeout: float = 60,
                extra: list[str] = ()) -> dict:
    """Run the viewer; ``sample()`` -> (cpu seconds, server frames) is taken at START and END.

    ``frames`` in the answer is what the client saw delivered; ``server_frames`` what ``sample`` counted.
    """
    proc = await asyncio.create_subprocess_exec(SYSTEM_PYTHON, str(PROBE), uri, "--seconds", str(seconds), *extra,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    marks: dict[str, tuple[float, int]] = {}
    result: dict = {"errors": ["no report"]}
    try:
        async with asyncio.timeout(timeout):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                text = line.decode().strip()
                if text in ("START", "END"):
                    marks[text] = sample()
                elif text.startswith("{"):
                    result = json.loads(text)
    except TimeoutError:
        result = {"errors": ["probe timed out"]}
    finally:
        await _stop(proc)
    if "START" in marks and "END" in marks:
        result["cpu"] = marks["END"][0] - marks["START"][0]
        result["server_frames"] = marks["END"][1] - marks["START"][1]
    return result


async def measure_ours(workload: str, width: int, height: int, seconds: float, type_name: str,
                       lossy: bool) -> dict:
    from spice.display.bench import make_guest
    from spice.display.caps import ImageType
    from spice.server.config import ServerConfig
    from spice.server.server import SpiceServer

    guest = make_guest("builtin", width, height, workload)
    srv = SpiceServer(guest, ServerConfig(port=0, disable_ticketing=True))
    pipeline = srv.display_pipeline
    if type_name != "AUTO":
        pipeline.force_type = ImageType[type_name]
    if lossy:
        pipeline.lossy = True
    await srv.start()
    try:
        return await probe(f"spice://127.0.0.1:{srv.ports['plain']}", seconds,
                           lambda: (time.process_time(), pipeline.stats.frames), timeout=seconds + 60)
    finally:
        await srv.close()
        with contextlib.suppress(Exception):
            await guest.stop()


async def measure_xspice(workload: str, width: int, height: int, seconds: float) -> dict:
    port = free_port()
    n = next(i for i in range(150, 250) if not os.path.exists(f"/tmp/.X11-unix/X{i}")
             and not os.path.exists(f"/tmp/.X{i}-lock"))
    tmp = Path(tempfile.mkdtemp(prefix="aiospice-xspice-"))
    conf = tmp / "xorg.conf"
    conf.write_text(XORG_CONF.format(w=width, h=height, fb_mb=max(16, width * height * 4 // (1 << 20) + 4)))
    env = {**os.environ, "XSPICE_PORT": str(port), "XSPICE_ADDR": "127.0.0.1", "XSPICE_DISABLE_TICKETING": "1"}
    xorg = work = None
    try:
        xorg = await asyncio.create_subprocess_exec(
            "Xorg", "-config", str(conf), "-noreset", "-nolisten", "tcp", "-logfile", str(tmp / "Xorg.log"),
            f":{n}", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(150):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            if xorg.returncode is not None:
                return {"errors": ["Xorg exited"]}
            await asyncio.sleep(0.1)
        else:
            return {"errors": ["Xspice did not listen"]}
        work = await asyncio.create_subprocess_exec(sys.executable, "-m", "spice.display.xworkload", workload,
                                                    env={**os.environ, "DISPLAY": f":{n}"},
                                                    stdout=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(0.5)
        return await probe(f"spice://127.0.0.1:{port}", seconds, lambda: (proc_cpu(xorg.pid), 0))
    finally:
        await _stop(work)
        await _stop(xorg)
        shutil.rmtree(tmp, ignore_errors=True)
