"""Monospace text for the built-in guest: glyph cells rendered once with Pillow, cached as numpy."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..base import Rect

Box = tuple[int, int, int, int]  # left, top, right, bottom

FONT_PATH = Path(__file__).with_name("fonts") / "DejaVuSansMono.ttf"
#: anti-aliasing in this many coverage levels (0, 1/3, 2/3, full): on screen it looks like full
#: smoothing, but a line of text compresses to half the bytes (remote desktops reduce font smoothing
#: for the same reason)
COVERAGE_LEVELS = 4
PRINTABLE = "".join(map(chr, range(0x20, 0x7F)))


def bgrx(rgb: int) -> np.ndarray:
    """``0xRRGGBB`` -> a ``(4,)`` uint8 B, G, R, X pixel (X = 0xff)."""
    return np.array([rgb & 0xFF, (rgb >> 8) & 0xFF, (rgb >> 16) & 0xFF, 0xFF], np.uint8)


def fill_value(rgb: int) -> int:
    """``0xRRGGBB`` -> the little-endian u32 a :class:`Fill` op carries for that pixel."""
    return 0xFF000000 | (rgb & 0xFFFFFF)


class GlyphCache:
    """Renders text in fixed ``cell_w`` x ``cell_h`` cells; each (char, fg, bg) is drawn once."""

    def __init__(self, size: int = 15, path: Path = FONT_PATH) -> None:
        self.font = ImageFont.truetype(str(path), size)
        ascent, descent = self.font.getmetrics()
        self.cell_w = max(1, int(self.font.getlength("M") + 0.25))
        self.cell_h = ascent + descent
        self._masks: dict[str, np.ndarray] = {}
        self._cells: dict[tuple[str, int, int], np.ndarray] = {}

    def mask(self, ch: str) -> np.ndarray:
        """Coverage ``(cell_h, cell_w)`` uint8 of one character."""
        m = self._masks.get(ch)
        if m is None:
            img = Image.new("L", (self.cell_w, self.cell_h), 0)
            if ch.strip():
                ImageDraw.Draw(img).text((0, 0), ch, fill=255, font=self.font)
            step = 255 / (COVERAGE_LEVELS - 1)
            m = self._masks[ch] = (np.round(np.asarray(img, np.float32) / step) * step + 0.5).astype(np.uint8)
        return m

    def cell(self, ch: str, fg: int, bg: int) -> np.ndarray:
        """BGRX ``(cell_h, cell_w, 4)`` of ``ch`` in ``fg`` on ``bg`` (0xRRGGBB)."""
        key = (ch, fg, bg)
        c = self._cells.get(key)
        if c is None:
            a = self.mask(ch).astype(np.uint16)[:, :, None]
            f, b = bgrx(fg).astype(np.uint16), bgrx(bg).astype(np.uint16)
            c = ((f * a + b * (255 - a) + 127) // 255).astype(np.uint8)
            c.flags.writeable = False
            if len(self._cells) > 20000:
                self._cells.clear()
            self._cells[key] = c
        return c

    def warm(self, fg: int, bg: int, chars: str = PRINTABLE) -> None:
        """Render ``chars`` in ``fg`` on ``bg`` now (start-up), not at their first use (a typed key)."""
        for ch in chars:
            self.cell(ch, fg, bg)

    def render(self, text: str, fg: int, bg: int) -> np.ndarray:
        """BGRX ``(cell_h, len(text) * cell_w, 4)`` image of one line of text."""
        if not text:
            return np.zeros((self.cell_h, 0, 4), np.uint8)
        return np.concatenate([self.cell(ch, fg, bg) for ch in text], axis=1)

    def text_width(self, text: str) -> int:
        return len(text) * self.cell_w


@lru_cache(maxsize=4)
def glyphs(size: int = 15) -> GlyphCache:
    """A shared cache per font size."""
    return GlyphCache(size)


UNKNOWN = "\x00"  # a cell whose pixels are not known (never matches text)
_PRIVATE = 0xF0000  # supplementary private use area: codes of cells in non-default colours
_PRIVATE_CHAR = chr(_PRIVATE)


def _changed_span(a: str, b: str) -> tuple[int, int]:
    """``(first, last + 1)`` of the indices where equal-length, unequal ``a`` and ``b`` differ.  Plain
    loops: a changed row is short and usually differs near one end (a typed key, a clock's seconds), and
    cold, this costs a third of an encode-and-XOR of the rows."""
    lo, hi = 0, len(a)
    while a[lo] == b[lo]:
        lo += 1
    while a[hi - 1] == b[hi - 1]:
        hi -= 1
    return lo, hi


def _longest(screen: str, target: str) -> tuple[int, int]:
    """Longest prefix of ``target`` found in ``screen``: (length, position of its first occurrence), (0, -1)
    if none.  The length doubles while found, then a binary search: a few finds for a long run."""
    pos = screen.find(target[0])
    if pos < 0:
        return 0, -1
    n, size = 1, len(target)  # target[:n] found at pos (its first occurrence: longer prefixes are not before)
    bad = size + 1  # shortest length known not found
    while n < size:
        m = min(2 * n, size) if bad > size else (n + bad) // 2
        if m <= n:
            break
        p = screen.find(target[:m], pos)
        if p < 0:
            bad = m
        else:
            pos, n = p, m
        if bad == n + 1:
            break
    return n, pos


class TextGrid:
    """Text cells of one window on a fixed grid, drawn from cells already on screen where possible.

    ``rows`` mirrors what the window buffer shows, one code point per cell: the character itself in
    the default colours, a private-use code for other colours (:meth:`code`), :data:`UNKNOWN` for
    unknown pixels.  Every (char, fg, bg) cell is pixel-identical wherever it is drawn, so
    :meth:`draw` turns the cells of a row that change into CopyRect ops from runs of equal cells
    visible on screen (longest first, ordered so no source is overwritten before it is read) and
    sends pixels only for cells found nowhere.
    """

    def __init__(self, win, left: int, top: int, cols: int, rows: int, fg: int, bg: int,
                 blank: bool = True) -> None:
        self.win, self.left, self.top, self.cols = win, left, top, cols
        self.font: GlyphCache = win.font
        self.fg, self.bg = fg, bg
        self.rows = [(" " if blank else UNKNOWN) * cols] * rows
        self.font.warm(fg, bg)  # typed text: copies or these cells, no glyph rendering per key
        self._codes: dict[tuple[str, int, int], str] = {}
        self._cells: dict[str, tuple[str, int, int]] = {}
        self.copies = 0  # cells drawn by copying (for tests and statistics)
        self.drawn = 0  # cells drawn as pixels

    def code(self, ch: str, fg: int | None = None, bg: int | None = None) -> str:
        """The code point naming cell ``ch`` in ``fg`` on ``bg`` (default: the grid's colours)."""
        fg = self.fg if fg is None else fg
        bg = self.bg if bg is None else bg
        if fg == self.fg and bg == self.bg and ch != UNKNOWN and ord(ch) < _PRIVATE:
            return ch
        key = (ch, fg, bg)
        c = self._codes.get(key)
        if c is None:
            c = self._codes[key] = chr(_PRIVATE + len(self._codes))
            self._cells[c] = key
        return c

    def codes(self, text: str) -> str:
        """:meth:`code` of every character of ``text`` in the default colours."""
        if not text.isascii() and max(text) >= _PRIVATE_CHAR or UNKNOWN in text:
            return "".join(map(self.code, text))
        return text

    def _pixels(self, codes: str) -> np.ndarray:
        f, cells = self.font, self._cells
        if len(codes) == 1:
            return f.cell(*cells[codes]) if codes in cells else f.cell(codes, self.fg, self.bg)
        return np.concatenate([f.cell(*cells[c]) if c in cells else f.cell(c, self.fg, self.bg) for c in codes],
                              axis=1)

    def invalidate(self) -> None:
        """The buffer under the grid was redrawn by other means: nothing is known."""
        self.rows = [UNKNOWN * self.cols] * len(self.rows)

    def scroll(self, n: int) -> None:
        """The buffer's rows moved up by ``n`` (down if negative); vacated rows kept their pixels."""
        if 0 < n < len(self.rows):
            self.rows = self.rows[n:] + self.rows[-n:]
        elif 0 < -n < len(self.rows):
            self.rows = self.rows[:-n] + self.rows[:n]

    def cell_rect(self, row: int, col: int, n: int = 1) -> Rect:
        cw, ch = self.font.cell_w, self.font.cell_h
        return Rect(self.left + col * cw, self.top + row * ch, self.left + (col + n) * cw, self.top + (row + 1) * ch)

    def _screen(self, stale: list[Box]) -> str:
        """The rows as one string (rows joined by UNKNOWN), cells not copyable on screen (``stale``,
        window-local boxes) masked."""
        rows = self.rows
        cw, ch = self.font.cell_w, self.font.cell_h
        left, top = self.left, self.top
        masked: dict[int, list[str]] | None = None
        right, bottom = left + self.cols * cw, top + len(rows) * ch
        for x0, y0, x1, y1 in stale:
            if x0 >= right or x1 <= left or y0 >= bottom or y1 <= top:
                continue  # clear of the grid
            r0, r1 = max(0, (y0 - top) // ch), min(len(rows), -(-(y1 - top) // ch))
            c0, c1 = max(0, (x0 - left) // cw), min(self.cols, -(-(x1 - left) // cw))
            if r0 >= r1 or c0 >= c1:
                continue
            if masked is None:
                masked = {}
            for r in range(r0, r1):
                m = masked.setdefault(r, list(rows[r]))
                m[c0:c1] = UNKNOWN * (c1 - c0)
        if masked:
            rows = [("".join(masked[r]) if r in masked else row) for r, row in enumerate(rows)]
        return UNKNOWN.join(rows)

    def draw(self, row: int, want: str) -> None:
        """Make grid row ``row`` show ``want`` (``cols`` codes): copies where possible, else pixels."""
        have = self.rows[row]
        if want == have:
            return
        lo, hi = _changed_span(have, want)
        win = self.win
        desktop = win.desktop
        guard = desktop.copy_guard(win) if desktop is not None else None  # copies do not change it
        rest: list[int] = []
        if guard is None:
            rest = [c for c in range(lo, hi) if want[c] != have[c]]
        else:
            screen = self._screen(guard[0] + guard[1] if guard[0] else guard[1])
            plan: list[tuple[int, int, int, int]] = []  # (dest col, length, src row, src col)
            i = lo
            width = self.cols + 1
            while i < hi:
                if want[i] == have[i]:
                    i += 1
                    continue
                n, pos = _longest(screen, want[i:hi])
                if n:
                    plan.append((i, n, pos // width, pos % width))
                    i += n
                else:
                    rest.append(i)
                    i += 1
            cw, ch = self.font.cell_w, self.font.cell_h
            left, top = self.left, self.top
            for dc, n, sr, sc in self._ordered(plan, row, rest) if len(plan) > 1 else plan:
                x0, y0 = left + sc * cw, top + sr * ch
                if desktop.copy_in_window(win, x0, y0, x0 + n * cw, y0 + ch, (dc - sc) * cw, (row - sr) * ch, guard):
                    self.copies += n
                else:
                    rest.extend(range(dc, dc + n))
        if rest:
            self._blit_cells(row, sorted({c for c in rest if want[c] != have[c]}), want)
        self.rows[row] = want

    def _blit_cells(self, row: int, cols: list[int], want: str) -> None:
        """Draw cells ``cols`` (ascending) of ``row`` as pixels: one blit per run of adjacent cells."""
        start = 0
        for k in range(1, len(cols) + 1):
            if k == len(cols) or cols[k] != cols[k - 1] + 1:
                c0, c1 = cols[start], cols[k - 1] + 1
                r = self.cell_rect(row, c0)
                self.win.blit_local(r.left, r.top, self._pixels(want[c0:c1]))
                self.drawn += c1 - c0
                start = k

    @staticmethod
    def _ordered(plan: list[tuple[int, int, int, int]], row: int,
                 rest: list[int]) -> list[tuple[int, int, int, int]]:
        """``plan`` in an order where no copy reads cells an earlier one wrote; copies caught in a
        cycle are dropped (their cells go to ``rest``)."""
        if len(plan) == 2:  # a typed key: the character and the cursor
            (dc, n, sr, sc), (dc2, n2, sr2, sc2) = plan
            first_blocked = sr2 == row and sc2 < dc + n and dc < sc2 + n2  # the second reads what the first writes
            if not first_blocked:
                return plan
            if sr == row and sc < dc2 + n2 and dc2 < sc + n:  # and the other way round: a cycle
                rest.extend(range(dc, dc + n))
                return plan[1:]
            return plan[::-1]
        if all(sr != row for _, _, sr, _ in plan):
            return plan  # no copy reads this row: none can read what another writes
        out: list[tuple[int, int, int, int]] = []
        todo = list(plan)
        while todo:
            for k, (dc, n, _, _) in enumerate(todo):  # the first copy no other pending copy reads from
                for j, (_, m, sr, sc) in enumerate(todo):
                    if j != k and sr == row and sc < dc + n and dc < sc + m:
                        break
                else:
                    out.append(todo.pop(k))
                    break
            else:  # a cycle
                dc, n, _, _ = todo.pop(0)
                rest.extend(range(dc, dc + n))
        return out
