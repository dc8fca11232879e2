"""GLZ's global dictionary: per client, the GLZ images it still holds, and a translation search into them.

spice-gtk (src/decode-glz.c) keeps every decoded GLZ image by id; after decoding image ``i`` it frees the
ids below ``i - win_head_dist(i)`` (of the newest image closing its run of ids), and a match with
``image_dist`` > 0 reads the image ``i - image_dist`` from its first pixel, waiting for it if it is not
there (a hang, not an error: :class:`GlzHistory` only names images it knows the client holds).
libspice-server's dictionary (server/glz-encoder-dict.c) keeps at most the client's
``glz_dictionary_window_size`` pixels (DISPLAY_INIT), the new image included, and sets ``win_head_dist``
to reach back to its oldest image; so does :class:`GlzHistory`.

The search finds pictures that moved: each held image puts a hash of 3 pixels at every point of an
8 x 16 grid into a dict; a new image looks up every position of a few 8 x 16 patches (each patch meets
the grid of an image it overlaps exactly once, whatever the move), the patches vote for ``(image, dy,
dx)`` translations, numpy checks the best few pixel by pixel (and the images sent just before and after
with the same move on the screen), and the equal pixels become matches into those images, a token per
row (:func:`spice.display.glz.encode_ops`).  Images with such matches are encoded for one client.
"""

from __future__ import annotations

import functools
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from spice.display import glz

#: our own bound on what is kept per client (copies of the pixels): 32 MiB, the window spice-gtk takes from
#: our RAM_HINT (ten 1024x768 pictures)
MAX_HISTORY_PIXELS = 8 << 20
GRID_Y, GRID_X = 8, 16  # held images are indexed at every 8th row, every 16th column
KEY_RUN = 3  # pixels hashed into an index key
#: a new image is looked up at patches of GRID_Y x GRID_X positions about this far apart, edges and middle
#: included (a moved picture's new strip is at an edge: another image may have it; an edge patch may fall
#: off the image it moved from): a 64 x 1024 band gets 3 x 6 patches, a 1024x768 picture 6 x 6
PATCH_EVERY_Y, PATCH_EVERY_X = 192, 256
MAX_CANDIDATES = 8  # translations checked per image
MIN_VOTES = 2  # patches agreeing on a translation before it is checked (one: a chance equal key)
MIN_EQUAL = 0.5  # a translation is used where at least this share of the pixels it overlaps are equal
MIN_SHARE = 0.1  # references are used when they cover at least this share of the image's pixels
_K1, _K2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


def _keys(flat: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Hash keys of the KEY_RUN-pixel runs starting at ``(ys, xs)``; 0 where the run is flat (a UI's
    plain areas are everywhere: no key there)."""
    a = flat[ys, xs].astype(np.uint64)
    b = flat[ys, xs + 1].astype(np.uint64)
    c = flat[ys, xs + 2].astype(np.uint64)
    with np.errstate(over="ignore"):
        k = ((a * _K1 + b) * _K2 + c) | np.uint64(1)
    return np.where((a == b) & (b == c), np.uint64(0), k)


def picture(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a held image keeps: its ``(h, w)`` 24-bit pixels (a copy) and its index entries (keys, flat
    positions) on the GRID_Y x GRID_X grid."""
    flat = np.ascontiguousarray(pixels).view(np.uint32)[..., 0] & np.uint32(0x00FFFFFF)
    h, w = flat.shape
    ys, xs = np.meshgrid(np.arange(0, h, GRID_Y), np.arange(0, w - KEY_RUN + 1, GRID_X), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    keys = _keys(flat, ys, xs)
    live = keys != 0
    return flat, keys[live], (ys * w + xs)[live]


@functools.lru_cache(maxsize=16)
def _probe_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and patch numbers of the probe positions of an ``(h, w)`` image (see :func:`probes`)."""
    # (sorted(set()): np.unique imports numpy.ma on first use, 30 ms in the middle of a frame)
    y0 = np.array(sorted(set(np.linspace(0, h - GRID_Y, max(3, h // PATCH_EVERY_Y + 2)).astype(np.int64).tolist())))
    x0 = np.array(sorted(set(np.linspace(0, w - GRID_X - KEY_RUN, max(3, w // PATCH_EVERY_X + 2)).astype(np.int64).tolist())))
    ys, xs = np.broadcast_arrays(y0[:, None, None, None] + np.arange(GRID_Y)[None, None, :, None],
                                 x0[None, :, None, None] + np.arange(GRID_X)[None, None, None, :])
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    return ys, xs, np.arange(len(ys)) // (GRID_Y * GRID_X)


def probes(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a new image is looked up: patches of GRID_Y x GRID_X consecutive positions (PATCH_EVERY_Y/X apart),
    so each patch meets the grid of an image it overlaps once, whatever the translation; (keys, positions,
    patch numbers)."""
    h, w = flat.shape
    if h < GRID_Y or w < GRID_X + KEY_RUN:
        return np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64)
    ys, xs, patch = _probe_grid(h, w)
    keys = _keys(flat, ys, xs)
    live = keys != 0
    return keys[live], (ys * w + xs)[live], patch[live]


@dataclass(eq=False)
class Held:
    gid: int
    top: int  # where the image was on the screen
    left: int
    flat: np.ndarray
    keys: list[int]
    values: list[int]  # its index entries: id << 32 | flat position


class GlzHistory:
    """One client's GLZ ids and the images its window holds (see the module docstring)."""

    def __init__(self, window_pixels: int = 0) -> None:
        self.limit = 0
        self.next_id = 0  # ids from 0 on each connection, one per image, in the order the client decodes
        self.held: deque[Held] = deque()
        self.pixels = 0
        # index key -> id << 32 | flat position (plain ints: a dict of tuples keeps the cyclic GC busy)
        self._index: dict[int, int] = {}
        self._by_gid: dict[int, Held] = {}
        self._keys = 0  # index entries of the held images (the index may hold more: forgotten ones)
        self.set_window(window_pixels)

    def set_window(self, window_pixels: int) -> None:
        """The client's ``glz_dictionary_window_size`` (0: keep nothing, ``win_head_dist`` 0)."""
        self.limit = max(0, min(window_pixels, MAX_HISTORY_PIXELS))
        self.make_room(0)

    def make_room(self, area: int) -> int:
        """Forget the oldest images until one of ``area`` pixels fits; the next image's ``win_head_dist``."""
        while self.held and self.pixels + area > self.limit:
            old = self.held.popleft()
            self.pixels -= old.flat.size
            self._keys -= len(old.keys)
            del self._by_gid[old.gid]
        if len(self._index) > 2 * self._keys + 4096:  # entries of forgotten images (skipped by search): rebuild
            self._index = {}
            for img in self.held:
                self._index.update(zip(img.keys, img.values, strict=True))
        return self.next_id - self.held[0].gid if self.held else 0

    def search(self, top: int, left: int, flat: np.ndarray) -> tuple[list[glz.Ref], np.ndarray] | None:
        """References for a new ``(h, w)`` image (its :func:`picture` pixels) at ``(top, left)`` on the screen:
        the refs and the per-pixel map :func:`spice.display.glz.encode_ops` takes, or None when they would
        cover too little.  A translation that checks out is tried on the images sent just before and after
        the one it was found in, with the same move on the screen (a picture sent in bands)."""
        if not self.held:
            return None
        keys, pos, patch = probes(flat)
        h, w = flat.shape
        index = self._index
        by_gid = self._by_gid
        hits = np.array([index.get(k, -1) for k in keys.tolist()], np.int64)
        found = hits >= 0
        if np.count_nonzero(found) < MIN_VOTES:
            return None
        hits, pos, patch = hits[found], pos[found], patch[found]
        gids, q = hits >> 32, hits & 0xFFFFFFFF
        if gids.min() < self.held[0].gid:  # entries of images forgotten since the last rebuild
            live = gids >= self.held[0].gid
            gids, q, pos, patch = gids[live], q[live], pos[live], patch[live]
        iw = np.array([by_gid[g].flat.shape[1] for g in gids.tolist()], np.int64)
        moves = zip(gids.tolist(), (q // iw - pos // w).tolist(), (q % iw - pos % w).tolist(), patch.tolist(),
                    strict=True)
        # one vote per patch: a repetitive patch (a smooth gradient, a pattern) hits one place many times
        votes = Counter((g, dy, dx) for g, dy, dx, _ in set(moves))
        ref_map = np.full((h, w), -1, np.int16)
        refs: list[glz.Ref] = []
        tried: set[tuple[int, int, int]] = set()
        mapped = [0]  # pixels mapped so far

        def use(img: Held, dy: int, dx: int) -> bool:
            """Map the pixels that equal ``img``'s moved by ``(dy, dx)``; False if they mostly do not."""
            if (img.gid, dy, dx) in tried:
                return True
            tried.add((img.gid, dy, dx))
            ih, iw = img.flat.shape
            y0, y1 = max(0, -dy), min(h, ih - dy)
            x0, x1 = max(0, -dx), min(w, iw - dx)
            if y0 >= y1 or x0 >= x1:
                return False
            if refs and (ref_map[y0:y1, x0:x1] >= 0).all():
                return True  # mapped already (by its neighbour): walk on
            step_y, step_x = max(1, (y1 - y0) // 8), max(1, (x1 - x0) // 16)  # a glance first: 8 x 16 pixels
            glance = flat[y0:y1:step_y, x0:x1:step_x] == img.flat[y0 + dy:y1 + dy:step_y, x0 + dx:x1 + dx:step_x]
            if np.count_nonzero(glance) < MIN_EQUAL * glance.size:
                return False
            same = flat[y0:y1, x0:x1] == img.flat[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
            equal = np.count_nonzero(same)
            if equal < MIN_EQUAL * same.size:
                return False
            area = ref_map[y0:y1, x0:x1]
            if refs:  # (the first one maps onto nothing yet)
                same &= area < 0
                equal = np.count_nonzero(same)
            area[same] = len(refs)
            mapped[0] += equal
            refs.append(glz.Ref(self.next_id - img.gid, dy, dx, iw))
            return True

        for (gid, dy, dx), n in votes.most_common(MAX_CANDIDATES):
            if n < MIN_VOTES:
                break
            img = by_gid[gid]
            if not use(img, dy, dx):
                continue
            sy, sx = img.top + dy - top, img.left + dx - left  # the move on the screen
            for step in (-1, 1):
                gid = img.gid + step
                while (other := by_gid.get(gid)) is not None and use(other, top + sy - other.top,
                                                                     left + sx - other.left):
                    gid += step
        if mapped[0] < MIN_SHARE * h * w:
            return None
        return refs, ref_map

    def add(self, top: int, left: int, flat: np.ndarray, keys: np.ndarray, pos: np.ndarray) -> tuple[int, int]:
        """Account for the GLZ image about to be sent (at ``(top, left)``, with its :func:`picture`): its
        ``(id, win_head_dist)``; it is kept for later references when the window has room for it."""
        dist = self.make_room(flat.size)
        gid = self.next_id
        self.next_id += 1
        if self.limit and flat.size <= self.limit:
            img = Held(gid, top, left, flat, keys.tolist(), (pos.astype(np.int64) | (gid << 32)).tolist())
            self._index.update(zip(img.keys, img.values, strict=True))
            self._keys += len(img.keys)
            self._by_gid[gid] = img
            self.held.append(img)
            self.pixels += flat.size
        return gid, dist
