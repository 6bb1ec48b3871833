"""The numpy fast path against the pure-Python reference ops (the truth) and TFLM, bit for bit.

Single-op int8 models built with edgepoi's TFLite writer, with random shapes, strides, padding,
dilation, depth multipliers and per-tensor / per-channel quantization; outputs both below and above
the size where the requantizer switches from threshold tables to the fused int64 formula. Plus the
requantizer itself against ``quant.multiply_by_quantized_multiplier`` on random accumulators.
"""
import numpy as np
import pytest

from edgepoi.infer import Interpreter, schema as S
from edgepoi.infer.fast_numpy._q import SMALL, Requant
from edgepoi.infer.ops.geometry import out_size_and_pad
from edgepoi.infer.quant import multiply_by_quantized_multiplier as mbqm_ref
from edgepoi_host.tflite_writer import ModelWriter

I8, I16, I32 = S.INT8, S.INT16, S.INT32
ACTS = [S.ACT_NONE, S.ACT_RELU, S.ACT_RELU6, S.ACT_RELU_N1_TO_1]


def q(rng):
    return float(rng.uniform(0.005, 0.2)), int(rng.integers(-100, 100))


def rand8(rng, shape):
    return rng.integers(-128, 128, size=shape).astype(np.int8)


def run(model, inputs, backend):
    it = Interpreter(model_content=model, backend=backend)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()], it


def check(model, inputs, tflm=True):
    """numpy == ref (and == TFLM when it runs the model); returns the numpy interpreter."""
    fast, it = run(model, inputs, "numpy")
    assert any(f is not None for f in it._fast), "no numpy fast path was used"
    ref, _ = run(model, inputs, "ref")
    for a, b in zip(fast, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert int(np.count_nonzero(a != b)) == 0, "numpy vs ref: %d of %d differ" % (
            np.count_nonzero(a != b), a.size)
    if tflm:
        from edgepoi.infer.engines import open_engine
        t = open_engine("tflm", model)
        t.allocate_tensors()
        for d, x in zip(t.get_input_details(), inputs):
            t.set_tensor(d["index"], x)
        t.invoke()
        for a, d in zip(fast, t.get_output_details()):
            assert int(np.count_nonzero(a != t.get_tensor(d["index"]))) == 0, "numpy vs TFLM"
    return it


def weights(w, rng, shape, per_channel, n, in_scale, qdim):
    ws = rng.uniform(0.002, 0.05, size=n) if per_channel else np.full(1, rng.uniform(0.002, 0.05))
    k = w.tensor("w", shape, I8, data=rng.integers(-127, 128, size=shape), scale=list(ws),
                 quantized_dimension=qdim)
    bs = (ws * in_scale) if per_channel else np.full(n, ws[0] * in_scale)
    b = w.tensor("b", [n], I32, data=rng.integers(-3000, 3000, size=n),
                 scale=list(bs) if per_channel else [float(bs[0])])
    return k, b


def geometry(rng, case, h, wd, fh, fw, sh, sw, dh, dw):
    pad = S.PADDING_SAME if case % 2 else S.PADDING_VALID
    oh, _ = out_size_and_pad(pad, h, fh, sh, dh)
    ow, _ = out_size_and_pad(pad, wd, fw, sw, dw)
    if oh <= 0 or ow <= 0:
        pad = S.PADDING_SAME
        oh, _ = out_size_and_pad(pad, h, fh, sh, dh)
        ow, _ = out_size_and_pad(pad, wd, fw, sw, dw)
    return pad, oh, ow


@pytest.mark.parametrize("case", range(12))
def test_fully_connected_numpy_matches_ref(case):
    rng = np.random.default_rng(1100 + case)
    batch = int(rng.integers(1, 4)) if case < 10 else 40
    depth, units = int(rng.integers(1, 300)), int(rng.integers(1, 130))
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    x = w.tensor("x", [batch, depth], I8, scale=s, zero_point=z)
    k, b = weights(w, rng, [units, depth], bool(case & 1), units, s, 0)
    y = w.tensor("y", [batch, units], I8, scale=so, zero_point=zo)
    w.op(S.FULLY_CONNECTED, [x, k, b if case % 5 else -1], [y], activation=ACTS[(case >> 1) % 4])
    check(w.finish([x], [y]), [rand8(rng, [batch, depth])])


@pytest.mark.parametrize("case", range(16))
def test_conv_2d_numpy_matches_ref(case):
    rng = np.random.default_rng(1200 + case)
    big = case >= 12      # output above SMALL: the fused int64 requantizer
    h, wd = (int(rng.integers(26, 34)), int(rng.integers(26, 34))) if big else \
        (int(rng.integers(3, 12)), int(rng.integers(3, 12)))
    c, oc = int(rng.integers(1, 9)), int(rng.integers(8, 17)) if big else int(rng.integers(1, 9))
    fh, fw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = (1, 1) if big else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dh, dw = (1, 1) if case % 3 or big else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad, oh, ow = geometry(rng, case, h, wd, fh, fw, sh, sw, dh, dw)
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    x = w.tensor("x", [1, h, wd, c], I8, scale=s, zero_point=z)
    k, b = weights(w, rng, [oc, fh, fw, c], case % 4 != 1, oc, s, 0)
    y = w.tensor("y", [1, oh, ow, oc], I8, scale=so, zero_point=zo)
    w.op(S.CONV_2D, [x, k, b], [y], padding=pad, stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw,
         activation=ACTS[case % 4])
    check(w.finish([x], [y]), [rand8(rng, [1, h, wd, c])])
    assert oh * ow * oc > SMALL or not big


@pytest.mark.parametrize("case", range(16))
def test_depthwise_conv_2d_numpy_matches_ref(case):
    rng = np.random.default_rng(1300 + case)
    big = case >= 12
    h, wd = (int(rng.integers(26, 34)), int(rng.integers(26, 34))) if big else \
        (int(rng.integers(3, 12)), int(rng.integers(3, 12)))
    c, dm = (int(rng.integers(8, 11)) if big else int(rng.integers(1, 6))), 1 + case % 3
    if case in (3, 7, 10):
        c, dm, fh_fw = 1, 8, (int(rng.integers(3, 9)), int(rng.integers(3, 9)))  # one channel: conv path
    fh, fw = fh_fw if c == 1 and dm == 8 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    sh, sw = (1, 1) if big else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dh, dw = (1, 1) if case % 4 or big else (2, int(rng.integers(1, 3)))
    pad, oh, ow = geometry(rng, case, h, wd, fh, fw, sh, sw, dh, dw)
    oc = c * dm
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    x = w.tensor("x", [1, h, wd, c], I8, scale=s, zero_point=z)
    k, b = weights(w, rng, [1, fh, fw, oc], case % 5 != 2, oc, s, 3)
    y = w.tensor("y", [1, oh, ow, oc], I8, scale=so, zero_point=zo)
    w.op(S.DEPTHWISE_CONV_2D, [x, k, b], [y], padding=pad, stride_h=sh, stride_w=sw, depth_multiplier=dm,
         dilation_h=dh, dilation_w=dw, activation=ACTS[(case // 2) % 4])
    check(w.finish([x], [y]), [rand8(rng, [1, h, wd, c])])
    assert oh * ow * oc > SMALL or not big


@pytest.mark.parametrize("opcode", [S.AVERAGE_POOL_2D, S.MAX_POOL_2D])
@pytest.mark.parametrize("case", range(8))
def test_pooling_numpy_matches_ref(opcode, case):
    rng = np.random.default_rng(1400 + case)
    h, wd, c = int(rng.integers(2, 12)), int(rng.integers(2, 12)), int(rng.integers(1, 6))
    fh, fw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(wd, 4) + 1))
    if case == 7:
        fh, fw = h, wd     # global pool
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    pad, oh, ow = geometry(rng, case, h, wd, fh, fw, sh, sw, 1, 1)
    w = ModelWriter()
    s, z = q(rng)
    x = w.tensor("x", [1, h, wd, c], I8, scale=s, zero_point=z)
    y = w.tensor("y", [1, oh, ow, c], I8, scale=s, zero_point=z)
    w.op(opcode, [x], [y], padding=pad, stride_h=sh, stride_w=sw, filter_h=fh, filter_w=fw,
         activation=ACTS[case % 4])
    check(w.finish([x], [y]), [rand8(rng, [1, h, wd, c])])


@pytest.mark.parametrize("case", range(10))
def test_softmax_numpy_matches_ref(case):
    """Small tensors take a plain-Python path over the tables, big ones (case >= 8) numpy."""
    rng = np.random.default_rng(1500 + case)
    shape = [1, int(rng.integers(1, 40))] if case % 3 else [3, 2, int(rng.integers(2, 12))]
    if case >= 8:
        shape = [int(rng.integers(5, 20)), int(rng.integers(30, 60))]
    w = ModelWriter()
    s, z = float(rng.uniform(0.01, 0.5)), int(rng.integers(-50, 50))
    x = w.tensor("x", shape, I8, scale=s, zero_point=z)
    y = (w.tensor("y", shape, I16, scale=1 / 65536, zero_point=-32768) if case in (6, 7, 9)
         else w.tensor("y", shape, I8, scale=1 / 256, zero_point=-128))
    w.op(S.SOFTMAX, [x], [y], beta=[1.0, 0.5, 2.0, 0.25][case % 4])
    check(w.finish([x], [y]), [rand8(rng, shape)])


@pytest.mark.parametrize("case", range(8))
def test_add_numpy_matches_ref(case):
    rng = np.random.default_rng(1600 + case)
    sa, sb = [([2, 3, 4], [2, 3, 4]), ([1, 3, 4], [4]), ([2, 1, 4], [2, 3, 1]), ([1, 8, 8, 16], [1, 8, 8, 16])][case % 4]
    if case >= 4:
        sa, sb = sb, sa
    out = list(np.broadcast_shapes(tuple(sa), tuple(sb)))
    w = ModelWriter()
    (s1, z1), (s2, z2), (so, zo) = q(rng), q(rng), q(rng)
    a = w.tensor("a", sa, I8, scale=s1, zero_point=z1)
    b = w.tensor("b", sb, I8, scale=s2, zero_point=z2)
    y = w.tensor("y", out, I8, scale=so, zero_point=zo)
    w.op(S.ADD, [a, b], [y], activation=ACTS[case % 4])
    check(w.finish([a, b], [y]), [rand8(rng, sa), rand8(rng, sb)])


@pytest.mark.parametrize("case", range(6))
def test_mean_pad_transpose_reshape_concat_numpy_match_ref(case):
    rng = np.random.default_rng(1700 + case)
    w = ModelWriter()
    s, z = q(rng)
    shape = [1, 4, 5, 3]
    x = w.tensor("x", shape, I8, scale=s, zero_point=z)
    ins, inputs = [x], [rand8(rng, shape)]
    if case == 0:
        so, zo = q(rng)
        ax = w.tensor("axes", [2], I32, data=[1, 2])
        y = w.tensor("y", [1, 1, 1, 3], I8, scale=so, zero_point=zo)
        w.op(S.MEAN, [x, ax], [y], keep_dims=True)
    elif case == 1:
        p = w.tensor("pads", [4, 2], I32, data=[[0, 0], [1, 2], [0, 3], [2, 0]])
        y = w.tensor("y", [1, 7, 8, 5], I8, scale=s, zero_point=z)
        w.op(S.PAD, [x, p], [y])
    elif case == 2:
        pt = w.tensor("perm", [4], I32, data=[0, 3, 1, 2])
        y = w.tensor("y", [1, 3, 4, 5], I8, scale=s, zero_point=z)
        w.op(S.TRANSPOSE, [x, pt], [y])
    elif case == 3:
        ns = w.tensor("ns", [2], I32, data=[4, 15])
        y = w.tensor("y", [4, 15], I8, scale=s, zero_point=z)
        w.op(S.RESHAPE, [x, ns], [y], new_shape=[4, 15])
    else:
        other = [1, 4, 5, 2] if case == 4 else [1, 2, 5, 3]
        x2 = w.tensor("x2", other, I8, scale=s, zero_point=z)
        ins.append(x2)
        inputs.append(rand8(rng, other))
        y = w.tensor("y", [1, 4, 5, 5] if case == 4 else [1, 6, 5, 3], I8, scale=s, zero_point=z)
        w.op(S.CONCATENATION, [x, x2], [y], axis=3 if case == 4 else -3)
    check(w.finish(ins, [y]), inputs)


@pytest.mark.parametrize("case", range(60))
def test_requantizer_matches_multiply_by_quantized_multiplier(case):
    """Every path of Requant (thresholds, fused int64, left shifts; float32/float64/int64 input;
    bias folded or not) equals the scalar reference on random accumulators."""
    rng = np.random.default_rng(1800 + case)
    n = int(rng.integers(1, 40))
    kind = case % 3
    if kind == 0:       # per channel, right shifts up to 31
        m, s = rng.integers(1 << 30, 1 << 31, size=n), rng.integers(-31, 1, size=n)
    elif kind == 1:     # per tensor, any shift including left shifts
        m, s = np.full(n, int(rng.integers(0, 1 << 31))), np.full(n, int(rng.integers(-31, 8)))
    else:               # per channel with some left shifts
        m, s = rng.integers(1 << 30, 1 << 31, size=n), rng.integers(-5, 4, size=n)
    bias = rng.integers(-5000, 5000, size=n)
    zp = int(rng.integers(-128, 128))
    lo, hi = sorted(rng.integers(-128, 128, size=2).tolist())
    rows = int(rng.integers(1, 10)) if case % 2 else SMALL // n + int(rng.integers(1, 50))
    scale = int(rng.choice([100, 10 ** 4, 10 ** 6, 2 ** 30]))
    raw = rng.integers(-scale, scale, size=(rows, n))
    biased = case % 5 == 0
    acc = raw + bias if biased else raw
    if case % 4 == 1 and scale < 2 ** 20:
        acc = acc.astype(np.float32)
    elif case % 4:
        acc = acc.astype(np.float64)
    out = np.empty((rows, n), np.int8)
    Requant(m, s, bias, zp, lo, hi).apply(acc, out, biased=biased)
    want = np.array([[min(hi, max(lo, mbqm_ref(int(raw[i, j] + bias[j]), int(m[j]), int(s[j])) + zp))
                      for j in range(n)] for i in range(rows)])
    assert int(np.count_nonzero(out != want)) == 0


@pytest.mark.parametrize("case", range(9))
def test_elementwise_table_ops_numpy_match_ref(case):
    """QUANTIZE, DEQUANTIZE, RELU, RELU6, LOGISTIC, TANH, MUL, STRIDED_SLICE."""
    rng = np.random.default_rng(1900 + case)
    shape = [2, 3, 17]
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    x = w.tensor("x", shape, I8, scale=s, zero_point=z)
    ins, inputs = [x], [rand8(rng, shape)]
    if case == 0:
        x = ins[0] = w.tensor("xf", shape, S.FLOAT32)
        inputs = [rng.uniform(-8, 8, size=shape).astype(np.float32)]
        y = w.tensor("y", shape, I8, scale=so, zero_point=zo)
        w.op(S.QUANTIZE, [x], [y])
    elif case == 1:
        y = w.tensor("y", shape, I8, scale=so, zero_point=zo)
        w.op(S.QUANTIZE, [x], [y])
    elif case == 2:
        y = w.tensor("y", shape, S.FLOAT32)
        w.op(S.DEQUANTIZE, [x], [y])
    elif case in (3, 4):
        y = w.tensor("y", shape, I8, scale=so, zero_point=zo)
        w.op(S.RELU if case == 3 else S.RELU6, [x], [y])
    elif case == 5:
        y = w.tensor("y", shape, I8, scale=1 / 256, zero_point=-128)
        w.op(S.LOGISTIC, [x], [y])
    elif case == 6:
        y = w.tensor("y", shape, I8, scale=1 / 128, zero_point=0)
        w.op(S.TANH, [x], [y])
    elif case == 7:
        b = w.tensor("b", [17], I8, scale=so, zero_point=zo)
        ins.append(b)
        inputs.append(rand8(rng, [17]))
        y = w.tensor("y", shape, I8, scale=float(rng.uniform(0.01, 0.5)), zero_point=int(rng.integers(-50, 50)))
        w.op(S.MUL, [x, b], [y], activation=S.ACT_NONE)
    else:
        beg = w.tensor("begin", [3], I32, data=[1, -1, 2])
        end = w.tensor("end", [3], I32, data=[2, 0, 17])
        st = w.tensor("strides", [3], I32, data=[1, -1, 3])
        y = w.tensor("y", [1, 2, 5], I8, scale=s, zero_point=z)
        w.op(S.STRIDED_SLICE, [x, beg, end, st], [y], begin_mask=0, end_mask=0)
    check(w.finish(ins, [y]), inputs)


@pytest.mark.parametrize("case", range(5))
def test_int16_variants_numpy_match_ref(case):
    """QUANTIZE int16<->int8, DEQUANTIZE int16, AVERAGE/MAX_POOL int16 (the fast modules declaring
    SUPPORTS_INT16)."""
    rng = np.random.default_rng(2000 + case)
    w = ModelWriter()
    shape = [1, 6, 7, 3]
    s16 = float(rng.uniform(1e-4, 1e-3))
    if case == 0:
        x = w.tensor("x", shape, I16, scale=s16, zero_point=0)
        y = w.tensor("y", shape, I8, scale=float(rng.uniform(0.01, 0.1)), zero_point=int(rng.integers(-20, 20)))
        w.op(S.QUANTIZE, [x], [y])
    elif case == 1:
        x = w.tensor("x", shape, I8, scale=float(rng.uniform(0.01, 0.1)), zero_point=int(rng.integers(-20, 20)))
        y = w.tensor("y", shape, I16, scale=s16, zero_point=0)
        w.op(S.QUANTIZE, [x], [y])
    elif case == 2:
        x = w.tensor("x", shape, I16, scale=s16, zero_point=0)
        y = w.tensor("y", shape, S.FLOAT32)
        w.op(S.DEQUANTIZE, [x], [y])
    else:
        x = w.tensor("x", shape, I16, scale=s16, zero_point=0)
        y = w.tensor("y", [1, 3, 4, 3], I16, scale=s16, zero_point=0)
        w.op(S.AVERAGE_POOL_2D if case == 3 else S.MAX_POOL_2D, [x], [y], padding=S.PADDING_SAME,
             stride_h=2, stride_w=2, filter_h=3, filter_w=2, activation=S.ACT_NONE)
    xs = (rng.integers(-32768, 32768, size=shape).astype(np.int16) if case != 1 else rand8(rng, shape))
    check(w.finish([x], [y]), [xs])


@pytest.mark.parametrize("case", range(3))
def test_grouped_conv_2d_numpy_matches_ref(case):
    """Filter depth < input depth (groups); checked against the reference only."""
    rng = np.random.default_rng(2100 + case)
    groups, fc, per = 2 + case, int(rng.integers(1, 4)), int(rng.integers(1, 4))
    c, oc, h, wd = groups * fc, groups * per, int(rng.integers(4, 9)), int(rng.integers(4, 9))
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    x = w.tensor("x", [1, h, wd, c], I8, scale=s, zero_point=z)
    k, b = weights(w, rng, [oc, 3, 3, fc], bool(case % 2), oc, s, 0)
    y = w.tensor("y", [1, h, wd, oc], I8, scale=so, zero_point=zo)
    w.op(S.CONV_2D, [x, k, b], [y], padding=S.PADDING_SAME, stride_h=1, stride_w=1, dilation_h=1,
         dilation_w=1, activation=S.ACT_NONE)
    check(w.finish([x], [y]), [rand8(rng, [1, h, wd, c])], tflm=False)


@pytest.mark.parametrize("opcode", [S.FULLY_CONNECTED, S.CONV_2D])
def test_long_reductions_take_the_float64_path_and_stay_exact(opcode):
    """128 * sum|w| >= 2**24: float32 could round, so the fast path must pick float64."""
    from edgepoi.infer.fast_numpy._kern import exact_float
    rng = np.random.default_rng(2200 + opcode)
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    if opcode == S.FULLY_CONNECTED:
        depth, units = 2500, 6
        x = w.tensor("x", [1, depth], I8, scale=s, zero_point=z)
        k, b = weights(w, rng, [units, depth], True, units, s, 0)
        y = w.tensor("y", [1, units], I8, scale=so, zero_point=zo)
        w.op(opcode, [x, k, b], [y], activation=S.ACT_NONE)
        xs, kshape = rand8(rng, [1, depth]), (units, depth)
    else:
        c = 300
        x = w.tensor("x", [1, 4, 4, c], I8, scale=s, zero_point=z)
        k, b = weights(w, rng, [3, 3, 3, c], False, 3, s, 0)
        y = w.tensor("y", [1, 4, 4, 3], I8, scale=so, zero_point=zo)
        w.op(opcode, [x, k, b], [y], padding=S.PADDING_SAME, stride_h=1, stride_w=1, dilation_h=1,
             dilation_w=1, activation=S.ACT_NONE)
        xs, kshape = rand8(rng, [1, 4, 4, c]), (3, 9 * c)
    model = w.finish([x], [y])
    check(model, [xs])
    wk = np.frombuffer(w.tensors[k].data, np.int8).reshape(kshape)
    assert exact_float(wk.T.astype(np.int64), np.zeros(kshape[0], np.int64)) == np.float64
