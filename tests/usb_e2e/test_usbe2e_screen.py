"""What a person sees: the shared stick's row in the guest's device panel, pixel-exact in a real
client's screenshot (spicy-screenshot) against the panel's own glyph rendering of that row."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from usbe2e_helpers import PASSWORD, Share, make_fat_image, served_guest, usb_api, wait_until

from spice.guests.builtin.panels import DevicePanel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from spicegtk import spicy_screenshot  # noqa: E402

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120),
              pytest.mark.skipif(not shutil.which("spicy-screenshot") or not shutil.which("mkfs.vfat"),
                                 reason="spicy-screenshot / dosfstools missing")]


def panel_rows_region(panel: DevicePanel) -> tuple[slice, slice]:
    top = panel.list_top
    return slice(top, top + DevicePanel.MAX_ROWS * panel.font.cell_h), slice(12, panel.w - 12)


async def test_stick_row_on_screen(tmp_path):
    img = tmp_path / "s.img"
    make_fat_image(img, 8, {"A.TXT": b"a\n"})
    async with served_guest() as server:
        guest = server.guest
        t0 = time.monotonic()
        async with Share(f"spice://127.0.0.1:{server.ports['plain']}", "--storage", str(img)):
            async def shown():
                rows = await usb_api(server)
                return rows and rows[0]["mounted"] and any(isinstance(r, dict) for r in guest.panel.rows)
            await wait_until(shown, 30, 0.01)
            print(f"\nshare started -> device row in the panel: {time.monotonic() - t0:.2f} s")
            # let the byte counter settle (the panel refreshes every 0.5 s)
            last = None
            while last != guest.panel.rows:
                last = list(guest.panel.rows)
                await guest.settle()
                await asyncio.sleep(0.7)
            ref = DevicePanel(guest.panel.x, guest.panel.y)
            ref.set_rows(guest.panel.rows)
            ys, xs = panel_rows_region(ref)
            want = ref.buf[ys, xs, :3]
            empty = DevicePanel(0, 0)
            assert not np.array_equal(want, empty.buf[ys, xs, :3])  # not "No USB devices"
            px, py = guest.panel.x, guest.panel.y
            fb = np.asarray(guest.framebuffer)[py:py + ref.h, px:px + ref.w]
            assert np.array_equal(fb[ys, xs, :3], want)
            shot, out = await spicy_screenshot(server.ports["plain"], tmp_path / "shot.ppm", PASSWORD)
            assert shot is not None, out
            got = shot[py:py + ref.h, px:px + ref.w][ys, xs]
            assert np.array_equal(got, want[..., ::-1]), "panel rows differ in spice-gtk's picture"
