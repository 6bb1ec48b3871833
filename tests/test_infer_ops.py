"""Per-op conformance: single-op int8 models built with our TFLite writer, run by the pure-Python
reference interpreter and by TFLM (the oracle) on seeded random inputs; 0 differing bytes allowed.
"""
import numpy as np
import pytest

from edgepoi.infer import Interpreter, schema as S
from edgepoi.infer.ops.geometry import out_size_and_pad
from edgepoi_host.tflite_writer import ModelWriter

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                              reason="tflite-micro (the oracle) is not installed")

I8, I16, I32, F32 = S.INT8, S.INT16, S.INT32, S.FLOAT32
ACTS = [S.ACT_NONE, S.ACT_RELU, S.ACT_RELU6, S.ACT_RELU_N1_TO_1]


def q(rng):
    """A random (scale, zero point) for an int8 activation tensor."""
    return float(rng.uniform(0.005, 0.2)), int(rng.integers(-100, 100))


def rand_input(rng, shape, ttype=I8):
    if ttype == F32:
        return rng.uniform(-8, 8, size=shape).astype(np.float32)
    lo, hi = (-128, 127) if ttype == I8 else (-32768, 32767)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8 if ttype == I8 else np.int16)


def compare(model, inputs, n_out=1, ref=None, ours=None):
    """Run ``inputs`` through ours and TFLM (created unless given, e.g. to keep state) and compare."""
    if ours is None:
        ours = Interpreter(model_content=model, backend="ref")
        ours.allocate_tensors()
        ref = runtime.Interpreter.from_bytes(model)
    for k, x in enumerate(inputs):
        ours.set_tensor(ours.get_input_details()[k]["index"], x)
        ref.set_input(x, k)
    ours.invoke()
    ref.invoke()
    for k in range(n_out):
        a, b = ours.get_tensor(ours.get_output_details()[k]["index"]), ref.get_output(k)
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
        diff = int(np.count_nonzero(a != b))
        assert diff == 0, "%d of %d values differ\nours %s\ntflm %s" % (diff, a.size, a.ravel()[:32],
                                                                       b.ravel()[:32])
    return ours, ref


def geometry(pad, h, wd, fh, fw, sh, sw, dh=1, dw=1):
    """(padding, out_h, out_w); VALID windows larger than the image fall back to SAME."""
    oh, ow = out_size_and_pad(pad, h, fh, sh, dh)[0], out_size_and_pad(pad, wd, fw, sw, dw)[0]
    if oh <= 0 or ow <= 0:
        return geometry(S.PADDING_SAME, h, wd, fh, fw, sh, sw, dh, dw)
    return pad, oh, ow


def weights(w, rng, shape, per_channel, n, in_scale, qdim):
    ws = rng.uniform(0.002, 0.05, size=n) if per_channel else np.full(1, rng.uniform(0.002, 0.05))
    k = w.tensor("w", shape, I8, data=rng.integers(-127, 128, size=shape), scale=list(ws),
                 quantized_dimension=qdim)
    bs = (ws * in_scale) if per_channel else np.full(n, ws[0] * in_scale)
    b = w.tensor("b", [n], I32, data=rng.integers(-3000, 3000, size=n),
                 scale=list(bs) if per_channel else [float(bs[0])])
    return k, b


@pytest.mark.parametrize("case", range(16))
def test_fully_connected_matches_tflm(case):
    rng = np.random.default_rng(100 + case)
    batch, depth, units = int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(1, 20))
    per_channel, act, bias = bool(case & 1), ACTS[(case >> 1) % 4], case < 12
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    x = w.tensor("x", [batch, depth], I8, scale=s, zero_point=z)
    k, b = weights(w, rng, [units, depth], per_channel, units, s, 0)
    y = w.tensor("y", [batch, units], I8, scale=so, zero_point=zo)
    w.op(S.FULLY_CONNECTED, [x, k, b if bias else -1], [y], activation=act)
    compare(w.finish([x], [y]), [rand_input(rng, [batch, depth])])


@pytest.mark.parametrize("case", range(24))
def test_conv_2d_matches_tflm(case):
    rng = np.random.default_rng(200 + case)
    n, h, wd, c = 1 + (case % 5 == 0), int(rng.integers(3, 10)), int(rng.integers(3, 10)), int(rng.integers(1, 6))
    oc, fh, fw = int(rng.integers(1, 7)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dh, dw = (1, 1) if case % 3 else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad, oh, ow = geometry(S.PADDING_SAME if case % 2 else S.PADDING_VALID, h, wd, fh, fw, sh, sw, dh, dw)
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    x = w.tensor("x", [n, h, wd, c], I8, scale=s, zero_point=z)
    k, b = weights(w, rng, [oc, fh, fw, c], case % 4 != 1, oc, s, 0)
    y = w.tensor("y", [n, oh, ow, oc], I8, scale=so, zero_point=zo)
    w.op(S.CONV_2D, [x, k, b], [y], padding=pad, stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw,
         activation=ACTS[case % 4])
    compare(w.finish([x], [y]), [rand_input(rng, [n, h, wd, c])])


@pytest.mark.parametrize("case", range(24))
def test_depthwise_conv_2d_matches_tflm(case):
    rng = np.random.default_rng(300 + case)
    h, wd, c, dm = int(rng.integers(3, 10)), int(rng.integers(3, 10)), int(rng.integers(1, 6)), 1 + case % 3
    fh, fw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dh, dw = (1, 1) if case % 4 else (2, int(rng.integers(1, 3)))
    pad, oh, ow = geometry(S.PADDING_SAME if case % 2 else S.PADDING_VALID, h, wd, fh, fw, sh, sw, dh, dw)
    oc = c * dm
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    x = w.tensor("x", [1, h, wd, c], I8, scale=s, zero_point=z)
    k, b = weights(w, rng, [1, fh, fw, oc], case % 5 != 2, oc, s, 3)
    y = w.tensor("y", [1, oh, ow, oc], I8, scale=so, zero_point=zo)
    w.op(S.DEPTHWISE_CONV_2D, [x, k, b], [y], padding=pad, stride_h=sh, stride_w=sw, depth_multiplier=dm,
         dilation_h=dh, dilation_w=dw, activation=ACTS[(case // 2) % 4])
    compare(w.finish([x], [y]), [rand_input(rng, [1, h, wd, c])])


@pytest.mark.parametrize("opcode", [S.AVERAGE_POOL_2D, S.MAX_POOL_2D])
@pytest.mark.parametrize("case", range(10))
def test_pooling_matches_tflm(opcode, case):
    rng = np.random.default_rng(400 + case)
    h, wd, c = int(rng.integers(2, 10)), int(rng.integers(2, 10)), int(rng.integers(1, 5))
    fh, fw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(wd, 4) + 1))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    pad, oh, ow = geometry(S.PADDING_SAME if case % 2 else S.PADDING_VALID, h, wd, fh, fw, sh, sw)
    w = ModelWriter()
    s, z = q(rng)
    x = w.tensor("x", [1, h, wd, c], I8, scale=s, zero_point=z)
    y = w.tensor("y", [1, oh, ow, c], I8, scale=s, zero_point=z)
    w.op(opcode, [x], [y], padding=pad, stride_h=sh, stride_w=sw, filter_h=fh, filter_w=fw,
         activation=ACTS[case % 4])
    compare(w.finish([x], [y]), [rand_input(rng, [1, h, wd, c])])


@pytest.mark.parametrize("case", range(12))
def test_softmax_matches_tflm(case):
    rng = np.random.default_rng(500 + case)
    shape = [1, int(rng.integers(1, 30))] if case % 3 else [2, 3, int(rng.integers(2, 12))]
    beta = [1.0, 0.5, 2.0, 0.25][case % 4]
    int16_out = case >= 9
    w = ModelWriter()
    s, z = float(rng.uniform(0.01, 0.5)), int(rng.integers(-50, 50))
    x = w.tensor("x", shape, I8, scale=s, zero_point=z)
    y = (w.tensor("y", shape, I16, scale=1 / 65536, zero_point=-32768) if int16_out
         else w.tensor("y", shape, I8, scale=1 / 256, zero_point=-128))
    w.op(S.SOFTMAX, [x], [y], beta=beta)
    compare(w.finish([x], [y]), [rand_input(rng, shape)])


BCAST = [([2, 3, 4], [2, 3, 4]), ([1, 3, 4], [4]), ([2, 1, 4], [2, 3, 1]), ([1, 5], [1, 1]),
         ([2, 2, 3, 4], [1, 2, 1, 4]), ([6], [6])]


@pytest.mark.parametrize("opcode", [S.ADD, S.MUL])
@pytest.mark.parametrize("case", range(12))
def test_add_mul_match_tflm(opcode, case):
    rng = np.random.default_rng(600 + case)
    sa, sb = BCAST[case % len(BCAST)]
    if case >= 6:
        sa, sb = sb, sa
    out = list(np.broadcast_shapes(tuple(sa), tuple(sb)))
    w = ModelWriter()
    (s1, z1), (s2, z2), (so, zo) = q(rng), q(rng), q(rng)
    a = w.tensor("a", sa, I8, scale=s1, zero_point=z1)
    b = w.tensor("b", sb, I8, scale=s2, zero_point=z2)
    y = w.tensor("y", out, I8, scale=so, zero_point=zo)
    w.op(opcode, [a, b], [y], activation=ACTS[case % 4])
    compare(w.finish([a, b], [y]), [rand_input(rng, sa), rand_input(rng, sb)])


@pytest.mark.parametrize("case", range(8))
def test_mean_matches_tflm(case):
    rng = np.random.default_rng(700 + case)
    shape = [1, int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 6))]
    axes = [[1, 2], [2, 1], [-1], [1], [0, 3], [1, 2, 3], [1, 2], [2]][case]
    keep = case % 2 == 0
    w = ModelWriter()
    s, z = q(rng)
    so, zo = (s, z) if case == 6 else q(rng)
    x = w.tensor("x", shape, I8, scale=s, zero_point=z)
    ax = w.tensor("axes", [len(axes)], I32, data=axes)
    red = sorted(a % 4 for a in axes)
    oshape = [1 if d in red else shape[d] for d in range(4)] if keep else [shape[d] for d in range(4) if d not in red]
    y = w.tensor("y", oshape, I8, scale=so, zero_point=zo)
    w.op(S.MEAN, [x, ax], [y], keep_dims=keep)
    compare(w.finish([x], [y]), [rand_input(rng, shape)])


@pytest.mark.parametrize("case", range(6))
def test_shape_ops_match_tflm(case):
    """PAD, TRANSPOSE, CONCATENATION, RESHAPE, STRIDED_SLICE (data movement, int8)."""
    rng = np.random.default_rng(800 + case)
    w = ModelWriter()
    s, z = q(rng)
    t = lambda name, shape, **kw: w.tensor(name, shape, I8, scale=s, zero_point=z, **kw)  # noqa: E731
    c = lambda name, vals, shape=None: w.tensor(name, shape or [len(vals)], I32, data=vals)  # noqa: E731
    ins, shapes = [t("x", [1, 4, 5, 3])], [[1, 4, 5, 3]]
    if case == 0:
        y = t("y", [1, 7, 8, 5])
        w.op(S.PAD, [ins[0], c("pads", [[0, 0], [1, 2], [0, 3], [2, 0]], [4, 2])], [y])
    elif case == 1:
        y = t("y", [1, 3, 4, 5])
        w.op(S.TRANSPOSE, [ins[0], c("perm", [0, 3, 1, 2])], [y])
    elif case in (2, 3):
        shapes.append([1, 4, 5, 2] if case == 2 else [1, 2, 5, 3])
        ins.append(t("x2", shapes[1]))
        y = t("y", [1, 4, 5, 5] if case == 2 else [1, 6, 5, 3])
        w.op(S.CONCATENATION, ins, [y], axis=3 if case == 2 else -3)
    elif case == 4:
        y = t("y", [4, 15])
        w.op(S.RESHAPE, [ins[0], c("ns", [4, 15])], [y], new_shape=[4, 15])
    else:
        y = t("y", [1, 2, 2, 3])
        w.op(S.STRIDED_SLICE, [ins[0], c("b", [0, 1, -1, 0]), c("e", [1, 4, 0, 3]), c("s", [1, 2, -2, 1])],
             [y], begin_mask=0, end_mask=0)
    compare(w.finish(ins, [y]), [rand_input(rng, sh) for sh in shapes])


# (opcode, input type, output type, output quantization same as input's)
UNARY = [(S.QUANTIZE, F32, I8, False), (S.QUANTIZE, I8, I8, False), (S.DEQUANTIZE, I8, F32, False),
         (S.RELU, I8, I8, False), (S.RELU, I8, I8, True), (S.RELU6, I8, I8, False)]


@pytest.mark.parametrize("case", range(len(UNARY)))
def test_quantize_dequantize_relu_match_tflm(case):
    rng = np.random.default_rng(900 + case)
    opcode, ti, to, same = UNARY[case]
    shape = [2, 17]
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    x = w.tensor("x", shape, F32) if ti == F32 else w.tensor("x", shape, ti, scale=s, zero_point=z)
    y = (w.tensor("y", shape, F32) if to == F32 else
         w.tensor("y", shape, to, scale=s if same else so, zero_point=z if same else zo))
    w.op(opcode, [x], [y])
    compare(w.finish([x], [y]), [rand_input(rng, shape, ti)])


@pytest.mark.parametrize("opcode", [S.LOGISTIC, S.TANH])
@pytest.mark.parametrize("case", range(6))
def test_logistic_tanh_match_tflm(opcode, case):
    rng = np.random.default_rng(1000 + case)
    shape = [3, 50]
    w = ModelWriter()
    s, z = float(rng.uniform(0.01, 0.3)) * (4 if case == 5 else 1), int(rng.integers(-60, 60))
    x = w.tensor("x", shape, I8, scale=s, zero_point=z)
    if opcode == S.LOGISTIC:
        y = w.tensor("y", shape, I8, scale=1 / 256, zero_point=-128)
    else:
        y = w.tensor("y", shape, I8, scale=1 / 128, zero_point=0)
    w.op(opcode, [x], [y])
    xs = np.arange(-128, 22, dtype=np.int8).reshape(shape) if case == 0 else rand_input(rng, shape)
    compare(w.finish([x], [y]), [xs])


@pytest.mark.parametrize("case", range(6))
def test_svdf_matches_tflm_over_several_steps(case):
    """SVDF keeps state between invokes: compare every step of a sequence."""
    rng = np.random.default_rng(1100 + case)
    batch, rank, n_in, units, mem = 1 + case % 2, 1 + case % 2, *[int(v) for v in rng.integers(2, [20, 8, 6])]
    nf = units * rank
    st_type = I16 if case >= 4 else I8
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    ss, sz = float(rng.uniform(0.05, 0.5)), (0 if st_type == I16 else int(rng.integers(-40, 40)))
    wfs, wts = float(rng.uniform(0.002, 0.03)), float(rng.uniform(0.002, 0.03))
    x = w.tensor("x", [batch, n_in], I8, scale=s, zero_point=z)
    wf = w.tensor("wf", [nf, n_in], I8, data=rng.integers(-127, 128, size=[nf, n_in]), scale=wfs)
    lim = 127 if st_type == I8 else 3000
    wt = w.tensor("wt", [nf, mem], st_type, data=rng.integers(-lim, lim + 1, size=[nf, mem]), scale=wts)
    b = w.tensor("b", [units], I32, data=rng.integers(-2000, 2000, size=units),
                 scale=float(np.float32(np.float32(ss) * np.float32(wts))))
    state = w.tensor("state", [batch, mem * nf], st_type, scale=ss, zero_point=sz, is_variable=True)
    y = w.tensor("y", [batch, units], I8, scale=so, zero_point=zo)
    w.op(S.SVDF, [x, wf, wt, b, state], [y], rank=rank, activation=S.ACT_RELU)
    ours, ref = compare(w.finish([x], [y]), [rand_input(rng, [batch, n_in])])
    for step in range(5):
        compare(None, [rand_input(rng, [batch, n_in])], ours=ours, ref=ref)


@pytest.mark.parametrize("case", range(4))
def test_grouped_conv_and_fc_shapes_match_tflm(case):
    """Grouped CONV_2D (filter depth < input depth) and FULLY_CONNECTED on 3-D input."""
    rng = np.random.default_rng(1200 + case)
    w = ModelWriter()
    (s, z), (so, zo) = q(rng), q(rng)
    if case < 2:
        groups, fc, oc = 2 + case, 2, 2 * (2 + case)
        x = w.tensor("x", [1, 5, 6, groups * fc], I8, scale=s, zero_point=z)
        k, b = weights(w, rng, [oc, 3, 3, fc], case == 0, oc, s, 0)
        y = w.tensor("y", [1, 5, 6, oc], I8, scale=so, zero_point=zo)
        w.op(S.CONV_2D, [x, k, b], [y], padding=S.PADDING_SAME, stride_h=1, stride_w=1, dilation_h=1,
             dilation_w=1, activation=S.ACT_NONE)
        xs = rand_input(rng, [1, 5, 6, groups * fc])
    else:
        x = w.tensor("x", [2, 3, 8], I8, scale=s, zero_point=z)
        k, b = weights(w, rng, [5, 8], case == 2, 5, s, 0)
        y = w.tensor("y", [2, 3, 5] if case == 3 else [6, 5], I8, scale=so, zero_point=zo)
        w.op(S.FULLY_CONNECTED, [x, k, b], [y], keep_num_dims=case == 3)
        xs = rand_input(rng, [2, 3, 8])
    compare(w.finish([x], [y]), [xs])


@pytest.mark.parametrize("pair", [(I16, I8), (I8, I16), (I16, I32), (I16, I16), (F32, I16)])
def test_quantize_between_integer_types_matches_tflm(pair):
    rng = np.random.default_rng(1300 + pair[0] * 16 + pair[1])
    src, dst = pair
    shape = [3, 21]
    w = ModelWriter()
    zp_in = 0 if src == I16 else int(rng.integers(-50, 50))
    zp_out = {I8: int(rng.integers(-50, 50)), I16: 0, I32: 0}[dst]
    x = (w.tensor("x", shape, F32) if src == F32 else
         w.tensor("x", shape, src, scale=float(rng.uniform(1e-4, 0.1)), zero_point=zp_in))
    y = w.tensor("y", shape, dst, scale=float(rng.uniform(1e-4, 0.1)), zero_point=zp_out)
    w.op(S.QUANTIZE, [x], [y])
    compare(w.finish([x], [y]), [rand_input(rng, shape, src)])


# 16x8 depthwise conv takes only int64 bias (TFLM reads it as int64): int32 is a model error, see
# test_infer_model.py
@pytest.mark.parametrize("opcode,bias_type", [(S.FULLY_CONNECTED, I32), (S.FULLY_CONNECTED, S.INT64),
                                              (S.CONV_2D, I32), (S.CONV_2D, S.INT64),
                                              (S.DEPTHWISE_CONV_2D, S.INT64)])
def test_int16x8_kernels_match_tflm(opcode, bias_type):
    rng = np.random.default_rng(1400 + opcode + bias_type)
    w = ModelWriter()
    s, so = float(rng.uniform(1e-4, 1e-3)), float(rng.uniform(1e-4, 1e-3))
    xshape = [2, 24] if opcode == S.FULLY_CONNECTED else [1, 6, 5, 3]
    n = 7 if opcode != S.DEPTHWISE_CONV_2D else 6
    kshape = {S.FULLY_CONNECTED: [n, 24], S.CONV_2D: [n, 3, 3, 3], S.DEPTHWISE_CONV_2D: [1, 3, 3, n]}[opcode]
    ws = rng.uniform(0.002, 0.05, size=n)
    x = w.tensor("x", xshape, I16, scale=s, zero_point=0)
    k = w.tensor("w", kshape, I8, data=rng.integers(-127, 128, size=kshape), scale=list(ws),
                 quantized_dimension=3 if opcode == S.DEPTHWISE_CONV_2D else 0)
    b = w.tensor("b", [n], bias_type, data=rng.integers(-30000, 30000, size=n), scale=list(ws * s))
    y = w.tensor("y", [2, n] if opcode == S.FULLY_CONNECTED else [1, 6, 5, n], I16, scale=so, zero_point=0)
    opts = {} if opcode == S.FULLY_CONNECTED else dict(padding=S.PADDING_SAME, stride_h=1, stride_w=1,
                                                       dilation_h=1, dilation_w=1)
    if opcode == S.DEPTHWISE_CONV_2D:
        opts["depth_multiplier"] = 2
    w.op(opcode, [x, k, b], [y], activation=S.ACT_RELU, **opts)
    compare(w.finish([x], [y]), [rand_input(rng, xshape, I16)])


@pytest.mark.parametrize("backend", ["ref", "numpy"])
def test_a_reshape_shares_its_input_bytes_and_stays_bit_exact(tmp_path, backend):
    # RESHAPE -> depthwise conv (-> 1,25,20,8) -> RESHAPE (1,4000) -> FC: the peak is at the second
    # reshape, where a copy would hold both 4,000-byte tensors; sharing, the arena is the input and one
    from harness.models import micro_speech_like
    path = micro_speech_like(tmp_path / "ms.tflite")
    ours = Interpreter(model_path=str(path), backend=backend)
    ours.allocate_tensors()
    assert ours.arena_bytes == 1968 + 4000          # (the 1,960-byte input rounds up to 16)
    with open(path, "rb") as f:
        ref = runtime.Interpreter.from_bytes(f.read())
    rng = np.random.default_rng(5)
    for _ in range(4):
        compare(None, [rand_input(rng, list(ours.get_input_details()[0]["shape"]))], ref=ref, ours=ours)
