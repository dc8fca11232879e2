"""The built-in guest: exact damage, terminal + shell, keyboard, pointer, cursor, panel."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta

import guest_helpers as kb
import numpy as np
import pytest
from guest_helpers import Shadow, ctrl, tap, type_keys

from spice.guests.base import CopyRect, Damage, Fill, MouseButton, Rect
from spice.guests.builtin import BuiltinGuest
from spice.guests.builtin.terminal import TERM_BG, TERM_FG

FROZEN = datetime(2026, 1, 2, 3, 4, 5)
L = MouseButton.MASK_LEFT


@pytest.fixture
async def guest():
    g = BuiltinGuest(1024, 768, clock=lambda: FROZEN, uptime=lambda: 3725.0)
    await g.start()
    yield g
    await g.stop()


@pytest.fixture
def shadow(guest):
    s = Shadow(guest)
    yield s
    s.check()


def row_pixels(guest, row: int) -> np.ndarray:
    t = guest.terminal
    ch = t.font.cell_h
    y0, x0 = t.y + t.area.top + row * ch, t.x + t.area.left
    return guest.framebuffer[y0:y0 + ch, x0:x0 + t.cols * t.font.cell_w]


async def test_starts_quiet_and_keeps_its_framebuffer(guest, shadow):
    fb = guest.framebuffer
    assert fb.shape == (768, 1024, 4) and fb.dtype == np.uint8
    await guest.settle()
    assert shadow.frames == []  # nothing changes with a frozen clock
    type_keys(guest, "x")
    await guest.settle()
    assert guest.framebuffer is fb and guest.frame_serial == 1


async def test_echo_hello_shows_hello(guest, shadow):
    type_keys(guest, "echo hello\n")
    await guest.settle()
    assert guest.terminal.lines[-3:] == ["$ echo hello", "hello", "$ "]
    screen = guest.terminal.screen_lines
    row = screen.index("hello")
    assert screen[row - 1] == "$ echo hello"
    t = guest.terminal
    expected = t.font.render("hello".ljust(t.cols), TERM_FG, TERM_BG)
    assert np.array_equal(row_pixels(guest, row), expected)
    assert not np.array_equal(row_pixels(guest, row), t.font.render(" " * t.cols, TERM_FG, TERM_BG))
    assert len(shadow.frames) == 1  # one event-loop turn -> one frame


async def test_one_character_damages_a_small_area(guest, shadow):
    await guest.settle()
    cell = guest.terminal.font.cell_w * guest.terminal.font.cell_h
    type_keys(guest, "a")  # an "a" is on screen (the banner): both cells are copies
    await guest.settle()
    frames = shadow.take()
    assert len(frames) == 1
    ops = frames[0].ops
    assert all(isinstance(op, CopyRect) and op.src.area == cell for op in ops) and len(ops) == 2, ops
    type_keys(guest, "Z")  # a "Z" is nowhere: its cell as pixels, the cursor copied
    await guest.settle()
    ops = Shadow.ops(shadow.take())
    assert sum(isinstance(op, CopyRect) for op in ops) == 1
    assert 0 < sum(op.rect.area for op in ops if isinstance(op, Damage)) <= cell
    assert_terminal_pixels(guest)


async def test_typed_text_is_copied_from_cells_on_screen(guest, shadow):
    """Text already visible is not sent again: copies of runs of equal cells, pixels only for new ones."""
    t = guest.terminal
    t.write_line("the quick brown fox jumps over the lazy dog 0123456789")
    await guest.settle()
    shadow.take()
    drawn = t.grid.drawn
    type_keys(guest, "echo the lazy fox\n")
    await guest.settle()
    frames = shadow.take()
    assert t.grid.drawn == drawn  # every cell was found on screen
    assert Shadow.area(frames) == 0 and all(isinstance(op, CopyRect | Fill) for op in Shadow.ops(frames))
    assert [line for line in t.screen_lines if line][-3:] == ["$ echo the lazy fox", "the lazy fox", "$"]
    assert_terminal_pixels(guest)
    type_keys(guest, "aa")
    tap(guest, kb.HOME)
    type_keys(guest, "b")  # insert at the line start: the rest shifts by one cell in one copy
    await guest.settle()
    assert_terminal_pixels(guest)
    assert [line for line in t.screen_lines if line][-1] == "$ baa"


async def test_copies_avoid_cells_under_a_window_above(guest, shadow):
    """Sources covered by another window (or moving this frame) are not used; the result stays exact."""
    t, p = guest.terminal, guest.panel
    t.write_line("qqqq wwww")
    await guest.settle()
    row = t.screen_lines.index("qqqq wwww")
    x, y = t.x + t.area.left, t.y + t.area.top + row * t.font.cell_h
    guest.desktop.move(p, x - 2, y - 30)  # the panel now covers the "qqqq wwww" row's start
    guest.desktop.raise_(p)
    await guest.settle()
    shadow.take()
    type_keys(guest, "qqqq")
    await guest.settle()
    ops = Shadow.ops(shadow.take())
    covered = p.rect
    for op in ops:
        if isinstance(op, CopyRect):
            assert op.src.intersect(covered).is_empty() and op.dest.intersect(covered).is_empty(), op
    guest.desktop.move(p, 600, 500)  # a move pending: no copies at all in that frame, still exact
    type_keys(guest, "wwww")
    await guest.settle()
    guest.desktop.remove(p)
    await guest.settle()
    assert_terminal_pixels(guest)


async def test_copies_in_scrolled_back_view_and_wrapped_lines(guest, shadow):
    t = guest.terminal
    for i in range(t.rows * 2):
        t.write_line(f"{i:04d} " + "abc " * (i % 7) + "x" * (t.cols + 5 if i % 5 == 0 else 0))
    await guest.settle()
    for key in (0x149, 0x149, 0x151):  # PageUp twice, PageDown
        tap(guest, key)
        await guest.settle()
        assert_terminal_pixels(guest)
    guest.pointer_position(t.x + 50, t.y + 100, 0)
    for button in (MouseButton.UP, MouseButton.DOWN, MouseButton.DOWN):
        guest.pointer_button(button, True, 0)
        await guest.settle()
        assert_terminal_pixels(guest)
    type_keys(guest, "echo " + "abc " * (t.cols // 3))  # wraps; typing returns to the bottom
    await guest.settle()
    assert_terminal_pixels(guest)
    assert t.grid.copies > t.cols


async def test_shift_capitals_and_caps_lock_leds(guest, shadow):
    type_keys(guest, "aB")
    tap(guest, kb.CAPS)
    assert guest.leds == 4 and shadow.leds == [4]
    type_keys(guest, "cD")  # Caps inverts letters, Shift+Caps gives lower case
    tap(guest, kb.NUM)
    assert guest.leds == 6 and shadow.leds == [4, 6]
    type_keys(guest, "1!")
    tap(guest, kb.CAPS)
    assert guest.leds == 2
    await guest.settle()
    assert guest.terminal.input == "aBCd1!"


async def test_line_editing_history_and_control_keys(guest, shadow):
    type_keys(guest, "echo abc")
    tap(guest, kb.LEFT)
    tap(guest, kb.BACKSPACE)
    type_keys(guest, "X")
    tap(guest, kb.HOME)
    tap(guest, kb.DELETE)
    tap(guest, kb.END)
    type_keys(guest, "!")
    assert guest.terminal.input == "cho aXc!"
    ctrl(guest, "u")
    assert guest.terminal.input == ""
    type_keys(guest, "echo one\necho two\n")
    tap(guest, kb.UP)
    tap(guest, kb.UP)
    assert guest.terminal.input == "echo one"
    ctrl(guest, "c")
    assert guest.terminal.lines[-2:] == ["$ echo one^C", "$ "]
    ctrl(guest, "l")
    await guest.settle()
    assert guest.terminal.screen_lines[0] == "$"
    type_keys(guest, "nosuch\ndate\nuptime\n")
    await guest.settle()
    assert guest.terminal.lines[-7:-1] == ["$ nosuch", "nosuch: command not found", "$ date",
                                         "Fri Jan 02 03:04:05 2026", "$ uptime", "03:04:05 up 1:02:05"]


async def test_key_repeat_until_release():
    g = BuiltinGuest(640, 480, clock=lambda: FROZEN, repeat_delay=0.05, repeat_rate=100)
    s = Shadow(g)
    code = 0x2D  # x
    g.key_event(code, True)
    for _ in range(500):
        if len(g.terminal.input) >= 5:
            break
        await asyncio.sleep(0.01)
    g.key_event(code | 0x80, False)  # a break code works too
    held = len(g.terminal.input)
    assert held >= 5 and set(g.terminal.input) == {"x"}
    await asyncio.sleep(0.1)
    assert len(g.terminal.input) == held
    await g.settle()
    s.check()


async def test_modifiers_do_not_repeat_or_type(guest):
    guest.key_event(kb.LSHIFT, True)
    guest.key_event(kb.LSHIFT, True)  # typematic make codes of a modifier
    guest.key_event(kb.LSHIFT, False)
    assert guest.terminal.input == ""


async def test_output_scrolls_with_copyrect(guest, shadow):
    t = guest.terminal
    for i in range(t.rows):
        t.write_line(f"line {i}")
    await guest.settle()
    shadow.take()
    type_keys(guest, "echo scrolled\n")
    await guest.settle()
    frames = shadow.take()
    copies = [op for op in Shadow.ops(frames) if isinstance(op, CopyRect)]
    assert copies, Shadow.ops(frames)
    area = t.area.translate(t.x, t.y)
    scroll = [c for c in copies if c.src.width == t.w]  # whole window rows (border and padding are plain)
    assert scroll and all(c.src.left == t.x and c.dest_y < c.src.top for c in scroll)
    assert Shadow.area(frames) < area.area // 4  # new rows only, not a redraw
    assert t.screen_lines[-3:] == ["$ echo scrolled", "scrolled", "$"]


async def test_scroll_under_a_window_above_copies_the_uncovered_strip(guest, shadow):
    t, p = guest.terminal, guest.panel
    for i in range(t.rows):
        t.write_line(f"line {i} " + "abc " * (i % 9))
    guest.desktop.move(p, t.x + 300, t.y + 60)  # the panel covers the terminal's right part
    guest.desktop.raise_(p)
    await guest.settle()
    shadow.take()
    t.write_line("one more line")
    await guest.settle()
    ops = Shadow.ops(shadow.take())
    area = t.area.translate(t.x, t.y)
    scroll = [op for op in ops if isinstance(op, CopyRect) and op.src.height > 4 * t.font.cell_h]
    assert len(scroll) == 1 and scroll[0].src.left == t.x and scroll[0].src.right <= p.x
    assert sum(op.rect.area for op in ops if isinstance(op, Damage)) < area.area // 4
    assert np.array_equal(guest.desktop.compose(Rect(0, 0, *guest.size)), guest.framebuffer)
    guest.desktop.remove(p)
    await guest.settle()
    assert_terminal_pixels(guest)


async def test_wheel_scrolls_back(guest, shadow):
    t = guest.terminal
    for i in range(t.rows * 2):
        t.write_line(f"row {i}")
    await guest.settle()
    bottom = t.screen_lines
    guest.pointer_position(t.x + 50, t.y + 100, 0)
    guest.pointer_button(MouseButton.UP, True, 0)
    guest.pointer_button(MouseButton.UP, False, 0)
    await guest.settle()
    assert t.screen_lines[3:] == bottom[:-3]
    assert any(isinstance(op, CopyRect) and op.dest_y > op.src.top for op in Shadow.ops(shadow.take()))
    tap(guest, 0x149)  # PageUp, twice
    tap(guest, 0x149)
    await guest.settle()
    assert t.screen_lines[0].startswith("aiospice built-in guest") and t.screen_lines[1] == "row 0"
    tap(guest, 0x151)  # PageDown
    await guest.settle()
    assert t.screen_lines[0] == f"row {t.rows - 2}"  # one page below the top
    type_keys(guest, "z")  # typing returns to the bottom
    await guest.settle()
    assert t.screen_lines[-1] == "$ z"


async def test_clock_tick_damages_only_the_clock():
    now = [datetime(2026, 1, 2, 3, 4, 5)]
    g = BuiltinGuest(800, 600, clock=lambda: now[0])
    s = Shadow(g)
    await g.start()
    try:
        now[0] += timedelta(seconds=1)
        for _ in range(300):
            if s.frames:
                break
            await asyncio.sleep(0.01)
        assert s.frames
        box = g.topbar.clock_rect.translate(g.topbar.x, g.topbar.y)
        ops = Shadow.ops(s.frames)
        for op in ops:  # 5 -> 6: the "6" of "2026" is copied
            assert isinstance(op, CopyRect) and op.dest.intersect(box) == op.dest and op.src.intersect(box) == op.src
        assert len(ops) == 1 and g.topbar.clock_text.endswith("03:04:06")
    finally:
        await g.stop()
    s.check()


async def test_clock_cells_are_copied_or_drawn_cell_by_cell():
    """Every tick changes only whole character cells of the clock; digits on show are copied."""
    now = datetime(2026, 1, 2, 3, 58, 50)
    g = BuiltinGuest(800, 600, clock=lambda: now)
    s = Shadow(g)
    bar = g.topbar
    cw, ch = bar.font.cell_w, bar.font.cell_h
    box = bar.clock_rect
    for _ in range(200):
        now += timedelta(seconds=1)
        g._update_clock()
        g.flush()
        for op in Shadow.ops(s.take()):
            r = op.dest if isinstance(op, CopyRect) else op.rect
            assert r.intersect(box) == r, op
            if isinstance(op, CopyRect):
                assert (r.left - box.left) % cw == 0 and r.top == box.top and r.height == ch, op
            if isinstance(op, CopyRect):
                assert op.src.intersect(box) == op.src and (op.src.left - box.left) % cw == 0
        text = bar.clock_text
        assert np.array_equal(g.framebuffer[box.top:box.bottom, box.left:box.right],
                              bar.font.render(text, 0xDDE3EA, 0x1E2229))
    assert bar.clock_grid.copies > bar.clock_grid.drawn
    s.check()


async def test_button_press_look_and_click_count(guest, shadow):
    b = guest.button
    x, y = b.center
    r = b.screen_rect
    before = guest.framebuffer[r.top:r.bottom, r.left:r.right].copy()
    guest.pointer_position(x, y, 0)
    guest.pointer_button(MouseButton.LEFT, True, L)
    await guest.settle()
    assert b.pressed and b.clicks == 0
    assert not np.array_equal(guest.framebuffer[r.top:r.bottom, r.left:r.right], before)
    guest.pointer_button(MouseButton.LEFT, False, 0)
    await guest.settle()
    assert not b.pressed and b.clicks == 1
    assert np.array_equal(guest.framebuffer[r.top:r.bottom, r.left:r.right], before)
    # press inside, release outside: no click
    guest.pointer_button(MouseButton.LEFT, True, L)
    guest.pointer_position(x, y + 200, L)
    guest.pointer_button(MouseButton.LEFT, False, 0)
    await guest.settle()
    assert b.clicks == 1 and not b.pressed


async def test_drag_moves_window_with_copyrect(guest, shadow):
    p = guest.panel
    old = p.rect
    before = guest.framebuffer[old.top:old.bottom, old.left:old.right].copy()
    guest.pointer_position(p.x + 150, p.y + 10, 0)
    assert guest.cursor.shape.serial == 3  # move cursor over the title bar
    guest.pointer_button(MouseButton.LEFT, True, L)
    guest.pointer_motion(-40, 30, L)
    guest.pointer_motion(-40, 30, L)  # same turn: coalesced
    await guest.settle()
    frames = shadow.take()
    assert len(frames) == 1
    ops = frames[0].ops
    assert ops[0] == CopyRect(old, old.left - 80, old.top + 60)
    assert any(isinstance(op, Fill) for op in ops)
    assert Shadow.area(frames) == 0  # uncovered plain background -> Fill only
    new = p.rect
    assert (new.left, new.top) == (old.left - 80, old.top + 60)
    assert np.array_equal(guest.framebuffer[new.top:new.bottom, new.left:new.right], before)
    guest.pointer_button(MouseButton.LEFT, False, 0)
    guest.pointer_motion(5, 5, 0)
    await guest.settle()
    assert p.rect == new


async def test_drag_over_terminal_and_raise(guest, shadow):
    p, t = guest.panel, guest.terminal
    guest.pointer_position(p.x + 100, p.y + 10, 0)
    guest.pointer_button(MouseButton.LEFT, True, L)
    guest.pointer_position(t.x + 600, p.y + 200, L)  # half onto the terminal
    await guest.settle()
    guest.pointer_button(MouseButton.LEFT, False, 0)
    guest.pointer_position(t.x + 20, t.y + 200, 0)  # visible part of the terminal
    assert guest.cursor.shape.serial == 2  # I-beam over the text
    guest.pointer_button(MouseButton.LEFT, True, L)
    guest.pointer_button(MouseButton.LEFT, False, 0)
    await guest.settle()
    assert guest.desktop.windows.index(t) > guest.desktop.windows.index(p)
    for i in range(t.rows + 3):
        t.write_line(f"behind {i}")  # scrolls while the terminal is on top again
    await guest.settle()
    guest.pointer_position(p.rect.right - 5, p.rect.bottom - 5, 0)  # panel part outside the terminal
    guest.pointer_button(MouseButton.LEFT, True, L)
    guest.pointer_button(MouseButton.LEFT, False, 0)
    t.write_line("obscured scroll")
    await guest.settle()
    assert guest.desktop.windows.index(p) > guest.desktop.windows.index(t)
    assert {c.shape.serial for c in shadow.cursor_events} >= {1, 2, 3}


async def test_relative_pointer_is_clamped(guest):
    guest.pointer_motion(-5000, -5000, 0)
    assert (guest.cursor.x, guest.cursor.y) == (0, 0)
    guest.pointer_motion(99999, 99999, 0)
    assert (guest.cursor.x, guest.cursor.y) == (1023, 767)


async def test_cursor_shapes_have_soft_alpha():
    from spice.guests.builtin.cursor import shapes
    arrow = shapes()["arrow"].pixels
    assert arrow.shape[2] == 4 and 10 <= arrow.shape[1] <= 16 and 16 <= arrow.shape[0] <= 24
    alpha = arrow[:, :, 3]
    assert alpha.max() == 255 and alpha.min() == 0
    assert ((alpha > 0) & (alpha < 255)).any()  # soft edge
    opaque = arrow[alpha == 255][:, :3]
    assert (opaque == 255).all(axis=1).any() and (opaque < 64).all(axis=1).any()  # white fill, dark outline
    assert len({s.serial for s in shapes().values()}) == 3


async def test_usb_device_panel(guest, shadow):
    guest.set_usb_devices(["1d6b:0002 Linux Foundation 2.0 root hub", "0781:5581 SanDisk Ultra"])
    await guest.settle()
    frames = shadow.take()
    p = guest.panel.rect
    assert frames and all(op.rect.intersect(p) == op.rect for op in Shadow.ops(frames))
    guest.set_usb_devices([{"port": "1.3", "speed": "high", "id": "0781:5581", "product": "Ultra",
                            "driver": "storage", "state": "configured", "bytes": 123456, "mounted": True}])
    await guest.settle()
    from spice.guests.builtin.panels import format_row
    row = format_row(guest.panel.rows[0], 50)
    assert len(row) == 50 and row.startswith("1.3  0781:5581 Ultra ") and row.endswith(" storage mounted 121KB")
    guest.set_usb_devices([f"dev {i}" for i in range(20)])
    guest.set_usb_devices([])
    await guest.settle()
    assert guest.panel.rows == []


async def test_async_command_and_ctrl_c(guest, shadow):
    gate = asyncio.Event()

    async def slow(argv, out):
        out("working " + " ".join(argv[1:]))
        await gate.wait()
        out("done")

    guest.shell.register("slow", slow, "waits for the test")
    type_keys(guest, "slow a b\n")
    await asyncio.sleep(0.01)
    assert guest.shell.busy and guest.terminal.lines[-2:] == ["working a b", ""]
    type_keys(guest, "ignored")
    gate.set()
    await guest.settle()
    assert guest.terminal.lines[-3:] == ["working a b", "done", "$ "]
    gate.clear()
    type_keys(guest, "slow\n")
    await asyncio.sleep(0.01)
    ctrl(guest, "c")
    await guest.settle()
    assert guest.terminal.lines[-3:] == ["working ", "^C", "$ "]
    type_keys(guest, "help\n")
    await guest.settle()
    assert any(line.strip().startswith("slow") and "waits for the test" in line for line in guest.terminal.lines)


async def test_random_input_keeps_damage_exact():
    """A long random mix of typing, clicks, drags and output: every frame replays exactly."""
    g = BuiltinGuest(800, 600, clock=lambda: FROZEN)
    s = Shadow(g)
    rnd = random.Random(1234)
    chars = "abcdefghijklmnopqrstuvwxyz ABC0123456789-=;',./\n"
    for _ in range(400):
        k = rnd.random()
        if k < 0.4:
            type_keys(g, rnd.choice(chars))
        elif k < 0.5:
            tap(g, rnd.choice([kb.UP, kb.LEFT, kb.HOME, kb.END, kb.BACKSPACE, kb.ENTER, kb.DELETE]))
        elif k < 0.6:
            g.terminal.write_line("out " * rnd.randint(0, 30))
        elif k < 0.75:
            g.pointer_position(rnd.randrange(800), rnd.randrange(600), g._buttons)
        elif k < 0.85:
            win = rnd.choice([g.panel, g.terminal])
            g.pointer_position(win.x + rnd.randrange(win.w), win.y + rnd.randrange(30), 0)
            g.pointer_button(MouseButton.LEFT, True, L)
            for _ in range(rnd.randint(1, 4)):
                g.pointer_motion(rnd.randint(-200, 200), rnd.randint(-150, 150), L)
                if rnd.random() < 0.5:
                    g.flush()
            g.pointer_button(MouseButton.LEFT, False, 0)
        elif k < 0.88:
            g.pointer_button(rnd.choice([MouseButton.UP, MouseButton.DOWN]), True, 0)
        elif k < 0.9:
            for win in rnd.sample([g.panel, g.terminal], rnd.randint(1, 2)):
                g.desktop.move(win, rnd.randrange(800), rnd.randrange(600))
        elif k < 0.95:
            g.set_usb_devices([f"device {i}" for i in range(rnd.randint(0, 8))])
        else:
            x, y = g.button.center
            g.pointer_position(x, y, 0)
            g.pointer_button(MouseButton.LEFT, True, L)
            g.flush()
            g.pointer_button(MouseButton.LEFT, False, 0)
        if rnd.random() < 0.6:
            g.flush()
        await asyncio.sleep(0)
    await g.settle()
    s.check()
    assert len(s.frames) > 100
    composed = g.desktop.compose(Rect(0, 0, 800, 600))
    assert np.array_equal(composed, g.framebuffer)


async def test_two_windows_moving_in_one_frame():
    g = BuiltinGuest(1600, 900, clock=lambda: FROZEN)
    s = Shadow(g)
    p, t, d = g.panel, g.terminal, g.desktop
    d.move(t, 200, t.y)
    d.move(p, 1100, 300)  # over the terminal's right edge
    g.flush()
    d.move(t, 100, t.y)  # uncovers a strip under the panel's old place ...
    d.move(p, 1250, 300)  # ... while the panel moves clear of the terminal
    g.flush()
    s.check()
    assert np.array_equal(d.compose(Rect(0, 0, *g.size)), g.framebuffer)


def assert_terminal_pixels(g: BuiltinGuest) -> None:
    """Every visible row on screen equals its text rendered with the glyph cache (cursor cell inverted)."""
    t = g.terminal
    rows, top, (cur_row, cur_col) = t._layout()
    for r in range(t.rows):
        i = top + r
        text = (rows[i] if i < len(rows) else "").ljust(t.cols)
        want = t.font.render(text, TERM_FG, TERM_BG).copy()
        if i == cur_row and t.offset == 0:
            cw = t.font.cell_w
            want[:, cur_col * cw:(cur_col + 1) * cw] = t.font.cell(text[cur_col], TERM_BG, TERM_FG)
        assert np.array_equal(row_pixels(g, r), want), (r, text)


async def test_long_input_wraps_and_renders_exactly(guest, shadow):
    t = guest.terminal
    text = "echo " + "".join(chr(97 + i % 26) for i in range(t.cols * 2 + 7))
    type_keys(guest, text)
    await guest.settle()
    assert_terminal_pixels(guest)
    assert t.screen_lines[1:4] == [("$ " + text)[:t.cols], ("$ " + text)[t.cols:2 * t.cols],
                                   ("$ " + text)[2 * t.cols:]]
    for _ in range(t.cols + 3):
        tap(guest, kb.LEFT)
    type_keys(guest, "XY")
    await guest.settle()
    assert_terminal_pixels(guest)
    tap(guest, kb.HOME)
    await guest.settle()
    assert_terminal_pixels(guest)
    tap(guest, kb.ENTER)
    await guest.settle()
    assert_terminal_pixels(guest)
    cut = len(text) - (t.cols + 3)
    typed = text[:cut] + "XY" + text[cut:]
    echoed = typed[5:]
    n = -(-len(echoed) // t.cols)
    assert "".join(t.lines[-1 - n:-1]) == echoed
    for i in range(t.rows + 5):
        t.write_line(f"fill {i}")
    await guest.settle()
    assert_terminal_pixels(guest)
    assert (guest.framebuffer[:, :, 3] == 255).all()


async def test_direct_fill_while_another_window_moves():
    from spice.guests.builtin.window import Window

    g = BuiltinGuest(800, 600, clock=lambda: FROZEN)
    s = Shadow(g)
    canvas = Window("", 0, 24, 800, 576, bg=0, movable=False, titled=False)
    g.desktop.add(canvas)
    g.desktop.raise_(canvas)
    g.desktop.raise_(g.panel)  # the panel sits on the canvas
    g.flush()
    p = g.panel.rect
    g.desktop.move(g.panel, 0, 300)  # pending: its old place still shows the panel
    g.desktop.fill_window(canvas, Rect(p.left, p.top - 24, p.right, p.bottom - 24), 0x123456)
    g.flush()
    s.check()
    assert np.array_equal(g.desktop.compose(Rect(0, 0, 800, 600)), g.framebuffer)


async def test_scroll_in_the_frame_a_window_above_is_removed(guest, shadow):
    from spice.guests.builtin.window import Window

    t = guest.terminal
    for i in range(t.rows):
        t.write_line(f"x{i}")
    note = Window("Note", t.x + 40, t.y + 60, 200, 120)
    guest.desktop.add(note)
    await guest.settle()
    guest.desktop.remove(note)
    t.write_line("scrolls as the note goes")
    await guest.settle()
    assert np.array_equal(guest.desktop.compose(Rect(0, 0, *guest.size)), guest.framebuffer)


async def test_move_in_the_frame_a_window_above_is_removed(guest, shadow):
    from spice.guests.builtin.window import Window

    p = guest.panel
    note = Window("Note", p.x + 40, p.y + 60, 200, 120)
    guest.desktop.add(note)
    await guest.settle()
    guest.desktop.remove(note)
    guest.desktop.move(p, p.x - 200, p.y + 150)
    await guest.settle()
    assert np.array_equal(guest.desktop.compose(Rect(0, 0, *guest.size)), guest.framebuffer)


@pytest.mark.parametrize("seed", range(6))
async def test_compositor_fuzz(seed):
    """Windows appear, vanish, rise, move (several per frame), get filled and scroll: replay stays exact."""
    from spice.guests.builtin.window import Window

    rnd = random.Random(seed)
    g = BuiltinGuest(1280, 960, clock=lambda: FROZEN)
    s = Shadow(g)
    d, notes = g.desktop, []
    for _ in range(400):
        k = rnd.random()
        wins = [w for w in d.windows if w is not g.topbar]
        if k < 0.1 and len(notes) < 3:
            notes.append(Window("Note", rnd.randrange(1100), rnd.randrange(24, 800), rnd.randint(30, 120),
                                rnd.randint(30, 90), bg=rnd.randrange(1 << 24)))
            d.add(notes[-1])
        elif k < 0.17 and notes:
            d.remove(notes.pop(rnd.randrange(len(notes))))
        elif k < 0.3:
            d.raise_(rnd.choice(wins))
        elif k < 0.5:
            for w in rnd.sample(wins, rnd.randint(1, min(2, len(wins)))):
                d.move(w, w.x + rnd.randint(-300, 300), w.y + rnd.randint(-200, 200))
        elif k < 0.62:
            w = rnd.choice(wins)
            x, y = rnd.randrange(w.w), rnd.randrange(w.h)
            d.fill_window(w, Rect(x, y, x + rnd.randint(1, 60), y + rnd.randint(1, 40)), rnd.randrange(1 << 24))
        elif k < 0.8:
            g.terminal.write_line("z" * rnd.randint(0, 90))
        elif k < 0.9:
            type_keys(g, rnd.choice("ab \n"))
        else:
            g.terminal.scroll_view(rnd.randint(-5, 5))
        if rnd.random() < 0.25:
            g.flush()
    g.flush()
    s.check()
    assert np.array_equal(d.compose(Rect(0, 0, 1280, 960)), g.framebuffer)
    assert sum(isinstance(op, CopyRect) for op in Shadow.ops(s.frames)) > 3  # the copy paths ran


def test_framebuffer_changes_only_when_a_frame_is_made():
    """Fills and scrolls drawn straight to the screen between frames reach the framebuffer with the
    next frame, not before: between frames it is the last frame (the display pipeline reads it directly)."""
    g = BuiltinGuest(800, 600, clock=lambda: FROZEN)
    s = Shadow(g)
    t = g.terminal
    for i in range(t.rows + 3):
        t.write_line(f"line {i}")
    g.flush()
    before = g.framebuffer.copy()
    p = g.panel
    g.desktop.fill_window(p, Rect(4, 30, 60, 60), 0x123456)  # unobscured: a direct Fill op
    t.write_line("one more")
    t.sync()  # the scroll is recorded now (a CopyRect straight to the screen)
    assert np.array_equal(g.framebuffer, before)
    frame = g.flush()
    assert {type(op) for op in frame.ops} >= {Fill, CopyRect}
    assert not np.array_equal(g.framebuffer, before)
    s.check()
    assert np.array_equal(g.desktop.compose(Rect(0, 0, 800, 600)), g.framebuffer)


def test_clock_text_matches_strftime_across_minutes():
    from spice.guests.builtin.guest import clock_text

    t = datetime(2026, 12, 31, 23, 58, 57)
    for _ in range(200):
        assert clock_text(t) == t.strftime("%a %Y-%m-%d %H:%M:%S")
        t += timedelta(seconds=1)


def test_terminal_sync_without_changes_draws_nothing_but_redraws_an_invalidated_grid():
    g = BuiltinGuest(640, 480, clock=lambda: FROZEN)
    t = g.terminal
    t.type_text("echo hi")
    g.flush()
    before = g.framebuffer.copy()
    drawn = t.grid.drawn + t.grid.copies
    t.sync()
    assert t.grid.drawn + t.grid.copies == drawn  # the model did not change: no cell drawn
    t.grid.invalidate()  # the buffer under the grid was redrawn by other means
    a = t.area
    t.buf[a.top:a.bottom, a.left:a.right] = 0
    t.sync()
    assert t.grid.drawn + t.grid.copies > drawn
    g.desktop.schedule()
    t.invalidate(Rect(0, 0, t.w, t.h))
    g.flush()
    box = (slice(t.y + a.top, t.y + a.bottom), slice(t.x + a.left, t.x + a.right))
    assert np.array_equal(g.framebuffer[box], before[box])
