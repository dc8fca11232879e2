"""The server against real spice-gtk 0.42: spicy-screenshot, a SpiceClientGLib client, remote-viewer."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
import spicegtk  # noqa: E402

from spice.certs import generate  # noqa: E402
from spice.guests.base import GuestListener  # noqa: E402
from spice.guests.builtin import BuiltinGuest  # noqa: E402
from spice.proto.enums import ChannelType  # noqa: E402
from spice.server.config import ServerConfig  # noqa: E402
from spice.server.server import SpiceServer  # noqa: E402

pytestmark = [pytest.mark.peer, pytest.mark.timeout(180),
              pytest.mark.skipif(not spicegtk.have("spicy-screenshot"), reason="spice-client-gtk not installed")]

W, H = 640, 480


def frozen_guest() -> BuiltinGuest:
    return BuiltinGuest(width=W, height=H, clock=lambda: datetime(2026, 1, 2, 3, 4, 5), uptime=lambda: 42.0)


class Snapshots:
    """Every framebuffer the guest has shown (a screenshot must equal one of them exactly)."""

    def __init__(self, guest) -> None:
        self.guest = guest
        self.frames = [guest.framebuffer[..., 2::-1].copy()]
        guest.add_listener(GuestListener(on_frame=lambda f: self.frames.append(guest.framebuffer[..., 2::-1].copy())))

    def index_of(self, rgb: np.ndarray) -> int | None:
        for i in range(len(self.frames) - 1, -1, -1):
            if self.frames[i].shape == rgb.shape and np.array_equal(self.frames[i], rgb):
                return i
        return None


async def make_server(**cfg) -> SpiceServer:
    cfg.setdefault("password", "pw")
    cfg.setdefault("port", 0)
    srv = SpiceServer(frozen_guest(), ServerConfig(**cfg))
    await srv.start()
    return srv


async def test_spicy_screenshot_is_pixel_exact_and_typing_via_spice_glib(tmp_path):
    if not spicegtk.have_spice_glib():
        pytest.skip("gir1.2-spiceclientglib-2.0 / python3-gi missing")
    srv = await make_server()
    guest: BuiltinGuest = srv.guest
    snaps = Snapshots(guest)
    port = srv.ports["plain"]
    try:
        shot1, out = await spicy_screenshot_ok(port, tmp_path / "a.ppm")
        assert shot1.shape == (H, W, 3)
        assert snaps.index_of(shot1) is not None, "screenshot differs from every guest frame"

        panel, b = guest.panel, guest.button.rect_local
        cx, cy = panel.x + (b.left + b.right) // 2, panel.y + (b.top + b.bottom) // 2
        shape = guest.cursor.shape
        rep = await spicegtk.gtk_client(f"spice://127.0.0.1:{port}", "pw", tmp_path, "--type", "echo hello\n",
                                        "--click", f"{cx},{cy}", "--dump", str(tmp_path / "fb.raw"))
        assert not rep["errors"], rep
        assert {c["type"] for c in rep["channels"]} >= {ChannelType.MAIN, ChannelType.DISPLAY,
                                                         ChannelType.INPUTS, ChannelType.CURSOR}, rep
        assert rep["size"] == [W, H]
        # CURSOR_INIT carried the guest's ALPHA pointer; spice-gtk shows exactly those pixels
        h, w = shape.pixels.shape[:2]
        assert rep["cursor_shapes"][0] == [w, h, shape.hot_x, shape.hot_y, shape.pixels.tobytes().hex()]
        lines = guest.terminal.lines
        assert "$ echo hello" in lines and lines[lines.index("$ echo hello") + 1] == "hello", lines[-5:]
        assert guest.button.clicks == 1
        # what the client shows is exactly the guest's framebuffer at the end
        client_fb = spicegtk.read_dump(tmp_path / "fb.raw", W, H)
        assert np.array_equal(client_fb[..., 2::-1], guest.framebuffer[..., 2::-1])
        shot2, _ = await spicy_screenshot_ok(port, tmp_path / "b.ppm")
        assert np.array_equal(shot2, guest.framebuffer[..., 2::-1]) and not np.array_equal(shot1, shot2)
        assert srv.stats.channel("inputs").messages_in >= 10
    finally:
        await srv.close()


async def spicy_screenshot_ok(port: int, path: Path, password: str = "pw"):
    img, out = await spicegtk.spicy_screenshot(port, path, password)
    assert img is not None, out
    return img, out


async def test_server_mouse_mode_relative_motion(tmp_path):
    """spice-gtk asks for server mouse mode, sends relative motions; the guest pointer moves and
    the cursor channel reports the new position back (CURSOR_MOVE)."""
    if not spicegtk.have_spice_glib():
        pytest.skip("SpiceClientGLib missing")
    srv = await make_server()
    guest: BuiltinGuest = srv.guest
    x0, y0 = guest.cursor.x, guest.cursor.y
    try:
        rep = await spicegtk.gtk_client(f"spice://127.0.0.1:{srv.ports['plain']}", "pw", tmp_path,
                                        "--server-mouse", "10,5,9", "--settle", "1")
        assert not rep["errors"], rep
        assert rep["mouse_mode"] == 1
        assert (guest.cursor.x, guest.cursor.y) == (x0 + 90, y0 + 45)
        assert rep["cursor_moves"] and rep["cursor_moves"][-1] == [x0 + 90, y0 + 45], rep["cursor_moves"]
    finally:
        await srv.close()


async def test_passwords_right_wrong_expired(tmp_path):
    srv = await make_server(password="s3cret")
    port = srv.ports["plain"]
    try:
        img, _ = await spicegtk.spicy_screenshot(port, tmp_path / "ok.ppm", "s3cret")
        assert img is not None
        img, out = await spicegtk.spicy_screenshot(port, tmp_path / "bad.ppm", "wrong", timeout=15)
        assert img is None and "event: 23" in out, out  # SPICE_CHANNEL_ERROR_AUTH
        assert srv.stats.link_failures["PERMISSION_DENIED"] >= 1
        srv.set_password("s3cret", expires_in=0.2)
        await asyncio.sleep(0.3)
        img, out = await spicegtk.spicy_screenshot(port, tmp_path / "exp.ppm", "s3cret", timeout=15)
        assert img is None and "event: 23" in out, out
        assert srv.stats.link_failures["PERMISSION_DENIED"] >= 2
    finally:
        await srv.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    good = tmp_path_factory.mktemp("certs")
    other = tmp_path_factory.mktemp("other")
    generate(good, ["127.0.0.1", "localhost"])
    generate(other, ["127.0.0.1", "localhost"])
    return good, other


async def test_tls_with_generated_ca_and_wrong_ca(tmp_path, certs):
    if not spicegtk.have_spice_glib():
        pytest.skip("SpiceClientGLib missing")
    good, other = certs
    # no PINGs: nothing but our own messages may wake spice-gtk's TLS reads (several messages in one TLS
    # record left the display blank until the next packet: the first screen only came with a PING)
    srv = await make_server(port=None, tls_port=0, certs_dir=good, ping_interval=0)
    tls = srv.ports["tls"]
    try:
        rep = await spicegtk.gtk_client(f"spice://127.0.0.1?tls-port={tls}", "pw", tmp_path,
                                        "--ca-file", str(good / "ca-cert.pem"), "--settle", "0.3")
        assert not rep["errors"], rep
        assert rep["mark"] and len(rep["channels"]) >= 3
        for name in ("main", "display", "inputs", "cursor"):
            c = srv.stats.channel(name)
            assert c.connections_total == c.connections_tls == 1, (name, c)
        rep = await spicegtk.gtk_client(f"spice://127.0.0.1?tls-port={tls}", "pw", tmp_path,
                                        "--ca-file", str(other / "ca-cert.pem"), "--settle", "0.3", timeout=40)
        assert rep["errors"] and not rep["mark"], rep
        assert any("tls" in e or "connect" in e for e in rep["errors"]), rep
    finally:
        await srv.close()


async def test_need_secured_moves_channels_to_tls(tmp_path, certs):
    if not spicegtk.have_spice_glib():
        pytest.skip("SpiceClientGLib missing")
    good, _ = certs
    srv = await make_server(tls_port=0, certs_dir=good,
                            secure_channels=frozenset({ChannelType.DISPLAY, ChannelType.INPUTS}))
    try:
        uri = f"spice://127.0.0.1?port={srv.ports['plain']}&tls-port={srv.ports['tls']}"
        rep = await spicegtk.gtk_client(uri, "pw", tmp_path, "--ca-file", str(good / "ca-cert.pem"),
                                        "--settle", "0.3")
        assert not rep["errors"], rep
        assert {c["type"] for c in rep["channels"]} >= {1, 2, 3, 4}
        tls = {name: srv.stats.channel(name).connections_tls for name in ("main", "display", "inputs", "cursor")}
        assert tls == {"main": 0, "display": 1, "inputs": 1, "cursor": 0}
        assert srv.stats.link_failures["NEED_SECURED"] >= 2
    finally:
        await srv.close()


def find_image(screen: np.ndarray, image: np.ndarray) -> tuple[int, int] | None:
    """Top-left of an exact copy of ``image`` inside ``screen`` (both RGB), or None."""
    h, w = image.shape[:2]
    row = image[h // 2].tobytes()
    for y in range(h // 2, screen.shape[0] - (h - h // 2) + 1):
        line = screen[y].tobytes()
        pos = line.find(row)
        while pos >= 0:
            if pos % 3 == 0:
                x, top = pos // 3, y - h // 2
                if np.array_equal(screen[top:top + h, x:x + w], image):
                    return x, top
            pos = line.find(row, pos + 1)
    return None


async def test_remote_viewer_under_xvfb_shows_the_guest(tmp_path):
    if not spicegtk.have("remote-viewer", "Xvfb", "import"):
        pytest.skip("virt-viewer / xvfb / imagemagick missing")
    srv = await make_server()
    snaps = Snapshots(srv.guest)
    try:
        async with spicegtk.xvfb(1280, 800) as display:
            proc = await asyncio.create_subprocess_exec(
                "remote-viewer", f"spice://127.0.0.1:{srv.ports['plain']}?password=pw",
                env={**__import__("os").environ, "DISPLAY": display},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            try:
                found = None
                for _ in range(40):
                    await asyncio.sleep(0.5)
                    shot = await spicegtk.x_screenshot(display, tmp_path / "x.ppm")
                    if shot is None:
                        continue
                    found = find_image(shot, snaps.frames[-1])
                    if found:
                        break
                assert found is not None, "the guest screen never appeared in the remote-viewer window"
                assert srv.stats.channel("display").connections_open == 1
                # keyboard and mouse drive the guest through remote-viewer (xdotool as the user)
                guest = srv.guest
                env = {"DISPLAY": display}
                _rc, out = await spicegtk.run(["xdotool", "search", "--class", "remote-viewer"], 10, env=env)
                for win in out.split():
                    await spicegtk.run(["xdotool", "windowfocus", "--sync", win], 5, env=env)
                await spicegtk.run(["xdotool", "type", "--delay", "40", "echo rv"], 20, env=env)
                await spicegtk.run(["xdotool", "key", "Return"], 10, env=env)
                panel, b = guest.panel, guest.button.rect_local
                bx, by = found[0] + panel.x + (b.left + b.right) // 2, found[1] + panel.y + (b.top + b.bottom) // 2
                await spicegtk.run(["xdotool", "mousemove", "--sync", str(bx), str(by), "click", "1"], 10, env=env)
                for _ in range(40):
                    lines = guest.terminal.lines
                    if "$ echo rv" in lines and guest.button.clicks:
                        break
                    await asyncio.sleep(0.25)
                assert "$ echo rv" in lines and lines[lines.index("$ echo rv") + 1] == "rv", lines[-4:]
                assert guest.button.clicks == 1
            finally:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    finally:
        await srv.close()
