"""The web client's display channel (web/spice/channels/display.js) fed a message sequence in Chromium,
checked against the display package's ShadowCanvas (a spice-gtk-like client model) applying the same
commands: fills, copies of every image type, the image cache (CACHE_ME / FROM_CACHE / INVAL_LIST),
overlapping COPY_BITS both ways, and a clipped DRAW_COPY."""

from __future__ import annotations

import base64
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from browser import browser_marks, chromium, new_page  # noqa: E402

from spice.display import images  # noqa: E402
from spice.display.caps import ImageType  # noqa: E402
from spice.display.commands import CopyBits, DrawCopy, DrawFill, InvalList  # noqa: E402
from spice.display.shadow import ShadowCanvas  # noqa: E402
from spice.guests.base import Rect  # noqa: E402
from spice.proto import display as pd  # noqa: E402

pytestmark = browser_marks()

W, H = 320, 200

RUN_JS = """async (msgs) => {
  const { DisplayChannel } = await import('/spice/channels/display.js');
  const client = { primaryCreated() {}, context() { return null; }, presented() {}, marked() {}, countBytes() {} };
  const d = new DisplayChannel(client, 0);
  const errors = [];
  for (const [type, b64] of msgs) {
    const bin = atob(b64);
    const u8 = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
    try { const r = d._dispatch(type, u8); if (r && r.then) await r; } catch (e) { errors.push(`${type}: ${e}`); }
  }
  const px = new Uint8Array(d.primary.pixels.buffer);
  let s = '';
  for (let i = 0; i < px.length; i += 0x8000) s += String.fromCharCode.apply(null, px.subarray(i, i + 0x8000));
  return [errors, btoa(s), d.cache.size];
}"""


def clipped_copy(left, top, right, bottom, image: bytes, clips: list[tuple[int, int, int, int]]) -> bytes:
    """DRAW_COPY with clip type RECTS (rects are left, top, right, bottom); the image after the clip."""
    clip = struct.pack("<BI", 1, len(clips)) + b"".join(
        struct.pack("<iiii", t, lf, b, r) for lf, t, r, b in clips
    )
    base = struct.pack("<Iiiii", 0, top, left, bottom, right) + clip
    offset = len(base) + 4 + 16 + 2 + 1 + 13
    rest = struct.pack("<IiiiiHBBiiI", offset, 0, 0, bottom - top, right - left, 0x8, 0, 0, 0, 0, 0)
    return base + rest + image


async def test_display_channel_matches_shadow_canvas(frontdoor):
    rng = np.random.default_rng(3)
    shadow = ShadowCanvas(W, H)
    msgs: list[tuple[int, bytes]] = [(pd.DisplayMsg.SURFACE_CREATE, pd.build_surface_create(W, H))]

    def cmd(shadow_cmd, msg_type, body):
        shadow.apply([shadow_cmd])
        msgs.append((msg_type, body))

    cmd(
        DrawFill(Rect(0, 0, W, H), 0x336699),
        pd.DisplayMsg.DRAW_FILL,
        pd.build_draw_fill(0, 0, W, H, 0x336699),
    )
    for i, t in enumerate((ImageType.BITMAP, ImageType.LZ_RGB, ImageType.LZ4)):
        px = rng.integers(0, 256, (40, 60, 4), np.uint8)
        px[10:30] = px[5]  # some repetition for the compressors
        x, y = 10 + 90 * i, 10
        img = images.encode(t, px, image_id=100 + i, flags=images.CACHE_ME)
        cmd(
            DrawCopy(Rect(x, y, x + 60, y + 40), img),
            pd.DisplayMsg.DRAW_COPY,
            pd.build_draw_copy(x, y, x + 60, y + 40, img),
        )
    # Draw the cached images again elsewhere (FROM_CACHE), then drop one from the cache.
    for i in range(3):
        img = images.from_cache(100 + i, 60, 40, lossless=bool(i % 2))
        x, y = 10 + 90 * i, 70
        cmd(
            DrawCopy(Rect(x, y, x + 60, y + 40), img),
            pd.DisplayMsg.DRAW_COPY,
            pd.build_draw_copy(x, y, x + 60, y + 40, img),
        )
    inval = struct.pack("<H", 1) + struct.pack("<BQ", 1, 101)
    cmd(InvalList((101,)), pd.DisplayMsg.INVAL_LIST, inval)
    # Scroll a band up and another down by overlapping COPY_BITS.
    cmd(CopyBits(0, 20, Rect(0, 5, W, 105)), pd.DisplayMsg.COPY_BITS, pd.build_copy_bits(0, 20, 0, 5, W, 105))
    cmd(
        CopyBits(5, 0, Rect(12, 8, 300, 120)),
        pd.DisplayMsg.COPY_BITS,
        pd.build_copy_bits(5, 0, 12, 8, 300, 120),
    )
    cmd(
        DrawFill(Rect(250, 150, 300, 190), 0xFF8000),
        pd.DisplayMsg.DRAW_FILL,
        pd.build_draw_fill(250, 150, 300, 190, 0xFF8000),
    )

    # Clipped DRAW_COPY: only the two clip rects change (ShadowCanvas has no clips: numpy model).
    px = rng.integers(0, 256, (50, 100, 4), np.uint8)
    img = images.encode_lz4(px)
    clips = [(20, 140, 60, 160), (90, 170, 200, 200)]  # second one reaches past the box: cut
    msgs.append((pd.DisplayMsg.DRAW_COPY, clipped_copy(10, 140, 110, 190, img, clips)))
    for left, top, right, bottom in clips:
        right, bottom = min(right, 110), min(bottom, 190)
        shadow.pixels[top:bottom, left:right] = px[top - 140 : bottom - 140, left - 10 : right - 10]

    async with chromium() as browser:
        page = await new_page(browser)
        base = f"http://127.0.0.1:{frontdoor.port}"
        await page.route(
            f"{base}/blank.html", lambda r: r.fulfill(body="<!doctype html>", content_type="text/html")
        )
        await page.goto(f"{base}/blank.html")
        errors, b64, cache_size = await page.evaluate(
            RUN_JS, [[int(t), base64.b64encode(b).decode()] for t, b in msgs]
        )
    assert not errors, errors
    assert cache_size == 2  # three cached, one invalidated
    got = np.frombuffer(base64.b64decode(b64), np.uint8).reshape(H, W, 4)
    want_rgb = shadow.pixels[..., 2::-1]
    diff = np.argwhere(np.any(got[..., :3] != want_rgb, axis=-1))
    assert len(diff) == 0, f"{len(diff)} pixels differ, first at {diff[:5].tolist()}"
