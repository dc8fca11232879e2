"""Helpers to drive real spice-gtk peers from tests: spicy-screenshot, a SpiceClientGLib script, Xvfb."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
GTK_CLIENT = REPO / "tests" / "server" / "gtk_client.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def have_spice_glib() -> bool:
    import subprocess

    if not os.path.exists(SYSTEM_PYTHON):
        return False
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('SpiceClientGLib', '2.0'); "
                        "from gi.repository import SpiceClientGLib"], capture_output=True, timeout=60)
    return r.returncode == 0


async def run(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int, str]:
    """Run a command; kill it (by PID) after ``timeout``; return (rc, combined output)."""
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, **(env or {})})
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -9, out.decode(errors="replace")
    return proc.returncode, out.decode(errors="replace")


def read_ppm(path: str | Path) -> np.ndarray:
    """An (h, w, 3) RGB array from a PPM file."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


async def spicy_screenshot(port: int, out: str | Path, password: str | None = None, timeout: float = 30,
                           host: str = "127.0.0.1") -> tuple[np.ndarray | None, str]:
    """Run spicy-screenshot; return (RGB image or None, its output)."""
    cmd = ["spicy-screenshot", "-h", host, "-p", str(port), "-o", str(out)]
    if password is not None:
        cmd += ["-w", password]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(out)
    rc, text = await run(cmd, timeout)
    if rc != 0 or not os.path.exists(out):
        return None, text
    return read_ppm(out), text


async def gtk_client(uri: str, password: str, workdir: Path, *extra: str, timeout: float = 60) -> dict:
    """Run tests/server/gtk_client.py under the system Python; return its JSON report (+ 'output')."""
    report = workdir / "gtk-report.json"
    rc, text = await run([SYSTEM_PYTHON, str(GTK_CLIENT), uri, password, str(report), *extra], timeout)
    data = json.loads(report.read_text()) if report.exists() else {"errors": ["no report"]}
    data["rc"], data["output"] = rc, text
    return data


async def wait_attached(pipeline) -> None:
    """Wait (up to 15 s) until the pipeline's first display client has taken its first full screen."""
    for _ in range(300):
        if pipeline.clients and not pipeline.clients[0].pending:
            break
        await asyncio.sleep(0.05)
    assert pipeline.clients, "spice-gtk never attached a display client"


async def watch_dump(srv, workdir: Path, settle: float, password: str = "pw") -> asyncio.Task:
    """Start spice-gtk on ``srv``'s plain port, dumping its framebuffer to ``workdir/fb.raw`` once the
    screen has been quiet for ``settle`` s; return its task after it has taken its first full screen."""
    client = asyncio.create_task(gtk_client(f"spice://127.0.0.1:{srv.ports['plain']}", password, workdir,
                                            "--settle", str(settle), "--dump", str(workdir / "fb.raw")))
    await wait_attached(srv.display_pipeline)
    return client


def read_dump(path: str | Path, width: int, height: int) -> np.ndarray:
    """A raw BGRX dump (stride = 4 * width) as an (h, w, 4) array."""
    return np.fromfile(path, np.uint8).reshape(height, width, 4)


@contextlib.asynccontextmanager
async def xvfb(width: int = 1280, height: int = 800):
    """Start Xvfb on a free display; yield the DISPLAY string; stop it (by PID) afterwards."""
    for n in range(140, 200):
        if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock"):
            break
    display = f":{n}"
    proc = await asyncio.create_subprocess_exec("Xvfb", display, "-screen", "0", f"{width}x{height}x24",
                                                "-nolisten", "tcp", stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(f"/tmp/.X11-unix/X{n}"):
                break
            await asyncio.sleep(0.05)
        yield display
    finally:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def x_screenshot(display: str, out: str | Path) -> np.ndarray | None:
    rc, _ = await run(["import", "-display", display, "-window", "root", str(out)], 30)
    return read_ppm(out) if rc == 0 and os.path.exists(out) else None
