"""Small desktop parts: the top bar with the clock, the device panel with its button."""

from __future__ import annotations

from ..base import MouseButton, Rect
from .font import TextGrid, glyphs
from .window import TITLE_H, Window

BAR_BG = 0x1E2229
BAR_FG = 0xDDE3EA
PANEL_BG = 0xECECEC
TEXT = 0x202428
MUTED = 0x6A717A


class TopBar(Window):
    """Always-on-top strip across the screen; the clock sits in a fixed box at its right end."""

    always_on_top = True
    exact_damage = False  # its changes are whole text cells (nothing above it): no pixel diff per tick
    CLOCK_CHARS = 23  # "Thu 2026-11-26 14:05:09" / "up 1d 02:03:04" fit

    def __init__(self, width: int, label: str = "aiospice  builtin guest") -> None:
        super().__init__("", 0, 0, width, TITLE_H, bg=BAR_BG, movable=False, titled=False)
        self.text(10, (TITLE_H - self.font.cell_h) // 2, label[:max(0, width // self.font.cell_w - 26)],
                  BAR_FG, BAR_BG)
        self.clock_text = ""
        cw = self.font.cell_w * self.CLOCK_CHARS
        self.clock_rect = Rect(max(0, width - cw - 10), (TITLE_H - self.font.cell_h) // 2,
                               max(0, width - 10), (TITLE_H - self.font.cell_h) // 2 + self.font.cell_h)
        cols = min(self.CLOCK_CHARS, self.clock_rect.width // self.font.cell_w)
        self.clock_grid = TextGrid(self, self.clock_rect.left, self.clock_rect.top, cols, 1, BAR_FG, BAR_BG)

    def set_clock(self, text: str) -> None:
        """Show ``text`` right-aligned in the clock box: only changed cells, copied from equal cells of
        the clock where there are some."""
        text = text[-self.CLOCK_CHARS:].rjust(self.CLOCK_CHARS)
        if text != self.clock_text:
            self.clock_text = text
            self.clock_grid.draw(0, self.clock_grid.codes(text[len(text) - self.clock_grid.cols:]))


class Button:
    """A push button: looks pressed while held, counts clicks (release inside)."""

    def __init__(self, panel: DevicePanel, rect: Rect, label: str) -> None:
        self.panel, self.rect_local, self.label = panel, rect, label
        self.pressed = False
        self.clicks = 0

    @property
    def screen_rect(self) -> Rect:
        return self.rect_local.translate(self.panel.x, self.panel.y)

    @property
    def center(self) -> tuple[int, int]:
        r = self.screen_rect
        return (r.left + r.right) // 2, (r.top + r.bottom) // 2

    def draw(self) -> None:
        p, r = self.panel, self.rect_local
        face, hi, lo = (0x9DB4CC, 0x5B6B7C, 0xF4F7FA) if self.pressed else (0xD5DEE8, 0xFFFFFF, 0x5B6B7C)
        p.fill_local(r, lo)
        p.fill_local(Rect(r.left, r.top, r.right - 1, r.bottom - 1), hi)
        p.fill_local(Rect(r.left + 1, r.top + 1, r.right - 1, r.bottom - 1), face)
        off = 1 if self.pressed else 0
        tw = p.font.text_width(self.label)
        p.text((r.left + r.right - tw) // 2 + off, (r.top + r.bottom - p.font.cell_h) // 2 + off,
               self.label, TEXT, face)


def _size(n: int) -> str:
    for unit in ("", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "" or n >= 10 else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def format_row(row: str | dict, cols: int) -> str:
    """One panel line: a string as is, or a ``UsbSubsystem.rows()`` dict (port, id, product, driver, ...)."""
    if isinstance(row, str):
        return row[:cols]
    right = f"{row.get('driver') or '-'}{' mounted' if row.get('mounted') else ''}"
    if row.get("bytes"):
        right += f" {_size(int(row['bytes']))}B"
    left = f"{row.get('port', '?'):<4} {row.get('id', '????:????')} {row.get('product') or ''}".rstrip()
    room = max(0, cols - len(right) - 1)
    return (left[:room].ljust(room) + " " + right)[:cols]


class DevicePanel(Window):
    """The "Devices" window: USB device list (filled via :meth:`set_rows`) and a click-me button."""

    MAX_ROWS = 7
    WIDTH = 420

    def __init__(self, x: int, y: int) -> None:
        ch = glyphs().cell_h
        self.list_top = TITLE_H + 12 + ch + 6
        bt = self.list_top + self.MAX_ROWS * ch + 14
        super().__init__("Devices", x, y, self.WIDTH, bt + 32 + 14, bg=PANEL_BG)
        self.rows: list[str] = []
        self.button = Button(self, Rect(12, bt, 132, bt + 32), "Click me")
        self.clicks_at = (148, bt + (32 - ch) // 2)
        self.text(12, TITLE_H + 12, "USB devices", TEXT, PANEL_BG)
        self.fill_local(Rect(12, TITLE_H + 12 + ch + 2, self.w - 12, TITLE_H + 12 + ch + 3), 0xB8BEC6)
        self.set_rows([])
        self._draw_button()

    def set_rows(self, rows: list[str | dict]) -> None:
        self.rows = list(rows)
        ch, cols = self.font.cell_h, (self.w - 24) // self.font.cell_w
        shown = [format_row(r, cols) for r in self.rows[:self.MAX_ROWS]]
        if len(self.rows) > self.MAX_ROWS:
            shown[-1] = f"(+{len(self.rows) - self.MAX_ROWS + 1} more)"
        lines = shown or ["No USB devices"]
        for i in range(self.MAX_ROWS):
            text = lines[i] if i < len(lines) else ""
            self.text(12, self.list_top + i * ch, text[:cols].ljust(cols), MUTED if not shown else TEXT, PANEL_BG)

    def _draw_button(self) -> None:
        self.button.draw()
        b = self.button
        self.text(*self.clicks_at, f"clicks: {b.clicks}".ljust(16), TEXT, PANEL_BG)

    def on_press(self, x: int, y: int, button: int) -> None:
        r = self.button.rect_local
        if button == MouseButton.LEFT and r.left <= x < r.right and r.top <= y < r.bottom:
            self.button.pressed = True
            self._draw_button()

    def on_release(self, x: int, y: int, button: int) -> None:
        b = self.button
        if button == MouseButton.LEFT and b.pressed:
            b.pressed = False
            r = b.rect_local
            if r.left <= x < r.right and r.top <= y < r.bottom:
                b.clicks += 1
            self._draw_button()
