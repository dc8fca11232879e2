"""Inputs channel (type 3) messages, spice.md §7."""

from __future__ import annotations

import enum
import struct

import construct as c


class InputsMsg(enum.IntEnum):
    INIT = 101
    KEY_MODIFIERS = 102
    MOUSE_MOTION_ACK = 111


class InputsMsgc(enum.IntEnum):
    KEY_DOWN = 101
    KEY_UP = 102
    KEY_MODIFIERS = 103
    KEY_SCANCODE = 104
    MOUSE_MOTION = 111
    MOUSE_POSITION = 112
    MOUSE_PRESS = 113
    MOUSE_RELEASE = 114


class InputsCap(enum.IntEnum):
    KEY_SCANCODE = 0


MOTION_ACK_BUNCH = 4

KeyCode = c.Struct("code" / c.Int32ul)
KeyModifiers = c.Struct("modifiers" / c.Int16ul)
MouseMotion = c.Struct("dx" / c.Int32sl, "dy" / c.Int32sl, "buttons_state" / c.Int16ul)
MousePosition = c.Struct("x" / c.Int32ul, "y" / c.Int32ul, "buttons_state" / c.Int16ul, "display_id" / c.Int8ul)
MouseButtonMsg = c.Struct("button" / c.Int8ul, "buttons_state" / c.Int16ul)

# hot path (one message per pointer event)
MOTION = struct.Struct("<iiH")
POSITION = struct.Struct("<IIHB")
BUTTON = struct.Struct("<BH")
U32 = struct.Struct("<I")
U16 = struct.Struct("<H")


class ScancodeDecoder:
    """Turns set-1 scancode bytes into ``(code, pressed)`` with ``code | 0x100`` for E0 keys.

    Feeds KEY_DOWN/KEY_UP codes (u32, low byte first, stops at the first 0) and KEY_SCANCODE
    byte strings alike.  E1 (Pause) sequences and invalid prefixes are dropped.
    """

    def __init__(self) -> None:
        self._prefix = 0
        self._e1_left = 0

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        out: list[tuple[int, bool]] = []
        for b in data:
            if self._e1_left:
                self._e1_left -= 1
                continue
            if b == 0xE0:
                self._prefix = 0x100
                continue
            if b == 0xE1:
                self._e1_left = 2
                self._prefix = 0
                continue
            make = b & 0x7F
            if make == 0:
                self._prefix = 0
                continue
            out.append((make | self._prefix, not b & 0x80))
            self._prefix = 0
        return out

    def feed_code(self, code: int) -> list[tuple[int, bool]]:
        raw = U32.pack(code).split(b"\0", 1)[0]
        self._prefix = 0
        return self.feed(raw)
