# heapsize: 96K
"""Viper kernels equal the reference ops bit for bit (runs under MicroPython; CPython has no viper).

Each test draws random shapes, strides, dilations, paddings, offsets, multipliers/shifts (left shifts
too) and biases from a fixed-seed xorshift, builds the op's params as its ``prepare`` would (geometry
from ``ops.geometry``), runs ``edgepoi.infer.ops.<op>.eval`` and ``edgepoi.infer.fast_viper.<op>.eval``
on the same inputs and compares every output byte. The requantization kernel is also checked on edge
values against ``quant.multiply_by_quantized_multiplier`` in both of its forms (64-bit product, and the
16-bit-limb form that 32-bit boards use). Under CPython each test prints a note and returns.
"""
import array
import sys

MICRO = sys.implementation.name == "micropython"
_state = [0x2545F491]


def _note():
    if not MICRO:
        print("note: viper exists only on MicroPython; test runs under tests/test_portable_on_micropython.py")
        return True
    return False


def rnd(lo, hi):
    """Deterministic int in [lo, hi] (xorshift32)."""
    x = _state[0]
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    _state[0] = x
    return lo + x % (hi - lo + 1)


def i8(n):
    a = array.array("b", bytes(n))
    for i in range(n):
        a[i] = rnd(-128, 127)
    return memoryview(a)


def out8(n):
    return memoryview(array.array("b", bytes(n)))


def requant_fields(oc, big_bias=False):
    mults = [rnd(1 << 30, (1 << 31) - 1) for _ in range(oc)]
    shifts = [rnd(-14, 2) for _ in range(oc)]
    lim = (1 << 30) if big_bias else (1 << 14)
    bias = [rnd(-lim, lim) for _ in range(oc)]
    lo = rnd(-128, 0)
    return {"mults": mults, "shifts": shifts, "bias": bias, "out_offset": rnd(-128, 127),
            "act_min": lo, "act_max": rnd(lo, 127)}


def same(ref_mod, fast_mod, p, ins, nout):
    """Run both evals on the same inputs; returns the number of differing output bytes."""
    y1, y2 = out8(nout), out8(nout)
    ref_mod.eval(p, ins + [y1])
    fast_mod.eval(p, ins + [y2])
    return sum(1 for i in range(nout) if y1[i] != y2[i])


def conv_params(dw):
    from edgepoi.infer import schema
    from edgepoi.infer.ops import geometry
    n = rnd(1, 2)
    h, wd = rnd(1, 9), rnd(1, 9)
    ch = rnd(1, 9)
    fh, fw = rnd(1, 4), rnd(1, 4)
    sh, sw, dh, dw_ = rnd(1, 3), rnd(1, 3), rnd(1, 2), rnd(1, 2)
    pad = schema.PADDING_SAME if rnd(0, 1) else schema.PADDING_VALID
    oh, ph = geometry.out_size_and_pad(pad, h, fh, sh, dh)
    ow, pw = geometry.out_size_and_pad(pad, wd, fw, sw, dw_)
    if oh <= 0 or ow <= 0:
        return None
    dm = (1, 2, 3, 4, 8)[rnd(0, 4)] if dw else 1
    oc = ch * dm if dw else rnd(1, 9)
    p = {"in_shape": [n, h, wd, ch], "out_shape": [n, oh, ow, oc], "stride_h": sh, "stride_w": sw,
         "dil_h": dh, "dil_w": dw_, "pad_h": ph, "pad_w": pw, "in_offset": rnd(-127, 128),
         "w_offset": rnd(-3, 3) if rnd(0, 3) == 0 else 0, "int16": False, "acc64": False}
    p.update(requant_fields(oc, big_bias=rnd(0, 4) == 0))
    if dw:
        p.update({"filter_h": fh, "filter_w": fw, "depth_multiplier": dm})
        nw = fh * fw * oc
    else:
        p["filter_shape"] = [oc, fh, fw, ch]
        nw = oc * fh * fw * ch
    return p, n * h * wd * ch, nw, n * oh * ow * oc


def _conv_case(dw, split):
    from edgepoi.infer.fast_viper import _vq
    if dw:
        from edgepoi.infer.ops import depthwise_conv_2d as ref
        from edgepoi.infer.fast_viper import depthwise_conv_2d as fast
    else:
        from edgepoi.infer.ops import conv_2d as ref
        from edgepoi.infer.fast_viper import conv_2d as fast
    old = _vq.SPLIT
    _vq.SPLIT = split
    runs = 0
    try:
        while runs < 25:
            got = conv_params(dw)
            if got is None:
                continue
            p, nx, nw, ny = got
            bad = same(ref, fast, p, [i8(nx), i8(nw), None], ny)
            assert bad == 0, "%d bytes differ for %r" % (bad, p)
            runs += 1
    finally:
        _vq.SPLIT = old


def test_conv_2d_equals_reference():
    if _note():
        return
    _conv_case(False, 0)


def test_grouped_conv_2d_runs_the_reference_op():
    if _note():
        return
    from edgepoi.infer.ops import conv_2d as ref
    from edgepoi.infer.fast_viper import conv_2d as fast
    p = {"in_shape": [1, 5, 5, 4], "out_shape": [1, 5, 5, 6], "filter_shape": [6, 3, 3, 2],
         "stride_h": 1, "stride_w": 1, "dil_h": 1, "dil_w": 1, "pad_h": 1, "pad_w": 1,
         "in_offset": 3, "w_offset": 0, "int16": False, "acc64": False}
    p.update(requant_fields(6))
    bad = same(ref, fast, p, [i8(100), i8(6 * 9 * 2), None], 150)
    assert bad == 0
    assert p["_viper"] is None  # two groups: no viper state, the reference op ran


def test_conv_2d_equals_reference_with_32bit_requantization():
    if _note():
        return
    _conv_case(False, 1)


def test_depthwise_conv_2d_equals_reference():
    if _note():
        return
    _conv_case(True, 0)
    _conv_case(True, 1)


def test_fully_connected_equals_reference():
    if _note():
        return
    from edgepoi.infer.ops import fully_connected as ref
    from edgepoi.infer.fast_viper import fully_connected as fast
    chunk = fast.CHUNK
    try:
        for k in range(30):
            fast.CHUNK = 16 if k % 2 else chunk  # odd cases: input in several chunks
            _fc_case(ref, fast)
    finally:
        fast.CHUNK = chunk


def _fc_case(ref, fast):
    batches, depth, units = rnd(1, 3), rnd(1, 70), rnd(1, 20)
    p = {"in_offset": rnd(-127, 128), "w_offset": rnd(-3, 3) if rnd(0, 3) == 0 else 0,
         "batches": batches, "depth": depth, "units": units, "int16": False}
    p.update(requant_fields(units, big_bias=rnd(0, 4) == 0))
    w = i8(units * depth)
    p["folded_bias"] = [p["bias"][u] + p["in_offset"] * sum(w[i] + p["w_offset"]
                                                             for i in range(u * depth, (u + 1) * depth))
                        for u in range(units)]
    bad = same(ref, fast, p, [i8(batches * depth), w, None], batches * units)
    assert bad == 0, "%d bytes differ for %r" % (bad, p)


def test_fully_connected_row_segments_equal_reference():
    """eval_seg (a row in depth segments, each with just its weights; streamed weights) of the viper
    and the reference op give the outputs of the whole-layer reference eval."""
    if _note():
        return
    from edgepoi.infer.ops import fully_connected as ref
    from edgepoi.infer.fast_viper import fully_connected as fast
    chunk = fast.CHUNK
    try:
        for case in range(20):
            fast.CHUNK = 16 if case % 2 else chunk
            depth, units = rnd(2, 90), rnd(1, 6)
            p = {"in_offset": rnd(-127, 128), "w_offset": rnd(-3, 3) if rnd(0, 3) == 0 else 0,
                 "batches": 1, "depth": depth, "units": units, "int16": False}
            p.update(requant_fields(units, big_bias=rnd(0, 4) == 0))
            x, w = i8(depth), i8(units * depth)
            p["folded_bias"] = [p["bias"][u] + p["in_offset"] * sum(w[i] + p["w_offset"]
                                                                     for i in range(u * depth, (u + 1) * depth))
                                for u in range(units)]
            want = out8(units)
            ref.eval(p, [x, w, None, want])
            n = rnd(1, depth)
            for mod in (ref, fast):
                y = out8(units)
                acc = [0]
                for u in range(units):
                    for d0 in range(0, depth, n):
                        d1 = min(depth, d0 + n)
                        seg = memoryview(array.array("b", w[u * depth + d0:u * depth + d1]))
                        mod.eval_seg(p, [x, seg, None, y], u, d0, d1, acc)
                assert bytes(y) == bytes(want), (mod.__name__, depth, units, n)
    finally:
        fast.CHUNK = chunk


def _pool_params():
    from edgepoi.infer import schema
    from edgepoi.infer.ops import geometry
    n, h, wd, ch = rnd(1, 2), rnd(1, 10), rnd(1, 10), rnd(1, 9)
    fh, fw, sh, sw = rnd(1, 4), rnd(1, 4), rnd(1, 3), rnd(1, 3)
    pad = schema.PADDING_SAME if rnd(0, 1) else schema.PADDING_VALID
    oh, ph = geometry.out_size_and_pad(pad, h, fh, sh, 1)
    ow, pw = geometry.out_size_and_pad(pad, wd, fw, sw, 1)
    if oh <= 0 or ow <= 0:
        return None
    lo = rnd(-128, 0)
    return {"in_shape": [n, h, wd, ch], "out_shape": [n, oh, ow, ch], "filter_h": fh, "filter_w": fw,
            "stride_h": sh, "stride_w": sw, "pad_h": ph, "pad_w": pw, "act_min": lo,
            "act_max": rnd(lo, 127)}


def _pool_case(name):
    ref = __import__("edgepoi.infer.ops." + name, None, None, ["eval"])
    fast = __import__("edgepoi.infer.fast_viper." + name, None, None, ["eval"])
    runs = 0
    while runs < 30:
        p = _pool_params()
        if p is None:
            continue
        n, h, wd, ch = p["in_shape"]
        ny = n * p["out_shape"][1] * p["out_shape"][2] * ch
        bad = same(ref, fast, p, [i8(n * h * wd * ch)], ny)
        assert bad == 0, "%d bytes differ for %r" % (bad, p)
        runs += 1


def test_average_pool_2d_equals_reference():
    if _note():
        return
    _pool_case("average_pool_2d")


def test_max_pool_2d_equals_reference():
    if _note():
        return
    _pool_case("max_pool_2d")


def test_add_equals_reference():
    if _note():
        return
    from edgepoi.infer.ops import add as ref
    from edgepoi.infer.fast_viper import add as fast
    from edgepoi.infer.ops import nd
    for k in range(20):
        shape = [rnd(1, 3), rnd(1, 6), rnd(1, 6), rnd(1, 8)]
        other = list(shape) if k % 3 else [1, 1, 1, shape[3]]  # every third case broadcasts (reference)
        n = shape[0] * shape[1] * shape[2] * shape[3]
        m = other[0] * other[1] * other[2] * other[3]
        lo = rnd(-128, 0)
        p = {"out_shape": shape, "strides1": nd.broadcast_strides(shape, shape),
             "strides2": nd.broadcast_strides(other, shape), "left_shift": 20,
             "in1_offset": rnd(-127, 128), "in2_offset": rnd(-127, 128), "out_offset": rnd(-128, 127),
             "in1_mult": rnd(1 << 30, (1 << 31) - 1), "in1_shift": rnd(-3, 0),
             "in2_mult": rnd(1 << 30, (1 << 31) - 1), "in2_shift": rnd(-3, 0),
             "out_mult": rnd(1 << 30, (1 << 31) - 1), "out_shift": rnd(-22, -17),
             "act_min": lo, "act_max": rnd(lo, 127), "count": n, "macs": n}
        bad = same(ref, fast, p, [i8(n), i8(m)], n)
        assert bad == 0, "%d bytes differ for %r" % (bad, p)


def test_requantization_edge_values_match_quant():
    if _note():
        return
    from edgepoi.infer import quant
    from edgepoi.infer.fast_viper import _vq
    edges = [0, 1, -1, 2, -2, 127, -128, 65535, -65536, (1 << 30) - 1, -(1 << 30),
             2147483647, -2147483648, 12345678, -87654321]
    mults = [0, 1 << 30, (1 << 31) - 1, 1518500250, 1073741825, 2147418112]
    old = _vq.SPLIT
    for split in (0, 1):
        _vq.SPLIT = split
        q = _vq.rq_state([0], [1 << 30], [0], 0, -128, 127)  # (its header: WRAP, split)
        _vq.SPLIT = old
        for v in edges + [rnd(-(1 << 31), (1 << 31) - 1) for _ in range(200)]:
            for m in mults + [rnd(1 << 30, (1 << 31) - 1)]:
                for s in (-31, -20, -7, -1, 0, 1, 3):
                    want = quant.multiply_by_quantized_multiplier(v, m, s)
                    got = _vq.mbqm(v, m, s, q)
                    assert got == want, (split, v, m, s, got, want)


def test_reshape_copies_like_reference():
    if _note():
        return
    import uctypes
    from edgepoi.infer.ops import reshape as ref
    from edgepoi.infer.fast_viper import reshape as fast
    n = 37
    raw = bytearray(2 * n)
    lay = {"v": (uctypes.ARRAY | 0, uctypes.INT8 | n)}
    x = uctypes.struct(uctypes.addressof(raw), lay).v  # the Interpreter's int8 views look like this
    y = uctypes.struct(uctypes.addressof(raw) + n, lay).v
    for i in range(n):
        x[i] = rnd(-128, 127)
    want = out8(n)
    ref.eval({"count": n}, [x, None, want])
    fast.eval({"count": n}, [x, None, y])
    assert [y[i] for i in range(n)] == [want[i] for i in range(n)]
    h = array.array("h", [rnd(-32768, 32767) for _ in range(n)])
    h2 = array.array("h", bytes(2 * n))
    fast.eval({"count": n}, [h, None, h2])
    assert h2 == h
    mixed = out8(n)  # int16 source into an int8 buffer: item sizes differ, the reference op runs
    small = array.array("h", [rnd(-128, 127) for _ in range(n)])
    fast.eval({"count": n}, [small, None, mixed])
    assert list(mixed) == list(small)
