"""Capability bit sets: cap *n* lives in u32 word ``n // 32``, bit ``n % 32``."""

from __future__ import annotations

import struct
from collections.abc import Iterable

MAX_CAP_WORDS = 1024


def caps_to_words(caps: Iterable[int]) -> list[int]:
    """Encode a set of capability numbers as the minimal list of u32 words (empty set -> [])."""
    caps = list(caps)
    if not caps:
        return []
    words = [0] * (max(caps) // 32 + 1)
    for c in caps:
        words[c // 32] |= 1 << (c % 32)
    return words


def words_to_caps(words: Iterable[int]) -> frozenset[int]:
    """Decode u32 words into the set of capability numbers."""
    out = set()
    for i, w in enumerate(words):
        for bit in range(32):
            if w >> bit & 1:
                out.add(i * 32 + bit)
    return frozenset(out)


def pack_words(words: list[int]) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)


def unpack_words(data: bytes | memoryview, count: int, offset: int = 0) -> list[int]:
    return list(struct.unpack_from(f"<{count}I", data, offset))
