"""PC/AT set-1 scancodes -> characters and key names (US layout), modifiers, lock LEDs, typematic repeat."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

E0 = 0x100
LED_SCROLL, LED_NUM, LED_CAPS = 1, 2, 4

# make code -> (plain, shifted)
_CHARS: dict[int, tuple[str, str]] = {}
for _start, _plain, _shifted in ((0x02, "1234567890-=", "!@#$%^&*()_+"), (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
                                 (0x1E, "asdfghjkl;'`", 'ASDFGHJKL:"~'), (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?")):
    for _i, (_a, _b) in enumerate(zip(_plain, _shifted, strict=True)):
        _CHARS[_start + _i] = (_a, _b)
_CHARS[0x39] = (" ", " ")
_CHARS[0x37] = ("*", "*")  # keypad
_CHARS[0x4A] = ("-", "-")
_CHARS[0x4E] = ("+", "+")
_CHARS[E0 | 0x35] = ("/", "/")

_NAMES = {0x01: "Escape", 0x0E: "Backspace", 0x0F: "Tab", 0x1C: "Enter", E0 | 0x1C: "Enter",
          E0 | 0x48: "Up", E0 | 0x50: "Down", E0 | 0x4B: "Left", E0 | 0x4D: "Right",
          E0 | 0x47: "Home", E0 | 0x4F: "End", E0 | 0x49: "PageUp", E0 | 0x51: "PageDown",
          E0 | 0x52: "Insert", E0 | 0x53: "Delete"}
# keypad: Num Lock on -> digit, off -> navigation
_KEYPAD = {0x47: ("7", "Home"), 0x48: ("8", "Up"), 0x49: ("9", "PageUp"), 0x4B: ("4", "Left"),
           0x4C: ("5", ""), 0x4D: ("6", "Right"), 0x4F: ("1", "End"), 0x50: ("2", "Down"),
           0x51: ("3", "PageDown"), 0x52: ("0", "Insert"), 0x53: (".", "Delete")}

SHIFT = {0x2A, 0x36}
CTRL = {0x1D, E0 | 0x1D}
ALT = {0x38, E0 | 0x38}
LOCKS = {0x3A: LED_CAPS, 0x45: LED_NUM, 0x46: LED_SCROLL}
# also ignored for typing and repeat: GUI/menu keys and the "fake shift" codes E0 2A / E0 36
MODIFIERS = SHIFT | CTRL | ALT | set(LOCKS) | {E0 | 0x5B, E0 | 0x5C, E0 | 0x5D, E0 | 0x2A, E0 | 0x36}


class Keyboard:
    """Tracks held keys; calls ``on_key(key)`` with a character or a name such as ``"C-c"``."""

    def __init__(self, on_key: Callable[[str], None], on_leds: Callable[[int], None] = lambda leds: None,
                 repeat_delay: float = 0.5, repeat_rate: float = 30.0) -> None:
        self.on_key = on_key
        self.on_leds = on_leds
        self.repeat_delay = repeat_delay
        self.repeat_interval = 1.0 / repeat_rate
        self.held: set[int] = set()
        self.leds = 0
        self._repeat: asyncio.TimerHandle | None = None
        self._repeat_code = 0

    @property
    def shift(self) -> bool:
        return not self.held.isdisjoint(SHIFT)

    @property
    def ctrl(self) -> bool:
        return not self.held.isdisjoint(CTRL)

    @property
    def alt(self) -> bool:
        return not self.held.isdisjoint(ALT)

    def set_leds(self, leds: int) -> None:
        """Set the lock state (e.g. from the client's keyboard modifiers)."""
        leds &= LED_SCROLL | LED_NUM | LED_CAPS
        if leds != self.leds:
            self.leds = leds
            self.on_leds(leds)

    def event(self, code: int, pressed: bool) -> None:
        code &= 0x17F  # a set-1 break code (0x80 bit) is the same key
        if not pressed:
            self.held.discard(code)
            if code == self._repeat_code:
                self._stop_repeat()
            return
        first = code not in self.held
        self.held.add(code)
        if code in LOCKS:
            if first:
                self.set_leds(self.leds ^ LOCKS[code])
            return
        if code in MODIFIERS:
            return
        self._stop_repeat()
        self._press(code)
        self._start_repeat(code)

    def release_all(self) -> None:
        self.held.clear()
        self._stop_repeat()

    def translate(self, code: int) -> str:
        """The key a press of ``code`` means now ("" if none)."""
        if code in _KEYPAD:
            digit, nav = _KEYPAD[code]
            return digit if self.leds & LED_NUM else nav
        if code in _NAMES:
            return _NAMES[code]
        pair = _CHARS.get(code)
        if pair is None:
            return ""
        ch = pair[1] if self.shift else pair[0]
        if ch.isalpha() and self.leds & LED_CAPS:
            ch = ch.swapcase()
        if self.ctrl:
            return "C-" + pair[0] if pair[0].isalpha() else ""
        if self.alt:
            return ""
        return ch

    def _press(self, code: int) -> None:
        key = self.translate(code)
        if key:
            self.on_key(key)

    # -- typematic repeat
    def _start_repeat(self, code: int) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._repeat_code = code
        self._repeat = loop.call_later(self.repeat_delay, self._tick, code)

    def _tick(self, code: int) -> None:
        if code not in self.held or code != self._repeat_code:
            return
        self._press(code)
        self._repeat = asyncio.get_running_loop().call_later(self.repeat_interval, self._tick, code)

    def _stop_repeat(self) -> None:
        if self._repeat is not None:
            self._repeat.cancel()
            self._repeat = None
        self._repeat_code = 0
