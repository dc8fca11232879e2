"""The built-in guest's USB commands and device panel over a real EHCI + virtual stick."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from usbredir.devices.hid import HidKeyboard
from usbredir.devices.storage import MassStorage
from usbredir.guest.shellcmds import install
from usbredir.guest.subsystem import UsbSubsystem

builtin = pytest.importorskip("spice.guests.builtin")
pytestmark = pytest.mark.skipif(not shutil.which("mkfs.vfat"), reason="dosfstools missing")


async def run(g, line: str) -> list[str]:
    before = len(g.terminal.lines)
    g.terminal.type_text(line + "\n")
    await g.shell.wait_idle()
    return g.terminal.lines[before - 1:]


async def test_lsusb_ls_cat_cp_eject_and_panel(tmp_path):
    img = str(tmp_path / "s.img")
    subprocess.run(["mkfs.vfat", "-C", img, "4096"], check=True, capture_output=True)
    (tmp_path / "hello.txt").write_text("hello through EHCI\nsecond line\n")
    subprocess.run(["mcopy", "-i", img, str(tmp_path / "hello.txt"), "::HELLO.TXT"], check=True)
    g = builtin.BuiltinGuest(800, 600)
    usb = UsbSubsystem(debounce=0.001)
    await usb.start()
    stick = MassStorage(img)
    uninstall = install(g, usb)
    try:
        port = usb.attach(stick)
        usb.attach(HidKeyboard())
        await usb.wait_mounted(port)
        await usb.wait_for(lambda s: len(s.rows()) == 2 and all(r["state"] == "configured" for r in s.rows()))
        text = "\n".join(await run(g, "lsusb"))
        assert f"Port {port}" in text and "1209:0001" in text and "usb-storage" in text and "[mounted]" in text
        assert "hid-keyboard" in text
        assert any("HELLO.TXT" in line for line in await run(g, "ls /"))
        out = await run(g, f"cat {port}:/HELLO.TXT")
        assert "hello through EHCI" in out and "second line" in out
        assert any("copied 31 bytes" in line for line in await run(g, "cp /HELLO.TXT /COPY.TXT"))
        assert any("safe to remove" in line for line in await run(g, f"eject {port}"))
        g.set_usb_devices(usb.rows())
        panel = [r["port"] for r in g.panel.rows]
        assert port in panel and len(panel) == 2
    finally:
        uninstall()
        await usb.close()
        await stick.close()
    assert subprocess.run(["mtype", "-i", img, "::COPY.TXT"], capture_output=True).stdout == \
        (tmp_path / "hello.txt").read_bytes()
    assert subprocess.run(["fsck.vfat", "-n", img], capture_output=True).returncode == 0
