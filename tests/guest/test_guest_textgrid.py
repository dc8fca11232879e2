"""TextGrid: text cells drawn by copying equal cells already on screen, pixel-exact in every colour."""

from __future__ import annotations

import random

import numpy as np
from guest_helpers import Shadow

from spice.guests.base import CopyRect, Damage
from spice.guests.builtin.desktop import Desktop
from spice.guests.builtin.font import TextGrid
from spice.guests.builtin.window import Window

FG, BG = 0xD0D0D0, 0x101010
STYLES = [(FG, BG), (BG, FG), (0xFF4040, BG), (0x40FF40, 0x202060)]


class _Guest:
    """The bits of a guest Shadow needs, around a bare Desktop."""

    def __init__(self, desktop: Desktop) -> None:
        self.desktop = desktop
        self.framebuffer = desktop.fb
        self.serial = 0
        self.listeners = []

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def flush(self) -> None:
        self.desktop.render()
        ops = self.desktop.surface.take_ops()
        if ops:
            from spice.guests.base import Frame

            self.serial += 1
            for lst in self.listeners:
                lst.on_frame(Frame(ops, self.serial, 0.0))


def make(cols: int = 24, rows: int = 6):
    d = Desktop(400, 300)
    win = Window("grid", 20, 30, 260, 200, bg=BG)
    d.add(win)
    grid = TextGrid(win, 10, 30, cols, rows, FG, BG)
    g = _Guest(d)
    g.flush()
    return d, win, grid, g


def expected(grid: TextGrid, cells: list[tuple[str, int, int]]) -> np.ndarray:
    return np.concatenate([grid.font.cell(*c) for c in cells], axis=1)


def check(d: Desktop, win: Window, grid: TextGrid, model: list[list[tuple[str, int, int]]]) -> None:
    for r, cells in enumerate(model):
        box = grid.cell_rect(r, 0, grid.cols).translate(win.x, win.y)
        assert np.array_equal(d.fb[box.top:box.bottom, box.left:box.right], expected(grid, cells)), r


def test_random_coloured_text_is_exact_and_mostly_copied():
    d, win, grid, g = make()
    shadow = Shadow(g)
    rnd = random.Random(7)
    model = [[(" ", FG, BG)] * grid.cols for _ in range(len(grid.rows))]
    for _ in range(300):
        r = rnd.randrange(len(grid.rows))
        c0 = rnd.randrange(grid.cols)
        n = rnd.randint(1, grid.cols - c0)
        style = rnd.choice(STYLES)
        for c in range(c0, c0 + n):
            model[r][c] = (rnd.choice("ab c"), *style)
        if rnd.random() < 0.1:  # scroll the grid's buffer rows too (as the terminal does)
            k = rnd.choice([1, 2, -1])
            area = grid.cell_rect(0, 0, grid.cols).union(grid.cell_rect(len(grid.rows) - 1, 0, grid.cols))
            d.scroll_window(win, area, -k * grid.font.cell_h)
            grid.scroll(k)
            model = [list(row) for row in (model[k:] + model[-k:] if k > 0 else model[:-k] + model[:k])]
        for row in range(len(grid.rows)):
            grid.draw(row, "".join(grid.code(*cell) for cell in model[row]))
        g.flush()
        check(d, win, grid, model)
    shadow.check()
    assert grid.copies > 2 * grid.drawn  # four letters in four styles: nearly everything is a copy


def test_a_cell_is_copied_only_from_the_same_colours():
    d, win, grid, g = make()
    shadow = Shadow(g)
    grid.draw(0, grid.codes("x".ljust(grid.cols)))
    g.flush()
    shadow.take()
    red = grid.code("x", 0xFF4040, BG)
    grid.draw(1, red + " " * (grid.cols - 1))  # a red x: no red x anywhere, pixels
    g.flush()
    ops = Shadow.ops(shadow.take())
    assert [type(op) for op in ops] == [Damage]
    grid.draw(2, " " * 5 + red + "x" + " " * (grid.cols - 7))  # both found: copies
    g.flush()
    ops = Shadow.ops(shadow.take())
    assert all(isinstance(op, CopyRect) for op in ops) and len(ops) == 2
    src = {(op.src.left, op.src.top) for op in ops}
    r1, r0 = grid.cell_rect(1, 0).translate(win.x, win.y), grid.cell_rect(0, 0).translate(win.x, win.y)
    assert src == {(r1.left, r1.top), (r0.left, r0.top)}
    shadow.check()


def test_swapped_halves_fall_back_to_pixels_for_the_cycle():
    """Two runs that must read each other's cells before being overwritten: one is copied first, the
    other (whose source is gone) is drawn as pixels; the result is exact."""
    d, win, grid, g = make(cols=8, rows=1)
    shadow = Shadow(g)
    grid.draw(0, "abcdefgh")
    g.flush()
    grid.draw(0, "efghabcd")
    g.flush()
    shadow.check()
    check(d, win, grid, [[(ch, FG, BG) for ch in "efghabcd"]])
    assert sum(isinstance(op, CopyRect) for op in Shadow.ops(shadow.take())) >= 1


def test_no_copies_while_the_window_moves_or_is_covered():
    d, win, grid, g = make()
    shadow = Shadow(g)
    grid.draw(0, grid.codes("abc".ljust(grid.cols)))
    g.flush()
    d.move(win, 60, 40)  # moved, not yet rendered: the screen is stale
    grid.draw(1, grid.codes("abc".ljust(grid.cols)))
    g.flush()
    assert not any(isinstance(op, CopyRect) and op.src.width < 100 for op in Shadow.ops(shadow.take()))
    cover = Window("cover", 0, 0, 120, 200, bg=0x808080)  # covers the grid's first columns
    d.add(cover)
    g.flush()
    shadow.take()
    grid.draw(2, grid.codes("   abc".ljust(grid.cols)))
    g.flush()
    for op in Shadow.ops(shadow.take()):
        if isinstance(op, CopyRect):
            assert op.src.intersect(cover.rect).is_empty() and op.dest.intersect(cover.rect).is_empty()
    shadow.check()
    d.remove(cover)
    g.flush()
    check(d, win, grid, [[(ch, FG, BG) for ch in t.ljust(grid.cols)] for t in ("abc", "abc", "   abc", "", "", "")])


def test_longest_prefix_search_and_changed_span_match_brute_force():
    from spice.guests.builtin.font import _changed_span, _longest

    rnd = random.Random(3)
    for _ in range(3000):
        screen = "".join(rnd.choice("ab\x00\U000f0001") for _ in range(rnd.randint(0, 80)))
        target = "".join(rnd.choice("abc\U000f0001") for _ in range(rnd.randint(1, 30)))
        n = max((k for k in range(len(target) + 1) if target[:k] in screen), default=0)
        assert _longest(screen, target) == ((n, screen.find(target[:n])) if n else (0, -1))
        a = "".join(rnd.choice("ab\U000f0002") for _ in range(rnd.randint(1, 90)))
        b = "".join(c if rnd.random() < 0.9 else rnd.choice("xa\U000f0003") for c in a)
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if diff:
            assert _changed_span(a, b) == (diff[0], diff[-1] + 1)
