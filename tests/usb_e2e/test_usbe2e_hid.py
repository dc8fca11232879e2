"""A USB keyboard and mouse shared over SPICE (D's share client, virtual HID devices) drive the
built-in guest: typed keys become terminal input (HID usage -> set-1 scancode -> guest.key_event),
mouse reports move the pointer and click the panel button."""

from __future__ import annotations

import asyncio

import pytest
from usbe2e_helpers import PASSWORD, served_guest, usb_api, wait_until

from usbredir.devices.hid import HidKeyboard, HidMouse
from usbredir.share import StatusLine
from usbredir.spice_client import share_spice

pytestmark = pytest.mark.timeout(90)


async def test_usb_keyboard_and_mouse_drive_the_guest():
    async with served_guest() as server:
        guest = server.guest
        kbd, mouse = HidKeyboard(), HidMouse()
        stop = asyncio.Event()
        task = asyncio.create_task(share_spice(f"spice://127.0.0.1:{server.ports['plain']}", [kbd, mouse],
                                               PASSWORD, stop, StatusLine(quiet=True)))
        try:
            async def ready():
                rows = await usb_api(server)
                drivers = sorted(r["driver"] for r in rows if r["state"] == "configured")
                return drivers == ["hid-keyboard", "hid-mouse"]
            await wait_until(ready, 30)
            kbd.type_text("echo Typed-On-USB 42!\n")
            await wait_until(lambda: "Typed-On-USB 42!" in guest.terminal.lines, 20)
            assert "$ echo Typed-On-USB 42!" in guest.terminal.lines
            # the pointer goes where the mouse says, and a click lands on the panel button
            x0, y0 = guest.cursor.x, guest.cursor.y
            mouse.move(-40, 25)
            await wait_until(lambda: (guest.cursor.x, guest.cursor.y) == (x0 - 40, y0 + 25), 10)
            cx, cy = guest.button.center
            mouse.move(cx - guest.cursor.x, cy - guest.cursor.y)
            await wait_until(lambda: (guest.cursor.x, guest.cursor.y) == (cx, cy), 10)
            clicks = guest.button.clicks
            mouse.click(1)
            await wait_until(lambda: guest.button.clicks == clicks + 1, 10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
        await wait_until(lambda: not server.usb.plugged, 10)
        assert not guest.keyboard.held  # nothing stuck down after the unplug
