"""From guest frames to per-client drawing commands: coalesced damage, pass-through fills and copies,
one encode per (frame, rectangle, format) shared by every client.

Pull model: the pipeline keeps, per client, only a bounded state — a dirty-cell mask plus a short
list of pass-through :class:`DrawFill` / :class:`CopyBits` — and builds commands when the client
:meth:`DisplayClient.take`\\ s.  A client that takes rarely gets merged damage, never a growing queue.

Invariant per client: after applying the pending pass-through commands, every clean cell of the
client's picture equals the latest frame; dirty cells are sent from the pipeline's snapshot of that
frame at take time.  Fills and copies pass through only while the client keeps up (at most
``max_passthrough_frames`` frames between takes); otherwise they degrade to damage.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from spice.display import images
from spice.display.caps import ImageCaps, ImageType
from spice.display.commands import CopyBits, DrawCommand, DrawCopy, DrawFill, Resize
from spice.display.region import CellGrid
from spice.guests.base import CopyRect, Damage, Fill, Frame, Guest, GuestListener, Rect

MAX_BAND_PIXELS = 64 * 1024  # 256 KiB of raw BGRX per DrawCopy
MAX_BAND_WIDTH = 2048
FILL_CMD_BYTES = 41
COPY_BITS_BYTES = 29
DRAW_COPY_OVERHEAD = 57


@dataclass
class PipelineStats:
    frames: int = 0
    encodes: int = 0
    shared: int = 0  # encode-cache hits (a second client took the same rect at the same serial)
    fills: int = 0
    encoded_bytes: int = 0
    encode_seconds: float = 0.0
    by_type: dict[int, int] = field(default_factory=dict)


def command_size(cmd: DrawCommand) -> int:
    """Approximate message body size of a command on the wire."""
    if isinstance(cmd, DrawCopy):
        return DRAW_COPY_OVERHEAD + len(cmd.image)
    if isinstance(cmd, DrawFill):
        return FILL_CMD_BYTES
    if isinstance(cmd, CopyBits):
        return COPY_BITS_BYTES
    return 20


class DisplayClient:
    """One viewer's view of the pipeline (see the module docstring)."""

    def __init__(self, pipeline: DisplayPipeline, caps: ImageCaps, wakeup: Callable[[], None]) -> None:
        self._pipeline = pipeline
        self.caps = caps
        self._wakeup = wakeup
        self._full = True
        self._resized = False
        self._dirty = pipeline.grid.new_mask()
        self._cmds: list[DrawCommand] = []
        self._frames_pending = 0
        self.taken_serial = 0
        self.bytes_taken = 0

    # -- consumer side
    @property
    def pending(self) -> bool:
        return self._full or bool(self._cmds) or bool(self._dirty.any())

    def take(self, max_bytes: int | None = None) -> list[DrawCommand]:
        """Commands that bring this client from its previous take to the latest frame.

        With ``max_bytes`` the answer stops after about that many bytes (at least one command);
        the rest stays pending.
        """
        p = self._pipeline
        out: list[DrawCommand] = []
        if self._resized:
            out.append(Resize(p.grid.width, p.grid.height))
            self._resized = False
        if self._full:
            self._dirty[:] = True
            self._full = False
        out.extend(self._cmds)
        self._cmds.clear()
        self._frames_pending = 0
        total = sum(command_size(c) for c in out)
        bands = [b for r in p.grid.rects(self._dirty) for b in p.bands(r)]
        self._dirty[:] = False
        for i, band in enumerate(bands):
            if max_bytes is not None and total >= max_bytes and out:
                for rest in bands[i:]:
                    self._dirty[p.grid.outer(rest)] = True
                break
            cmd = p.encode(band, self.caps)
            out.append(cmd)
            total += command_size(cmd)
        self.taken_serial = p.serial
        self.bytes_taken += total
        return out

    def detach(self) -> None:
        self._pipeline._detach(self)

    # -- producer side (called by the pipeline)
    def _reset(self) -> None:
        self._full = self._resized = True
        self._cmds.clear()
        self._dirty = self._pipeline.grid.new_mask()
        self._frames_pending = 0

    def _degrade(self) -> None:
        grid = self._pipeline.grid
        for cmd in self._cmds:
            self._dirty[grid.outer(cmd.rect)] = True
        self._cmds.clear()

    def _absorb(self, events: list[tuple]) -> None:
        if self._full:
            return
        p = self._pipeline
        grid = p.grid
        self._frames_pending += 1
        passthrough = self._frames_pending <= p.max_passthrough_frames
        if not passthrough and self._cmds:
            self._degrade()
        dirty = self._dirty
        for ev in events:
            kind = ev[0]
            if kind == "mask":
                dirty |= ev[1]
            elif kind == "damage":
                dirty[grid.outer(ev[1])] = True
            elif kind == "fill":
                rect = ev[1]
                if passthrough:
                    dirty[grid.inner(rect)] = False
                    self._cmds.append(DrawFill(rect, ev[2] & 0xFFFFFF))
                else:
                    dirty[grid.outer(rect)] = True
            else:  # copy
                src, dest = ev[1], ev[2]
                if not passthrough:
                    dirty[grid.outer(dest)] = True
                    continue
                src_cells = dirty[grid.outer(src)]
                if src_cells.all():
                    dirty[grid.outer(dest)] = True
                    continue
                moved = None
                if src_cells.any():
                    moved = grid.new_mask()
                    grid.mark_translated(dirty, src, dest.left - src.left, dest.top - src.top, moved)
                dirty[grid.inner(dest)] = False
                if moved is not None:
                    dirty |= moved
                self._cmds.append(CopyBits(src.left, src.top, dest))
        if len(self._cmds) > p.max_passthrough_cmds:
            self._degrade()


class DisplayPipeline:
    """Subscribes to a guest's frames and serves any number of :class:`DisplayClient`."""

    def __init__(self, guest: Guest, *, cell: int = 8, max_band_pixels: int = MAX_BAND_PIXELS,
                 max_passthrough_frames: int = 4, max_passthrough_cmds: int = 64,
                 refine: bool = True) -> None:
        self.guest = guest
        self.cell = cell
        self.max_band_pixels = max_band_pixels
        self.max_passthrough_frames = max_passthrough_frames
        self.max_passthrough_cmds = max_passthrough_cmds
        self.refine = refine
        #: when set, every image is encoded with this type (tests, benchmarks), whatever the caps say
        self.force_type: ImageType | None = None
        self.stats = PipelineStats()
        self._clients: list[DisplayClient] = []
        self._encoded: dict[tuple, DrawCommand] = {}
        self._ids = itertools.count(1)
        self.serial = guest.frame_serial
        self._set_geometry()
        self._listener = GuestListener(on_frame=self._on_frame, on_resize=self._on_resize)
        guest.add_listener(self._listener)

    # -- public
    def attach(self, caps: ImageCaps, wakeup: Callable[[], None]) -> DisplayClient:
        """A new client; its first :meth:`DisplayClient.take` returns the whole screen."""
        client = DisplayClient(self, caps, wakeup)
        self._clients.append(client)
        return client

    def close(self) -> None:
        self.guest.remove_listener(self._listener)
        self._clients.clear()

    @property
    def clients(self) -> tuple[DisplayClient, ...]:
        return tuple(self._clients)

    @property
    def snapshot(self) -> np.ndarray:
        """The framebuffer as of the latest frame (what the clients are brought to)."""
        return self._shot

    # -- guest events
    def _set_geometry(self) -> None:
        fb = self.guest.framebuffer
        self._shot = np.array(fb, dtype=np.uint8, copy=True)
        h, w = fb.shape[:2]
        self.grid = CellGrid(w, h, self.cell)
        self._encoded.clear()

    def _on_resize(self, width: int, height: int) -> None:
        self._set_geometry()
        for c in self._clients:
            c._reset()
            c._wakeup()

    def _on_frame(self, frame: Frame) -> None:
        fb = self.guest.framebuffer
        if fb.shape != self._shot.shape:
            self.serial = frame.serial
            self._on_resize(fb.shape[1], fb.shape[0])
            return
        events, touched = self._events(frame, fb)
        for r in touched:
            self._shot[r.top:r.bottom, r.left:r.right] = fb[r.top:r.bottom, r.left:r.right]
        self.serial = frame.serial
        self.stats.frames += 1
        self._encoded.clear()
        if not events:
            return
        for c in list(self._clients):
            c._absorb(events)
            if c.pending:
                c._wakeup()

    def _events(self, frame: Frame, fb: np.ndarray) -> tuple[list[tuple], list[Rect]]:
        """Normalise a frame's ops (clipped) into absorb events plus the rectangles it touched."""
        grid = self.grid
        touched: list[Rect] = []
        events: list[tuple] = []
        damage_only = all(isinstance(op, Damage) for op in frame.ops)
        if damage_only and self.refine:
            mask = grid.new_mask()
            for op in frame.ops:
                r = grid.clip(op.rect)
                if r.is_empty():
                    continue
                ys, xs = grid.outer(r)
                self._refine_into(mask, fb, ys, xs)
                touched.append(r)
            if mask.any():
                events.append(("mask", mask))
            return events, touched
        for op in frame.ops:
            if isinstance(op, Damage):
                r = grid.clip(op.rect)
                if not r.is_empty():
                    events.append(("damage", r))
                    touched.append(r)
            elif isinstance(op, Fill):
                r = grid.clip(op.rect)
                if not r.is_empty():
                    events.append(("fill", r, op.color))
                    touched.append(r)
            elif isinstance(op, CopyRect):
                src, dest = self._clip_copy(op)
                if not src.is_empty():
                    events.append(("copy", src, dest))
                    touched.append(dest)
        return events, touched

    def _refine_into(self, mask: np.ndarray, fb: np.ndarray, ys: slice, xs: slice) -> None:
        """Mark only the cells in the given cell range whose pixels really changed since the last frame."""
        c = self.cell
        y0, y1 = ys.start * c, min(ys.stop * c, self.grid.height)
        x0, x1 = xs.start * c, min(xs.stop * c, self.grid.width)
        new = fb[y0:y1, x0:x1].view(np.uint32)[..., 0]
        old = self._shot[y0:y1, x0:x1].view(np.uint32)[..., 0]
        diff = new != old
        gh, gw = ys.stop - ys.start, xs.stop - xs.start
        padded = np.zeros((gh * c, gw * c), bool)
        padded[:diff.shape[0], :diff.shape[1]] = diff
        mask[ys, xs] |= padded.reshape(gh, c, gw, c).any(axis=(1, 3))

    def _clip_copy(self, op: CopyRect) -> tuple[Rect, Rect]:
        grid = self.grid
        src = grid.clip(op.src)
        dx, dy = op.dest_x - op.src.left, op.dest_y - op.src.top
        dest = grid.clip(src.translate(dx, dy))
        src = dest.translate(-dx, -dy)
        return src, dest

    def _detach(self, client: DisplayClient) -> None:
        if client in self._clients:
            self._clients.remove(client)

    # -- encoding
    def bands(self, r: Rect) -> list[Rect]:
        """Split ``r`` into pieces of at most ``max_band_pixels``, with cell-aligned row cuts."""
        out = []
        c = self.cell
        for x in range(r.left, r.right, MAX_BAND_WIDTH):
            x1 = min(r.right, x + MAX_BAND_WIDTH)
            rows = max(c, (self.max_band_pixels // (x1 - x)) // c * c)
            for y in range(r.top, r.bottom, rows):
                out.append(Rect(x, y, x1, min(r.bottom, y + rows)))
        return out

    def choose_type(self, caps: ImageCaps, pixels: np.ndarray) -> ImageType:
        return self.force_type if self.force_type is not None else caps.lossless_type

    def encode(self, rect: Rect, caps: ImageCaps) -> DrawCommand:
        """The command drawing ``rect`` of the current snapshot for a client with ``caps`` (shared)."""
        px = self._shot[rect.top:rect.bottom, rect.left:rect.right]
        solid_key = (rect, None)
        cmd = self._encoded.get(solid_key)
        if cmd is None:
            t0 = time.process_time()
            flat = px.view(np.uint32)
            first = flat[0, 0, 0]
            if (flat == first).all():
                cmd = DrawFill(rect, int(first) & 0xFFFFFF)
                self.stats.fills += 1
            else:
                cmd = DrawCopy(rect, b"")  # marker: not solid
            self.stats.encode_seconds += time.process_time() - t0
            self._encoded[solid_key] = cmd
        if isinstance(cmd, DrawFill):
            return cmd
        image_type = self.choose_type(caps, px)
        key = (rect, image_type)
        cmd = self._encoded.get(key)
        if cmd is not None:
            self.stats.shared += 1
            return cmd
        t0 = time.process_time()
        data = images.encode(image_type, px, next(self._ids))
        self.stats.encode_seconds += time.process_time() - t0
        self.stats.encodes += 1
        self.stats.encoded_bytes += len(data)
        self.stats.by_type[image_type] = self.stats.by_type.get(image_type, 0) + 1
        cmd = DrawCopy(rect, data)
        self._encoded[key] = cmd
        return cmd
