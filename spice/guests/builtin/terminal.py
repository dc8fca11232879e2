"""The terminal window: scrollback, a line editor with history, and row-exact rendering.

The model (lines, input, view offset) changes freely; :meth:`Terminal.sync` runs once per frame
and turns the difference into a scroll (CopyRect) plus redrawn character spans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import Rect
from .font import TextGrid, glyphs
from .window import TITLE_H, Window

if TYPE_CHECKING:
    from .shell import Shell

TERM_BG = 0x11151A
TERM_FG = 0xD6DDE4
PAD = 6
SCROLLBACK = 2000


# control characters (other than tab/newline) print as "?": a cat of a binary file stays one cell per byte
_PRINTABLE = {c: "?" for c in [*range(0x20), 0x7F] if c not in (9, 10)}


class Terminal(Window):
    """A text terminal; ``lines`` is what it shows (scrollback + the current prompt line)."""

    def __init__(self, x: int, y: int, w: int, h: int, prompt: str = "$ ") -> None:
        font = glyphs()
        cw, ch = font.cell_w, font.cell_h
        w, h = max(w, 2 * PAD + 2 + 8 * cw), max(h, TITLE_H + 2 * PAD + 1 + 2 * ch)  # >= 8 x 2 cells
        super().__init__("Terminal", x, y, w, h, bg=TERM_BG)
        self.cols = (w - 2 * PAD - 2) // cw
        self.rows = (h - TITLE_H - 2 * PAD - 1) // ch
        self.area = Rect(PAD + 1, TITLE_H + PAD, PAD + 1 + self.cols * cw, TITLE_H + PAD + self.rows * ch)
        self.prompt = prompt
        self.shell: Shell | None = None
        self.committed: list[str] = []
        self.base = 0  # lines dropped from the front (keeps row numbering absolute)
        self.input = ""
        self.pos = 0
        self.at_prompt = True
        self.history: list[str] = []
        self._hist_idx = 0
        self._saved_input = ""
        self.offset = 0  # rows scrolled back from the bottom (mouse wheel)
        self.grid = TextGrid(self, self.area.left, self.area.top, self.cols, self.rows, TERM_FG, TERM_BG)
        self._shown_top: int | None = None
        self._drawn: list[tuple[str | None, int, str | None]] = [(None, -1, None)] * self.rows
        # what the last sync saw: (top, base, committed lines, offset), the grid's rows, live rows
        self._synced: tuple[int, int, int, int] | None = None
        self._synced_rows: list[str] = []
        self._synced_live = 0
        self._synced_key: tuple | None = None  # _model_key() at the last sync

    # -- what is on the terminal
    @property
    def lines(self) -> list[str]:
        """All text lines: scrollback, then the live line (prompt + input, or "" while busy)."""
        return self.committed + [self.prompt + self.input if self.at_prompt else ""]

    @property
    def screen_lines(self) -> list[str]:
        """The rows currently visible, without trailing blanks per row."""
        rows, top, _ = self._layout()
        return [rows[i].rstrip() if i < len(rows) else "" for i in range(top, top + self.rows)]

    def _wrap(self, text: str) -> list[str]:
        c = self.cols
        if len(text) <= c:
            return [text]
        return [text[i:i + c] for i in range(0, len(text), c)]

    def _live_rows(self) -> tuple[list[str], int]:
        """Wrapped live line and the cursor's index into it."""
        if not self.at_prompt:
            return [""], 0
        text = self.prompt + self.input
        cur = len(self.prompt) + self.pos
        return self._wrap(text + (" " if cur == len(text) and len(text) % self.cols == 0 and text else "")), cur

    def _layout(self) -> tuple[list[str], int, tuple[int, int]]:
        """``(rows, top row, cursor (row, col))``: all rows (committed, then the live rows)."""
        committed, live, top, cursor = self._view()
        return committed + live, top, cursor

    def _view(self) -> tuple[list[str], list[str], int, tuple[int, int]]:
        """:meth:`_layout` with the rows as ``(committed, live rows)``, not concatenated (the scrollback is
        long; a frame reads about one row of it)."""
        live, cur = self._live_rows()
        committed = self.committed
        n = len(committed) + len(live)
        self.offset = max(0, min(self.offset, n - self.rows))
        top = max(0, n - self.rows - self.offset)
        cur_row = len(committed) + cur // self.cols
        return committed, live, top, (cur_row, cur % self.cols)

    # -- output
    def write_line(self, text: str = "") -> None:
        """Append output line(s); ``\\n`` splits, long lines wrap."""
        for part in str(text).replace("\r\n", "\n").translate(_PRINTABLE).expandtabs(8).split("\n"):
            self.committed.extend(self._wrap(part))
        extra = len(self.committed) - SCROLLBACK
        if extra > 0:
            del self.committed[:extra]
            self.base += extra
        self.invalidate_text()

    def clear(self) -> None:
        """Drop the scrollback: the live line moves to the top."""
        self.base += len(self.committed)
        self.committed = []
        self.offset = 0
        self.invalidate_text()

    def show_prompt(self) -> None:
        self.at_prompt = True
        self.input, self.pos = "", 0
        self.invalidate_text()

    def invalidate_text(self) -> None:
        if self.desktop is not None:
            self.desktop.schedule()

    def scroll_view(self, rows: int) -> None:
        """Scroll back (positive) or forward (negative) through the scrollback."""
        self.offset = max(0, self.offset + rows)
        self.invalidate_text()

    # -- line editing
    def key(self, key: str) -> None:
        """One key: a printable character or a name (Enter, Backspace, Left, C-c, ...)."""
        if key in ("PageUp", "PageDown"):  # page through the scrollback
            self.scroll_view((self.rows - 1) * (1 if key == "PageUp" else -1))
            return
        self.offset = 0
        if key == "C-c":
            self._interrupt()
        elif key == "C-l":
            self.clear()
        elif not self.at_prompt:
            return
        elif len(key) == 1:
            self.input = self.input[:self.pos] + key + self.input[self.pos:]
            self.pos += 1
        elif key == "Enter":
            self._submit()
        elif key == "Backspace" and self.pos > 0:
            self.input = self.input[:self.pos - 1] + self.input[self.pos:]
            self.pos -= 1
        elif key == "Delete":
            self.input = self.input[:self.pos] + self.input[self.pos + 1:]
        elif key == "Left":
            self.pos = max(0, self.pos - 1)
        elif key == "Right":
            self.pos = min(len(self.input), self.pos + 1)
        elif key in ("Home", "C-a"):
            self.pos = 0
        elif key in ("End", "C-e"):
            self.pos = len(self.input)
        elif key == "C-u":
            self.input, self.pos = self.input[self.pos:], 0
        elif key == "C-k":
            self.input = self.input[:self.pos]
        elif key in ("Up", "Down"):
            self._history_step(-1 if key == "Up" else 1)
        elif key == "Tab":
            self._complete()
        self.invalidate_text()

    def type_text(self, text: str) -> None:
        """Feed characters as if typed; ``\\n`` is Enter."""
        for ch in text:
            self.key("Enter" if ch == "\n" else ch)

    def _submit(self) -> None:
        line = self.input
        self.write_line(self.prompt + line)
        if line.strip() and (not self.history or self.history[-1] != line):
            self.history.append(line)
        self._hist_idx = len(self.history)
        self.at_prompt = False
        self.input, self.pos = "", 0
        if self.shell is not None:
            self.shell.run(line)
        else:
            self.show_prompt()

    def _interrupt(self) -> None:
        if self.at_prompt:
            self.write_line(self.prompt + self.input + "^C")
            self.show_prompt()
        elif self.shell is not None:
            self.shell.cancel()

    def _history_step(self, step: int) -> None:
        if not self.history:
            return
        if self._hist_idx == len(self.history):
            self._saved_input = self.input
        self._hist_idx = max(0, min(len(self.history), self._hist_idx + step))
        self.input = self.history[self._hist_idx] if self._hist_idx < len(self.history) else self._saved_input
        self.pos = len(self.input)

    def _complete(self) -> None:
        if self.shell is None or " " in self.input[:self.pos]:
            return
        names = [n for n in self.shell.commands if n.startswith(self.input[:self.pos])]
        if len(names) == 1:
            self.input = names[0] + " " + self.input[self.pos:]
            self.pos = len(names[0]) + 1

    # -- rendering
    def cursor_kind(self, x: int, y: int) -> str:
        a = self.area
        return "ibeam" if a.left <= x < a.right and a.top <= y < a.bottom else "arrow"

    def _model_key(self) -> tuple:
        """Everything the rows on screen follow from (committed lines are only ever appended or dropped)."""
        return (self.base, len(self.committed), self.offset, self.at_prompt, self.input, self.pos, self.prompt,
                self.cols, self.rows)

    def sync(self) -> None:
        if self._model_key() == self._synced_key and self.grid.rows == self._synced_rows:
            return  # nothing changed since the last sync (a clock tick's frame)
        committed, live, top, (cur_row, cur_col) = self._view()
        nc = len(committed)
        abs_top = self.base + top
        grid = self.grid
        state = (abs_top, self.base, nc, self.offset)
        if state == self._synced and grid.rows == self._synced_rows:
            # only the live line changed: its rows (as drawn and as now) are all that may differ
            first = max(0, nc - top)
            candidates = range(first, min(self.rows, nc + max(len(live), self._synced_live) - top))
        else:
            if self._shown_top is not None and abs_top != self._shown_top:
                delta = abs_top - self._shown_top
                if abs(delta) < self.rows and self.desktop is not None:
                    band = Rect(0, self.area.top, self.w, self.area.bottom)  # whole rows: border, padding are plain
                    self.desktop.scroll_window(self, band, -delta * self.font.cell_h)
                    grid.scroll(delta)
                    self._drawn = self._drawn[delta:] + self._drawn[:delta]  # (rows' records move with the rows)
            self._shown_top = abs_top
            candidates = range(self.rows)
        order: range | list[int] = candidates
        if cur_row - top in candidates and len(candidates) > 1:  # the cursor row first: the old cursor cell
            order = list(candidates)  # is a source for it
            order.remove(cur_row - top)
            order.insert(0, cur_row - top)
        cols = self.cols
        drawn, shown = self._drawn, grid.rows
        show_cursor = self.offset == 0
        for r in order:
            i = top + r
            line = committed[i] if i < nc else live[i - nc] if i - nc < len(live) else None
            cursor = cur_col if i == cur_row and show_cursor else -1
            done_line, done_cursor, done_cells = drawn[r]
            if shown[r] is done_cells and cursor == done_cursor and line == done_line:
                continue  # same model, and the grid row still holds what was drawn for it
            raw = line.ljust(cols)[:cols] if line is not None else " " * cols
            text = grid.codes(raw)
            if cursor >= 0:
                text = text[:cursor] + grid.code(raw[cursor], TERM_BG, TERM_FG) + text[cursor + 1:]
            grid.draw(r, text)
            drawn[r] = (line, cursor, shown[r])
        self._synced, self._synced_rows, self._synced_live = state, list(grid.rows), len(live)
        self._synced_key = self._model_key()
