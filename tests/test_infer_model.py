"""Model reader, quantization arithmetic, arena planner and the reference interpreter on real models.

Real models come from EDGEPOI_MODELS (default ../shared/models); tests needing them skip with one reason
when the folder is missing. The oracles are TFLM (live, and its outputs stored in golden/*.npz) and
tflite-runtime's parsed view of each model.
"""
import os
import random
import struct

import numpy as np
import pytest

from edgepoi.infer import Interpreter, ModelError, quant, schema as S
from edgepoi.infer.arena import plan
from edgepoi.infer.model import Model
from edgepoi_host.tflite_writer import ModelWriter

MODELS = os.environ.get("EDGEPOI_MODELS",
                        os.path.join(os.path.dirname(__file__), "..", "..", "shared", "models"))
need_models = pytest.mark.skipif(not os.path.isdir(MODELS), reason="real models folder %s not found "
                                 "(set EDGEPOI_MODELS)" % os.path.abspath(MODELS))
# model -> golden inputs checked under the pure-Python reference (big models: a few)
REF_MODELS = {"tflm_hello_world_int8": 20, "tflm_micro_speech_int8": 20, "emlearn_mnist_cnn_int8": 20,
              "mlperf_tiny_kws01_dscnn_int8": 4, "mlperf_tiny_ad01_fc_autoencoder_int8": 20,
              "mlperf_tiny_ic01_resnet8_int8": 2, "mlperf_tiny_vww01_mobilenetv1_025_96x96_int8": 2,
              "tflm_person_detect_int8": 2, "derived_tflm_person_detect_int8_qdimfix": 1,
              "mlperf_tiny_sww01_streaming_wakeword_int8": 4,
              "tflm_keyword_scrambled_svdf_int8_int16io": 20}


def model_bytes(name):
    with open(os.path.join(MODELS, name + ".tflite"), "rb") as f:
        return f.read()


def run(it, x):
    it.reset_all_variables()  # the goldens were produced with variables reset before every input
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], x.reshape(d["shape"]))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


# -- quantization arithmetic ---------------------------------------------------------------------
def f32(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def test_integer_multipliers_equal_the_double_precision_path():
    rng = random.Random(7)
    for _ in range(20000):
        a, b, c = [rng.randrange(0x30000000, 0x41000000) for _ in range(3)]
        fa, fb, fc = f32(a), f32(b), f32(c)
        assert quant.conv_multiplier(a, b, c) == quant.quantize_multiplier_float(fa * fb / fc)
        p32 = struct.unpack("<f", struct.pack("<f", fa * fb))[0]
        assert quant.fc_multiplier(a, b, c) == quant.quantize_multiplier_float(p32 / fc)
        assert quant.ratio_multiplier(a, c) == quant.quantize_multiplier_float(fa / fc)


def test_multiplier_rounding_edges():
    # exactly 1.0 -> (2**30, 1); values rounding up to 2**31 renormalise; tiny ones flush to zero
    assert quant.quantize_multiplier((1, 0)) == (1 << 30, 1)
    assert quant.quantize_multiplier(((1 << 53) - 1, -53)) == (1 << 30, 1)
    assert quant.quantize_multiplier((1, -40)) == (0, 0)
    assert quant.quantize_multiplier((0, 0)) == (0, 0)


def test_fixed_point_primitives_match_gemmlowp_definitions():
    rng = random.Random(3)
    for _ in range(5000):
        a, b = rng.randrange(-2 ** 31, 2 ** 31), rng.randrange(-2 ** 31, 2 ** 31)
        ab = a * b
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        want = int((ab + nudge) / (1 << 31)) if abs(ab) < 2 ** 52 else None
        q = ab + nudge
        want = q // (1 << 31) if q >= 0 else -((-q) // (1 << 31))
        if a == b == -2 ** 31:
            want = 2 ** 31 - 1
        assert quant.srdhm(a, b) == want
        e = rng.randrange(0, 31)
        x = rng.randrange(-2 ** 31, 2 ** 31)
        exact = x / 2 ** e
        r = quant.rdbp(x, e)
        assert abs(r - exact) <= 0.5 and (abs(r - exact) < 0.5 or abs(r) > abs(exact))


# -- reader ---------------------------------------------------------------------------------------
@need_models
@pytest.mark.parametrize("name", sorted(f[:-7] for f in os.listdir(MODELS) if f.endswith(".tflite")
                                        # tflite-runtime rejects the original (qdim 3 on rank-1 biases);
                                        # its derived_..._qdimfix copy is compared instead
                                        and f != "tflm_person_detect_int8.tflite")
                         if os.path.isdir(MODELS) else [])
def test_reader_agrees_with_tflite_runtime(name):
    tfl = pytest.importorskip("tflite_runtime.interpreter")
    m = Model(model_bytes(name))
    g = m.subgraphs[0]
    it = tfl.Interpreter(model_path=os.path.join(MODELS, name + ".tflite"))
    ops = it._get_ops_details()
    assert [op.name for op in g.operators] == [o["op_name"] for o in ops]
    assert [op.inputs for op in g.operators] == [list(o["inputs"]) for o in ops]
    for d in it.get_tensor_details():
        t = g.tensors[d["index"]]
        assert t.name == d["name"]
        assert list(t.shape) == list(d["shape"])
        assert np.dtype(d["dtype"]).name == t.type_name
        qp = d["quantization_parameters"]
        assert np.array_equal(np.array(t.scales, dtype=np.float32), qp["scales"])
        assert list(t.zero_points) == list(qp["zero_points"])


def test_writer_models_round_trip_through_the_reader():
    w = ModelWriter()
    x = w.tensor("in", [1, 3, 3, 2], S.INT8, scale=0.5, zero_point=-1)
    k = w.tensor("k", [1, 2, 2, 4], S.INT8, data=np.arange(16) - 8, scale=[0.1, 0.2, 0.3, 0.4],
                 quantized_dimension=3)
    y = w.tensor("out", [1, 2, 2, 4], S.INT8, scale=0.25, zero_point=3)
    w.op(S.DEPTHWISE_CONV_2D, [x, k, -1], [y], padding=S.PADDING_VALID, stride_w=1, stride_h=1,
         depth_multiplier=2, dilation_h=1, dilation_w=1, activation=S.ACT_RELU6)
    m = Model(w.finish([x], [y]))
    g = m.subgraphs[0]
    op = g.operators[0]
    assert op.name == "DEPTHWISE_CONV_2D" and op.inputs == [0, 1, -1] and op.outputs == [2]
    assert op.options["depth_multiplier"] == 2 and op.options["activation"] == S.ACT_RELU6
    assert op.options["padding"] == S.PADDING_VALID
    t = g.tensors[1]
    assert t.qdim == 3 and len(t.scales) == 4 and np.frombuffer(bytes(t.data), np.int8).tolist() == list(range(-8, 8))
    assert g.tensors[0].name == "in" and g.tensors[0].zero_point == -1


def _model_error(data, **kw):
    with pytest.raises(ModelError) as e:
        it = Interpreter(model_content=data, backend="ref", **kw)
        it.allocate_tensors()
    return str(e.value)


def test_unsupported_op_and_type_name_the_op():
    w = ModelWriter()
    a = w.tensor("a", [4], S.INT8, scale=1.0)
    b = w.tensor("b", [4], S.INT8, scale=1.0)
    y = w.tensor("y", [4], S.INT8, scale=1.0)
    w.op(S.ADD, [a, b], [y])
    w.op(41, [y, b], [a])  # SUB: not supported
    msg = _model_error(w.finish([a, b], [a]))
    assert "op 1" in msg and "SUB" in msg
    w = ModelWriter()
    a = w.tensor("a", [4], S.FLOAT16)
    y = w.tensor("y", [4], S.INT8, scale=1.0)
    w.op(S.QUANTIZE, [a], [y])
    msg = _model_error(w.finish([a], [y]))
    assert "op 0" in msg and "float16" in msg


def test_bad_files_raise_model_error():
    assert "TFL3" in _model_error(b"\x00" * 16)
    _model_error(b"")
    _model_error(b"\x08\x00\x00\x00TFL3")
    w = ModelWriter()
    a = w.tensor("a", [1 << 20, 1 << 10], S.INT8, scale=1.0)
    y = w.tensor("y", [1 << 20, 1 << 10], S.INT8, scale=1.0)
    w.op(S.RELU, [a], [y])
    assert "arena" in _model_error(w.finish([a], [y]), max_arena_bytes=1 << 20)


@need_models
@pytest.mark.parametrize("name", ["tflm_hello_world_int8", "emlearn_mnist_cnn_int8",
                                  "tflm_keyword_scrambled_svdf_int8_int16io"])
def test_fuzzed_models_raise_only_model_error(name):
    """Flipped, overwritten and truncated bytes: loading and running only ever raise ModelError."""
    data = model_bytes(name)
    rng = random.Random(name)
    x = None
    outcomes = {"ok": 0, "ModelError": 0}
    for case in range(300):
        buf = bytearray(data)
        kind = case % 3
        if kind == 0:
            for _ in range(rng.randrange(1, 4)):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            p = rng.randrange(len(buf) - 4)
            buf[p:p + 4] = struct.pack("<I", rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32)]))
        else:
            buf = buf[:rng.randrange(len(buf))]
        try:
            it = Interpreter(model_content=bytes(buf), backend="ref", max_arena_bytes=1 << 20)
            it.allocate_tensors()
            if it.macs < 2e6:
                d = it.get_input_details()[0]
                if x is None or x.size != int(np.prod(d["shape"])) or x.dtype != d["dtype"]:
                    x = np.zeros(d["shape"], dtype=d["dtype"])
                it.set_tensor(d["index"], x.reshape(d["shape"]))
                it.invoke()
            outcomes["ok"] += 1
        except ModelError:
            outcomes["ModelError"] += 1
    assert outcomes["ModelError"] > 50, outcomes


def test_int16_depthwise_with_int32_bias_is_a_model_error():
    w = ModelWriter()
    x = w.tensor("x", [1, 3, 3, 2], S.INT16, scale=0.001, zero_point=0)
    k = w.tensor("w", [1, 2, 2, 2], S.INT8, data=np.ones(8), scale=0.01)
    b = w.tensor("b", [2], S.INT32, data=[1, 2], scale=0.00001)
    y = w.tensor("y", [1, 2, 2, 2], S.INT16, scale=0.001, zero_point=0)
    w.op(S.DEPTHWISE_CONV_2D, [x, k, b], [y], padding=S.PADDING_VALID, stride_h=1, stride_w=1,
         depth_multiplier=1, dilation_h=1, dilation_w=1)
    it = Interpreter(model_content=w.finish([x], [y]), backend="ref")
    with pytest.raises(ModelError, match="op 0 .*int64 bias"):
        it.allocate_tensors()


# -- op chains and 16x8 ops against TFLM (helpers from test_infer_ops) ------------------------------
def test_two_op_model_shares_the_arena():
    from test_infer_ops import compare, q, rand_input, weights
    """A chain of ops: arena reuse keeps only two live activations, and results still match."""
    rng = np.random.default_rng(1)
    w = ModelWriter()
    s, z = q(rng)
    prev = x = w.tensor("x", [1, 64], S.INT8, scale=s, zero_point=z)
    for i in range(4):
        k, b = weights(w, rng, [64, 64], True, 64, s, 0)
        so, zo = q(rng)
        y = w.tensor("y%d" % i, [1, 64], S.INT8, scale=so, zero_point=zo)
        w.op(S.FULLY_CONNECTED, [prev, k, b], [y], activation=S.ACT_RELU)
        prev, s = y, so
    it, _ = compare(w.finish([x], [prev]), [rand_input(rng, [1, 64])])
    assert it.arena_bytes == 2 * 64
    assert it.macs == 4 * 64 * 64


@pytest.mark.parametrize("opcode", [S.ADD, S.MUL, S.MEAN, S.AVERAGE_POOL_2D, S.MAX_POOL_2D])
def test_int16_elementwise_and_pooling_match_tflm(opcode):
    from test_infer_ops import compare, rand_input
    rng = np.random.default_rng(1500 + opcode)
    w = ModelWriter()
    shape = [1, 6, 5, 3]
    x = w.tensor("x", shape, S.INT16, scale=float(rng.uniform(1e-4, 1e-2)), zero_point=0)
    ins, xs = [x], [rand_input(rng, shape, S.INT16)]
    if opcode in (S.ADD, S.MUL):
        ins.append(w.tensor("x2", [3], S.INT16, scale=float(rng.uniform(1e-4, 1e-2)), zero_point=0))
        xs.append(rand_input(rng, [3], S.INT16))
        y = w.tensor("y", shape, S.INT16, scale=float(rng.uniform(1e-4, 1e-2)), zero_point=0)
        w.op(opcode, ins, [y], activation=S.ACT_NONE)
    elif opcode == S.MEAN:
        y = w.tensor("y", [1, 1, 1, 3], S.INT16, scale=float(rng.uniform(1e-4, 1e-2)), zero_point=0)
        w.op(S.MEAN, [x, w.tensor("axes", [2], S.INT32, data=[1, 2])], [y], keep_dims=True)
    else:
        y = w.tensor("y", [1, 3, 3, 3], S.INT16, scale=w.tensors[x].scale[0], zero_point=0)
        w.op(opcode, [x], [y], padding=S.PADDING_SAME, stride_h=2, stride_w=2, filter_h=3, filter_w=2)
    compare(w.finish(ins, [y]), xs)


# -- arena ----------------------------------------------------------------------------------------
def test_arena_planner_reuses_only_dead_buffers():
    offs, total = plan([(100, 0, 1), (50, 1, 2), (100, 2, 3), (10, 3, 3)], align=1)
    # buffer 0 (ops 0-1) and 2 (ops 2-3) never live together: same offset
    assert offs[0] == offs[2]
    assert total == 150  # the 10-byte buffer (op 3) fits where the 50-byte one (ops 1-2) was
    for i, (si, fi, li) in enumerate([(100, 0, 1), (50, 1, 2), (100, 2, 3), (10, 3, 3)]):
        for j, (sj, fj, lj) in enumerate([(100, 0, 1), (50, 1, 2), (100, 2, 3), (10, 3, 3)]):
            if i < j and not (li < fj or lj < fi):
                assert offs[i] + si <= offs[j] or offs[j] + sj <= offs[i]


# -- real models under the reference ---------------------------------------------------------------
@need_models
@pytest.mark.parametrize("name", sorted(REF_MODELS))
def test_reference_matches_tflm_goldens(name):
    g = np.load(os.path.join(MODELS, "golden", name.replace("derived_", "").replace("_qdimfix", "")
                             + ".golden.npz"))
    it = Interpreter(model_content=model_bytes(name), backend="ref")
    it.allocate_tensors()
    assert it.bit_exact and it.backend == "ref" and it.arena_bytes > 0 and it.macs > 0
    for k in range(REF_MODELS[name]):
        y = run(it, g["inputs"][k])
        diff = int(np.count_nonzero(y.ravel() != g["out_tflm"][k].ravel()))
        assert diff == 0, "input %d: %d bytes differ" % (k, diff)


@need_models
@pytest.mark.parametrize("name", ["tflm_hello_world_int8", "tflm_micro_speech_int8", "emlearn_mnist_cnn_int8",
                                  "mlperf_tiny_kws01_dscnn_int8", "mlperf_tiny_ad01_fc_autoencoder_int8"])
def test_reference_matches_live_tflm_on_fresh_inputs(name):
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    data = model_bytes(name)
    it = Interpreter(model_content=data, backend="ref")
    it.allocate_tensors()
    ref = runtime.Interpreter.from_bytes(data)
    d = it.get_input_details()[0]
    rng = np.random.default_rng(len(name))
    for _ in range(3):
        x = rng.integers(-128, 128, size=d["shape"]).astype(np.int8)
        ref.set_input(x, 0)
        ref.invoke()
        assert np.array_equal(run(it, x), ref.get_output(0))


@need_models
def test_person_detection_images_give_the_right_class():
    it = Interpreter(model_content=model_bytes("tflm_person_detect_int8"), backend="ref")
    it.allocate_tensors()
    scores = {}
    for label in ("person", "no_person"):
        with open(os.path.join(MODELS, "testdata", "tflm_person_detection_%s.bmp" % label), "rb") as f:
            bmp = f.read()
        off, w, h, bpp = struct.unpack_from("<I", bmp, 10)[0], *struct.unpack_from("<iiH", bmp, 18)[:2], \
            struct.unpack_from("<H", bmp, 28)[0]
        assert (w, abs(h), bpp) == (96, 96, 8)
        img = np.frombuffer(bmp, dtype=np.uint8, count=96 * 96, offset=off).reshape(96, 96)
        if h > 0:
            img = img[::-1]  # BMP rows are stored bottom-up
        # TFLM's example feeds the pixel bytes reinterpreted as int8 (generate_cc_arrays.py does
        # np.array(image, dtype=np.int8)), top row first
        y = run(it, img.view(np.int8))
        scores[label] = y.ravel()  # [not a person, person]: kPersonIndex is 1 in the example
    assert scores["person"][1] > scores["person"][0]
    assert scores["no_person"][0] > scores["no_person"][1]


def test_interpreter_api_matches_tflite_runtime_conventions():
    w = ModelWriter()
    x = w.tensor("x", [1, 4], S.INT8, scale=0.5, zero_point=1)
    y = w.tensor("y", [1, 4], S.INT8, scale=0.5, zero_point=1)
    w.op(S.RELU, [x], [y])
    it = Interpreter(model_content=w.finish([x], [y]), backend="ref")
    with pytest.raises(RuntimeError):
        it.invoke()
    it.allocate_tensors()
    d = it.get_input_details()[0]
    assert d["dtype"] is np.int8 and d["shape"].dtype == np.int32 and list(d["shape"]) == [1, 4]
    assert d["quantization"] == (0.5, 1) and d["quantization_parameters"]["quantized_dimension"] == 0
    with pytest.raises(ValueError):
        it.set_tensor(d["index"], np.zeros([1, 4], np.float32))
    with pytest.raises(ValueError):
        it.set_tensor(d["index"], np.zeros([1, 5], np.int8))
    it.set_tensor(d["index"], np.array([[-3, 0, 1, 7]], np.int8))
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])
    assert out.tolist() == [[1, 1, 1, 7]]
    out[0, 0] = 99  # a copy: the interpreter's tensor is unchanged
    assert it.get_tensor(it.get_output_details()[0]["index"])[0, 0] == 1
