# heapsize: 40K
"""edgepoi.cbor on CPython and MicroPython: RFC 8949 Appendix A vectors, round trips, errors and offsets.

The test vectors are the comment lines at the end of this file, read from it at run time one line at a
time, so they cost no heap on a 40K MicroPython (32K and 36K pass too, 30K and 34K not: which does depends
on where earlier tests leave holes). The RFC 8949 Appendix A vectors were written from the RFC
(tests/test_cbor.py also checks every line against cbor2).
"""
import gc

from edgepoi.cbor import CBORError, CBORTag, dumps, loads

import checks

SMALL_HEAP = checks.is_micropython()

H = bytes.fromhex
NAMES = {"H": H, "T": CBORTag, "NAN": float("nan"), "INF": float("inf")}


def rows(kind):
    """(bytes, rest of line) for each vector line starting with kind ("#= ", "#~ " or "#! ")."""
    with open(__file__) as f:
        for line in f:
            if line.startswith(kind):
                if SMALL_HEAP:
                    gc.collect()  # keeps a 32K heap unfragmented for eval() and the decoder
                h, _, rest = line[3:].rstrip().partition(" ")
                yield H("" if h == "." else h), rest


def same(a, b):
    if type(a) is float:
        return type(b) is float and ((a != a and b != b) or (a == b and str(a) == str(b)))
    return type(a) is type(b) and a == b


def test_deterministic_vectors_encode_byte_for_byte_and_decode_back():
    for b, expr in rows("#= "):
        v = eval(expr, NAMES)
        assert dumps(v) == b, (expr, dumps(v).hex())
        assert same(loads(b), v) and same(loads(b, canonical=True), v), expr


def test_rfc_non_deterministic_examples_decode_but_fail_canonical():
    for b, expr in rows("#~ "):
        assert same(loads(b), eval(expr, NAMES)), expr
        checks.raises(CBORError, loads, b, canonical=True)


def test_bad_input_raises_cbor_error_naming_the_offset():
    for b, rest in rows("#! "):
        off, _, kw = rest.partition(" ")
        kw = eval("dict(%s)" % kw)
        if kw.get("canonical") and b != H("a202000100"):
            loads(b)  # well-formed: only canonical mode rejects it
        e = checks.raises(CBORError, loads, b, **kw)
        assert e.offset == int(off) and ("offset " + off) in str(e), (b, kw, str(e))


def test_round_trips_and_limits_that_are_just_met():
    gc.collect()
    big = 2 ** 200 + 12345
    v = {"dev": "esp32-01", "seq": 4294967296, "t": [21.5, -0.5, 1e-7, 3.0e38], "ok": True, 7: None,
         "big": [big, -big, 2 ** 64, -2 ** 64 - 1], "s": "\u00fc\u6c34\U00010151" * 30, 256: {6: 1},
         "tag": CBORTag(18, [b"\xa1\x01\x26", {}, b"\x00\xff" * 40, b"\x01" * 64])}
    b = dumps(v)
    assert loads(b) == v and loads(b, canonical=True) == v and dumps(loads(b)) == b
    assert loads(bytearray(b)) == v and loads(memoryview(b)) == v
    x = 0
    for _ in range(32):
        x = [x]
    assert loads(H("81" * 32 + "00")) == x
    assert loads(H("83010203"), max_items=4, max_length=4, max_depth=1) == [1, 2, 3]
    assert dumps(bytearray(b"ab")) == dumps(memoryview(b"ab")) == dumps(b"ab") == H("426162")
    assert dumps((1, (2,))) == dumps([1, [2]]) == H("82018102")


def test_every_truncation_and_byte_flip_raises_only_cbor_error():
    b = dumps({"a": [1, -300, 2.5, 1.1, b"xy", "\u00fc", None], "b": CBORTag(7, 2 ** 70), 9: {}})
    for n in range(len(b)):
        assert 0 <= checks.raises(CBORError, loads, b[:n]).offset <= n
    for i in range(len(b)):
        for x in (0x01, 0x1F, 0x80, 0xFF):
            m = bytearray(b)
            m[i] ^= x
            try:
                loads(m)
            except CBORError as e:
                assert 0 <= e.offset <= len(b)


def test_every_half_float_decodes_and_re_encodes_to_the_same_bytes():
    for h in range(0x10000):
        b = bytes((0xF9, h >> 8, h & 0xFF))
        f = loads(b)
        assert dumps(f) == (b if f == f else H("f97e00")), b


def test_dumps_rejects_what_it_cannot_encode_and_the_types_behave():
    cyclic = []
    cyclic.append(cyclic)
    for bad in (object(), {1}, CBORTag(-1, 0), CBORTag("x", 0), CBORTag(2 ** 64, 0), [object()], cyclic):
        checks.raises(CBORError, dumps, bad)
    for bad in ("00", None, 0):
        assert checks.raises(CBORError, loads, bad).offset == 0
    assert isinstance(CBORError("x", 1), ValueError) and CBORError("x", 1).offset == 1
    assert CBORTag(1, [2]) == CBORTag(1, [2]) and CBORTag(1, 2) != CBORTag(2, 2) and CBORTag(1, 2) != 2
    assert repr(CBORTag(18, "x")) == "CBORTag(18, 'x')"
    assert loads(dumps({CBORTag(1, "a"): 1})) == {CBORTag(1, "a"): 1}

# Vectors. "#= hex python-value": deterministic encodings, encoded byte for byte and decoded back: the RFC
# 8949 Appendix A items whose encoding there is the deterministic one, then a few of edgepoi's own (map
# keys sort bytewise, not length-first; half subnormals; bignums).
#= 00 0
#= 01 1
#= 0a 10
#= 17 23
#= 1818 24
#= 1819 25
#= 1864 100
#= 1903e8 1000
#= 1a000f4240 1000000
#= 1b000000e8d4a51000 1000000000000
#= 1bffffffffffffffff 18446744073709551615
#= c249010000000000000000 18446744073709551616
#= 3bffffffffffffffff -18446744073709551616
#= c349010000000000000000 -18446744073709551617
#= 20 -1
#= 29 -10
#= 3863 -100
#= 3903e7 -1000
#= f90000 0.0
#= f98000 -0.0
#= f93c00 1.0
#= fb3ff199999999999a 1.1
#= f93e00 1.5
#= f97bff 65504.0
#= fa47c35000 100000.0
#= fa7f7fffff 3.4028234663852886e+38
#= fb7e37e43c8800759c 1.0e+300
#= f90001 5.960464477539063e-8
#= f90400 0.00006103515625
#= f9c400 -4.0
#= fbc010666666666666 -4.1
#= f97c00 INF
#= f97e00 NAN
#= f9fc00 -INF
#= f4 False
#= f5 True
#= f6 None
#= c074323031332d30332d32315432303a30343a30305a T(0, "2013-03-21T20:04:00Z")
#= c11a514b67b0 T(1, 1363896240)
#= c1fb41d452d9ec200000 T(1, 1363896240.5)
#= d74401020304 T(23, H("01020304"))
#= d818456449455446 T(24, H("6449455446"))
#= d82076687474703a2f2f7777772e6578616d706c652e636f6d T(32, "http://www.example.com")
#= 40 b""
#= 4401020304 H("01020304")
#= 60 ""
#= 6161 "a"
#= 6449455446 "IETF"
#= 62225c "\"\\"
#= 62c3bc "\u00fc"
#= 63e6b0b4 "\u6c34"
#= 64f0908591 "\U00010151"
#= 80 []
#= 83010203 [1, 2, 3]
#= 8301820203820405 [1, [2, 3], [4, 5]]
#= 98190102030405060708090a0b0c0d0e0f101112131415161718181819 list(range(1, 26))
#= a0 {}
#= a201020304 {1: 2, 3: 4}
#= a26161016162820203 {"a": 1, "b": [2, 3]}
#= 826161a161626163 ["a", {"b": "c"}]
#= a56161614161626142616361436164614461656145 {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}
#= a50a05181804200361620262616101 {"aa": 1, "b": 2, -1: 3, 24: 4, 10: 5}
#= a2f40af5f6 {False: 10, True: None}
#= fa33000000 2.0 ** -24 / 2
#= f90003 3 * 2.0 ** -24
#= f98001 -(2.0 ** -24)
#= f97bff 65504.0
#= fa477ff000 65520.0
#= c24a010000000000000000ff 2 ** 72 + 255
#= c3581e010000000000000000000000000000000000000000000000000000000000 -(2 ** 232) - 1
# "#~ hex python-value": Appendix A items in a valid but not deterministic form: they decode, and
# canonical=True rejects them.
#~ fa7f800000 INF
#~ fa7fc00000 NAN
#~ faff800000 -INF
#~ fb7ff0000000000000 INF
#~ fb7ff8000000000000 NAN
#~ fbfff0000000000000 -INF
#~ 5f42010243030405ff H("0102030405")
#~ 7f657374726561646d696e67ff "streaming"
#~ 9fff []
#~ 9f018202039f0405ffff [1, [2, 3], [4, 5]]
#~ 9f01820203820405ff [1, [2, 3], [4, 5]]
#~ 83018202039f0405ff [1, [2, 3], [4, 5]]
#~ 83019f0203ff820405 [1, [2, 3], [4, 5]]
#~ 9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff list(range(1, 26))
#~ bf61610161629f0203ffff {"a": 1, "b": [2, 3]}
#~ 826161bf61626163ff ["a", {"b": "c"}]
#~ bf6346756ef563416d7421ff {"Fun": True, "Amt": -2}
# "#! hex offset [loads keyword arguments]": input that must raise CBORError naming that byte offset
# ("." is empty input). Malformed, truncated, unsupported, over a limit (5a, 9b, bb: length bombs;
# 81 x33 and 9f x40: depth bombs), and, with canonical=1, well-formed but not deterministic
# (RFC 8949 section 4.2.1).
#! . 0
#! 18 0
#! 1901 0
#! 820118 2
#! 1c 0
#! 1d 0
#! 1e 0
#! 3f 0
#! df00 0
#! 81fc 1
#! ff 0
#! a201ff0203 2
#! 9f01 2
#! bf01 2
#! 5f01ff 1
#! 5f6161ff 1
#! 5f5f4100ffff 1
#! 62c328 0
#! 7f62c328ff 1
#! 5affffffff 0
#! 9bffffffffffffffff 0
#! bbffffffffffffffff00 0
#! 7b7fffffffffffffff41 0
#! f7 0
#! f0 0
#! f818 0
#! f8ff 0
#! 0000 1
#! a20101f502 3
#! a2010101f6 3
#! a18001 1
#! a1a00101 1
#! a1c181010102 1
#! c201 0
#! c36161 0
#! fa0000 0
#! fb00 0
#! c0 1
#! 818100 1 max_depth=1
#! c1c100 1 max_depth=1
#! 83010203 0 max_items=3
#! 9f00000000ff 0 max_items=4
#! a201020304 0 max_items=4
#! 94000102030405060708090a0b0c0d0e0f10111213 0 max_length=20
#! 1817 0 canonical=1
#! 190017 0 canonical=1
#! 1a00000017 0 canonical=1
#! 1b0000000000000017 0 canonical=1
#! 3817 0 canonical=1
#! 5800 0 canonical=1
#! 7800 0 canonical=1
#! 9800 0 canonical=1
#! b800 0 canonical=1
#! d81700 0 canonical=1
#! 811817 1 canonical=1
#! 5f40ff 0 canonical=1
#! a202000100 3 canonical=1
#! a2616200616100 4 canonical=1
#! a262616100616200 5 canonical=1
#! a22000181800 3 canonical=1
#! fa3f800000 0 canonical=1
#! fb3ff0000000000000 0 canonical=1
#! f97e01 0 canonical=1
#! c24101 0 canonical=1
#! c24a00010000000000000000 0 canonical=1
#! 81818181818181818181818181818181818181818181818181818181818181818100 32
#! 9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f 32
