"""usbredir/filter.py against libusbredirparser's usbredirfilter (via ctypes): parse, format, check."""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usbredir import filter as uf

try:
    LIB = ctypes.CDLL("libusbredirparser.so.1")
except OSError:  # pragma: no cover
    LIB = None
pytestmark = pytest.mark.skipif(LIB is None, reason="needs libusbredirparser")


class CRule(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("device_class", "vendor_id", "product_id", "device_version_bcd", "allow")]


def c_parse(text: str, tsep: str = ",", rsep: str = "|"):
    rules = ctypes.POINTER(CRule)()
    count = ctypes.c_int()
    r = LIB.usbredirfilter_string_to_rules(text.encode(), tsep.encode(), rsep.encode(), ctypes.byref(rules),
                                           ctypes.byref(count))
    if r:
        return None
    return [uf.FilterRule(rules[i].device_class, rules[i].vendor_id, rules[i].product_id,
                          rules[i].device_version_bcd, rules[i].allow != 0) for i in range(count.value)]


def c_format(rules) -> str:
    arr = (CRule * max(1, len(rules)))(*[CRule(r.device_class, r.vendor_id, r.product_id, r.device_version_bcd,
                                               int(r.allow)) for r in rules])
    LIB.usbredirfilter_rules_to_string.restype = ctypes.c_void_p
    p = LIB.usbredirfilter_rules_to_string(arr, len(rules), b",", b"|")
    s = ctypes.string_at(p).decode()
    ctypes.CDLL(None).free(ctypes.c_void_p(p))
    return s


def c_check(rules, dev, ifaces, flags) -> int:
    arr = (CRule * max(1, len(rules)))(*[CRule(r.device_class, r.vendor_id, r.product_id, r.device_version_bcd,
                                               int(r.allow)) for r in rules])
    n = len(ifaces)
    cls = (ctypes.c_uint8 * max(1, n))(*[i[0] for i in ifaces])
    sub = (ctypes.c_uint8 * max(1, n))(*[i[1] for i in ifaces])
    proto = (ctypes.c_uint8 * max(1, n))(*[i[2] for i in ifaces])
    f = LIB.usbredirfilter_check
    f.argtypes = [ctypes.POINTER(CRule), ctypes.c_int, ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint8,
                  ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_uint8),
                  ctypes.c_int, ctypes.c_uint16, ctypes.c_uint16, ctypes.c_uint16, ctypes.c_int]
    return f(arr, len(rules), dev[0], dev[1], dev[2], cls, sub, proto, n, dev[3], dev[4], dev[5], flags)


def py_parse(text: str, tsep: str = ",", rsep: str = "|"):
    try:
        return uf.parse_rules(text, tsep, rsep)
    except ValueError:
        return None


EXAMPLES = [
    "0x03,-1,-1,-1,0|-1,-1,-1,-1,1", "-1,0x1234,0x5678,-1,1", "||3,0x0,00012,-1,1||-1,-0x1,-1,-1,0|",
    "4294967295,-1,-1,-1,1", " 3,-1,-1,-1,1", "3 ,-1,-1,-1,1", "08,-1,-1,-1,1", "0x,-1,-1,-1,1", "+3,-1,-1,-1,1",
    "", "|", "99999999999999999999,-1,-1,-1,1", "256,-1,-1,-1,1", "-2,-1,-1,-1,1", "1,2,3,4", "1,2,3,4,5,6",
    "1,,2,3,4,5", "0X1F,0xffff,65535,0,7", "-0,-00,0x0,0,0", "1,2,3,4,5|x", "\t7,8,9,10,11",
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_parse_and_format_match_c(text):
    ours = py_parse(text)
    assert ours == c_parse(text)
    if ours is not None:
        assert uf.format_rules(ours) == c_format(ours)
        assert uf.parse_rules(uf.format_rules(ours)) == ours


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789xXaAfF+-, |\t:", max_size=40))
def test_random_filter_strings_match_c(text):
    assert py_parse(text) == c_parse(text)
    assert py_parse(text, ":", "|") == c_parse(text, ":", "|")


rule_st = st.builds(uf.FilterRule, st.sampled_from([-1, 0, 3, 8, 9, 0xFF]), st.sampled_from([-1, 0x1234, 0x46F4]),
                    st.sampled_from([-1, 0x5678, 1]), st.sampled_from([-1, 0x100]), st.booleans())
iface_st = st.tuples(st.sampled_from([3, 8, 1, 0xFF]), st.sampled_from([0, 1, 6]), st.sampled_from([0, 1, 0x50]))
dev_st = st.tuples(st.sampled_from([0, 0xEF, 3, 9, 0xFF]), st.just(0), st.just(0), st.sampled_from([0x1234, 0x46F4]),
                   st.sampled_from([0x5678, 1]), st.sampled_from([0x100, 0x200]))


@settings(max_examples=400, deadline=None)
@given(st.lists(rule_st, max_size=5), dev_st, st.lists(iface_st, max_size=4), st.sampled_from([0, 1, 2, 3]))
def test_check_matches_c(rules, dev, ifaces, flags):
    ours = uf.check(rules, dev[0], dev[1], dev[2], [i[0] for i in ifaces], [i[1] for i in ifaces],
                    [i[2] for i in ifaces], dev[3], dev[4], dev[5], flags)
    assert int(ours) == {0: 0, -1: -1, -2: -2, -22: -22}[c_check(rules, dev, ifaces, flags)]


def test_check_semantics():
    block_hid = uf.parse_rules("0x03,-1,-1,-1,0|-1,-1,-1,-1,1")
    # a keyboard (interface class 3) is blocked, a mass storage device allowed
    assert uf.check(block_hid, 0, 0, 0, [3], [1], [1], 1, 2, 3) == uf.Verdict.DENY
    assert uf.check(block_hid, 0, 0, 0, [8], [6], [0x50], 1, 2, 3) == uf.Verdict.ALLOW
    # non-boot HID interface on a multi-interface device is skipped
    assert uf.check(block_hid, 0, 0, 0, [1, 3], [1, 0], [0, 0], 1, 2, 3) == uf.Verdict.ALLOW
    only = uf.parse_rules("-1,0x1234,0x5678,-1,1")
    assert uf.check(only, 0, 0, 0, [8], [6], [0x50], 0x1234, 0x5679, 1) == uf.Verdict.NO_MATCH
    assert uf.check(only, 0, 0, 0, [8], [6], [0x50], 0x1234, 0x5679, 1, uf.DEFAULT_ALLOW) == uf.Verdict.ALLOW
