"""usbredir device filter rules, exactly as libusbredirparser's usbredirfilter defines them.

* :func:`parse_rules` (``usbredirfilter_string_to_rules``): ``"class,vendor,product,bcd,allow|..."``;
  values parsed like C ``strtol(s, &end, 0)`` (decimal, ``0x`` hex, leading ``0`` octal, sign,
  leading white space), ``-1`` = any; separators behave like ``strtok`` (runs collapse, empty rules
  skipped); exactly 5 fields per rule; raises ``ValueError`` on any invalid rule.
* :func:`format_rules` (``usbredirfilter_rules_to_string``): ``0x%02x``/``0x%04x``/``-1``, allow 0/1.
* :func:`check` (``usbredirfilter_check``): device class pass (skipped for class 0x00/0xef), one
  pass per interface (non-boot HID interfaces skipped on multi-interface devices unless
  ``DONT_SKIP_NON_BOOT_HID``; all skipped -> re-check without skipping); first matching rule
  decides; nothing matched -> ``NO_MATCH`` unless ``DEFAULT_ALLOW``.  Returns a :class:`Verdict`.
* :func:`matches` (first matching rule of a single class/vid/pid/bcd).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["FilterRule", "Verdict", "DEFAULT_ALLOW", "DONT_SKIP_NON_BOOT_HID", "parse_rules", "format_rules",
           "check", "verify", "strtol"]

DEFAULT_ALLOW = 0x01
DONT_SKIP_NON_BOOT_HID = 0x02


class FilterRule(NamedTuple):
    device_class: int = -1
    vendor_id: int = -1
    product_id: int = -1
    device_version_bcd: int = -1
    allow: bool = True


class Verdict(enum.IntEnum):
    """``usbredirfilter_check`` results (0 / -errno)."""

    ALLOW = 0
    DENY = -1  # -EPERM: a rule denied it
    NO_MATCH = -2  # -ENOENT: no rule matched
    INVALID = -22  # -EINVAL: invalid rules


_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")
_LONG_MAX = (1 << 63) - 1


def strtol(token: str) -> int:
    """C ``strtol(token, &end, 0)`` requiring ``*end == 0``, then stored in a C ``int``."""
    m = _STRTOL.match(token)
    if m is None:
        raise ValueError(f"invalid number {token!r}")
    sign, digits = m.groups()
    value = int(digits, 0) if not digits.startswith("0") or len(digits) == 1 or digits[1] in "xX" \
        else int(digits, 8)
    if sign == "-":
        value = -value
    value = max(min(value, _LONG_MAX), -_LONG_MAX - 1)  # strtol saturates (ERANGE)
    value &= 0xFFFFFFFF  # long -> int conversion keeps the low 32 bits
    return value - (1 << 32) if value & 0x80000000 else value


def verify(rules: Sequence[FilterRule]) -> bool:
    return all(
        -1 <= r.device_class <= 255 and -1 <= r.vendor_id <= 65535 and -1 <= r.product_id <= 65535
        and -1 <= r.device_version_bcd <= 65535
        for r in rules
    )


def _strtok(text: str, seps: str) -> list[str]:
    if not seps:
        raise ValueError("empty separator")
    return [t for t in re.split("[" + re.escape(seps) + "]", text) if t]


def parse_rules(text: str, token_sep: str = ",", rule_sep: str = "|") -> list[FilterRule]:
    """Parse a filter string; ``ValueError`` if any rule is invalid."""
    rules = []
    for rule in _strtok(text, rule_sep):
        tokens = _strtok(rule, token_sep)
        if len(tokens) != 5:
            raise ValueError(f"filter rule {rule!r} does not have 5 fields")
        values = [strtol(t) for t in tokens]
        r = FilterRule(*values[:4], allow=values[4] != 0)
        if not verify([r]):
            raise ValueError(f"filter rule {rule!r} out of range")
        rules.append(r)
    return rules


def format_rules(rules: Sequence[FilterRule], token_sep: str = ",", rule_sep: str = "|") -> str:
    if not verify(rules):
        raise ValueError("invalid filter rules")

    def f(v: int, width: int) -> str:
        return "-1" if v == -1 else f"0x{v:0{width}x}"

    return rule_sep[:1].join(
        token_sep[:1].join((f(r.device_class, 2), f(r.vendor_id, 4), f(r.product_id, 4),
                            f(r.device_version_bcd, 4), "1" if r.allow else "0"))
        for r in rules
    )


def _check1(rules: Sequence[FilterRule], cls: int, vid: int, pid: int, bcd: int, default_allow: bool) -> Verdict:
    for r in rules:
        if (r.device_class in (-1, cls) and r.vendor_id in (-1, vid) and r.product_id in (-1, pid)
                and r.device_version_bcd in (-1, bcd)):
            return Verdict.ALLOW if r.allow else Verdict.DENY
    return Verdict.ALLOW if default_allow else Verdict.NO_MATCH


def check(
    rules: Sequence[FilterRule],
    device_class: int,
    device_subclass: int,
    device_protocol: int,
    interface_class: Sequence[int],
    interface_subclass: Sequence[int],
    interface_protocol: Sequence[int],
    vendor_id: int,
    product_id: int,
    device_version_bcd: int,
    flags: int = 0,
) -> Verdict:
    """``usbredirfilter_check``: may this device (and each of its interfaces) be redirected?"""
    if not verify(rules):
        return Verdict.INVALID
    default_allow = bool(flags & DEFAULT_ALLOW)
    ids = (vendor_id, product_id, device_version_bcd)
    if device_class not in (0x00, 0xEF):
        v = _check1(rules, device_class, *ids, default_allow)
        if v:
            return v
    count = len(interface_class)
    skipped = 0
    for i in range(count):
        if (not flags & DONT_SKIP_NON_BOOT_HID and count > 1 and interface_class[i] == 0x03
                and interface_subclass[i] == 0x00 and interface_protocol[i] == 0x00):
            skipped += 1
            continue
        v = _check1(rules, interface_class[i], *ids, default_allow)
        if v:
            return v
    if count > 0 and skipped == count:
        return check(rules, device_class, device_subclass, device_protocol, interface_class,
                     interface_subclass, interface_protocol, vendor_id, product_id, device_version_bcd,
                     flags | DONT_SKIP_NON_BOOT_HID)
    return Verdict.ALLOW
