"""Cursor channel (type 4) messages, spice.md §8."""

from __future__ import annotations

import enum
import struct

import construct as c


class CursorMsg(enum.IntEnum):
    INIT = 101
    RESET = 102
    SET = 103
    MOVE = 104
    HIDE = 105
    TRAIL = 106
    INVAL_ONE = 107
    INVAL_ALL = 108


class CursorFlags(enum.IntFlag):
    NONE = 1
    CACHE_ME = 2
    FROM_CACHE = 4


class CursorType(enum.IntEnum):
    ALPHA = 0
    MONO = 1


Point16 = c.Struct("x" / c.Int16sl, "y" / c.Int16sl)
CursorHeader = c.Struct(
    "unique" / c.Int64ul,
    "type" / c.Int8ul,
    "width" / c.Int16ul,
    "height" / c.Int16ul,
    "hot_spot_x" / c.Int16ul,
    "hot_spot_y" / c.Int16ul,
)
CursorInit = c.Struct("position" / Point16, "trail_length" / c.Int16ul, "trail_frequency" / c.Int16ul,
                      "visible" / c.Int8ul)  # + Cursor
CursorSet = c.Struct("position" / Point16, "visible" / c.Int8ul)  # + Cursor

MOVE = struct.Struct("<hh")


def _clamp16(v: int) -> int:
    return max(-32768, min(32767, v))


def build_cursor(unique: int | None, width: int = 0, height: int = 0, hot_x: int = 0, hot_y: int = 0,
                 bgra: bytes = b"") -> bytes:
    """A Cursor: ``unique`` None -> flags NONE; else an ALPHA cursor of ``width*height*4`` BGRA bytes."""
    if unique is None:
        return struct.pack("<H", CursorFlags.NONE)
    return struct.pack("<H", 0) + CursorHeader.build(dict(unique=unique, type=CursorType.ALPHA, width=width,
                                                          height=height, hot_spot_x=hot_x,
                                                          hot_spot_y=hot_y)) + bgra


def build_init(x: int, y: int, visible: bool, cursor: bytes) -> bytes:
    return CursorInit.build(dict(position=dict(x=_clamp16(x), y=_clamp16(y)), trail_length=0, trail_frequency=0,
                                 visible=int(visible))) + cursor


def build_set(x: int, y: int, visible: bool, cursor: bytes) -> bytes:
    return CursorSet.build(dict(position=dict(x=_clamp16(x), y=_clamp16(y)), visible=int(visible))) + cursor


def build_move(x: int, y: int) -> bytes:
    return MOVE.pack(_clamp16(x), _clamp16(y))
