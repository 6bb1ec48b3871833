"""int16 LOGISTIC / TANH and UNIDIRECTIONAL_SEQUENCE_LSTM against TFLM (the oracle), bit for bit.

Single-op models built with edgepoi's TFLite writer: the int16 activations over every int16 input at
power-of-two, near-power-of-two and general scales; LSTMs (batch- and time-major, several cell scales,
clips, gates at exactly 0.5 (rounding ties), int16 activations) over several invokes with the state carried between them,
on the ``ref`` and ``numpy`` backends. Plus the sigmoid table (``edgepoi.infer.lut16``) re-derived
from TFLM's behaviour, and the LSTM variants TFLM does not run refused with a ModelError.
"""
import importlib.util
import os

import numpy as np
import pytest

from edgepoi.infer import Interpreter, ModelError, schema as S
from edgepoi_host.tflite_writer import ModelWriter

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                              reason="tflite-micro (the oracle) is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
I8, I16, I32, I64, F32 = S.INT8, S.INT16, S.INT32, S.INT64, S.FLOAT32
ALL16 = np.arange(-32768, 32768, dtype=np.int16)


def tflm(model):
    return runtime.Interpreter.from_bytes(model, arena_size=1 << 21)


def ours(model, backend):
    it = Interpreter(model_content=model, backend=backend)
    it.allocate_tensors()
    return it


def derive_script():
    spec = importlib.util.spec_from_file_location(
        "derive_sigmoid_table", os.path.join(ROOT, "scripts", "derive_sigmoid_table.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stored_sigmoid_table_is_tflms():
    """The table re-measured from TFLM's int16 TANH equals the stored one, and so does the formula."""
    from edgepoi.infer.lut16 import SIGMOID_U16
    script = derive_script()
    measured = script.measure()
    assert len(measured) == 256 and measured[0] == 32768
    assert list(SIGMOID_U16) == measured
    assert script.formula() == measured
    assert script.render(measured) == open(os.path.join(ROOT, "sdk", "edgepoi", "infer", "lut16.py")).read()


SCALES16 = [2 ** -12, 2 ** -11, 2 ** -13, 2 ** -15, 1 / 6144, 0.001, 3.7e-4, 1e-5, 0.0002441, 2.0]


@pytest.mark.parametrize("opcode", [S.LOGISTIC, S.TANH])
@pytest.mark.parametrize("scale", SCALES16)
def test_int16_logistic_tanh_match_tflm_on_every_input(opcode, scale):
    w = ModelWriter()
    x = w.tensor("x", [65536], I16, scale=scale, zero_point=0)
    y = w.tensor("y", [65536], I16, scale=2 ** -15, zero_point=0)
    w.op(opcode, [x], [y])
    model = w.finish([x], [y])
    t = tflm(model)
    t.set_input(ALL16, 0)
    t.invoke()
    want = t.get_output(0)
    for backend in ("ref", "numpy"):
        it = ours(model, backend)
        it.set_tensor(it.get_input_details()[0]["index"], ALL16)
        it.invoke()
        got = it.get_tensor(it.get_output_details()[0]["index"])
        assert got.dtype == want.dtype
        assert int(np.count_nonzero(got != want)) == 0, (backend, np.nonzero(got != want)[0][:8])


@pytest.mark.parametrize("bad", ["out_scale", "in_zp", "out_zp"])
def test_int16_logistic_refuses_what_tflm_refuses(bad):
    w = ModelWriter()
    x = w.tensor("x", [4], I16, scale=2 ** -12, zero_point=3 if bad == "in_zp" else 0)
    y = w.tensor("y", [4], I16, scale=2 ** -14 if bad == "out_scale" else 2 ** -15,
                 zero_point=5 if bad == "out_zp" else 0)
    w.op(S.LOGISTIC, [x], [y])
    with pytest.raises(ModelError, match="LOGISTIC"):
        ours(w.finish([x], [y]), "ref")


def lstm_model(rng, batch=1, steps=3, n_in=5, n_cell=4, time_major=False, wide=False, cell_pow=-12,
               clip=10.0, act=S.ACT_TANH, hzp=None, drop=(), add=(), per_channel=False, bias_type=None,
               x_type=None, state_var=True, zero_gate=None):
    """A single UNIDIRECTIONAL_SEQUENCE_LSTM; ``drop``/``add``: input slots to leave out / fill;
    ``zero_gate`` g: that gate's weights and bias are 0, so its output is exactly sigmoid(0) = 0.5 and
    the products with it hit rounding ties (they tell 2**-15 from TFLM's old 0.00003051757)."""
    w = ModelWriter()
    xt = x_type if x_type is not None else (I16 if wide else I8)
    xs = 2 ** -11 if wide else float(rng.uniform(0.01, 0.05))
    xz = 0 if wide else int(rng.integers(-40, 40))
    hs = 2 ** -15 if wide else float(rng.uniform(1 / 200, 1 / 100))
    hz = 0 if wide else (int(rng.integers(-20, 20)) if hzp is None else hzp)
    shape = [steps, batch, n_in] if time_major else [batch, steps, n_in]
    x = (w.tensor("x", shape, F32) if xt == F32 else w.tensor("x", shape, xt, scale=xs, zero_point=xz))
    ins = [x]
    for k in range(1, 9):
        cols = n_in if k < 5 else n_cell
        ws = float(rng.uniform(0.5, 3.0)) / (64 * np.sqrt(cols) * (xs * (1 << 15 if wide else 128) if k < 5 else 1))
        ws = min(ws, 0.2)
        sc = list(rng.uniform(ws / 2, ws, size=n_cell)) if per_channel else ws
        data = rng.integers(-127, 128, size=[n_cell, cols]) * (zero_gate not in (k - 1, k - 5))
        ins.append(w.tensor("w%d" % k, [n_cell, cols], I8, data=data, scale=sc))
    for k in (9, 10, 11):
        ins.append(w.tensor("peep%d" % k, [n_cell], I16, data=rng.integers(-99, 99, size=n_cell), scale=1e-3)
                   if k in add else -1)
    for k in range(12, 16):
        bt = bias_type or (I64 if wide else I32)
        data = rng.integers(-3000, 3000, size=n_cell) * (zero_gate != k - 12)
        ins.append(w.tensor("b%d" % k, [n_cell], bt, data=data, scale=xs * 0.01))
    ins.append(w.tensor("proj", [n_cell, n_cell], I8, data=np.ones([n_cell, n_cell]), scale=0.01)
               if 16 in add else -1)
    ins.append(-1)
    states = (w.tensor("h", [batch, n_cell], xt if xt != F32 else I8, scale=hs, zero_point=hz,
                       is_variable=state_var),
              w.tensor("c", [batch, n_cell], I16, scale=2.0 ** cell_pow, zero_point=0, is_variable=True))
    ins.extend(states)
    for k in range(20, 24):
        ins.append(w.tensor("ln%d" % k, [n_cell], I16, data=np.full(n_cell, 100), scale=1e-3)
                   if k in add else -1)
    for k in drop:
        ins[k] = -1
    oshape = shape[:2] + [n_cell]
    y = w.tensor("y", oshape, xt if xt != F32 else I8, scale=hs, zero_point=hz)
    w.op(S.UNIDIRECTIONAL_SEQUENCE_LSTM, ins, [y], activation=act, cell_clip=clip, time_major=int(time_major))
    return w.finish([x], [y]), shape, (np.int16 if wide else np.int8), states


LSTM_CASES = [dict(), dict(batch=2, steps=4), dict(batch=3, steps=2, time_major=True),
              dict(cell_pow=-11, clip=0.0, n_cell=7, n_in=9), dict(cell_pow=-15, clip=0.4),
              dict(cell_pow=-9, clip=0.0, hzp=0), dict(batch=2, steps=5, n_cell=16, n_in=3),
              dict(cell_pow=-10, clip=1.5, steps=6),
              dict(wide=True, batch=2), dict(wide=True, time_major=True, batch=2, cell_pow=-13),
              dict(zero_gate=1, steps=6, clip=0.0), dict(zero_gate=3, batch=2, cell_pow=-14)]


@pytest.mark.parametrize("case", range(len(LSTM_CASES)))
def test_lstm_matches_tflm_over_several_invokes(case):
    """The states carry over between invokes (no reset), so every invoke checks them too."""
    rng = np.random.default_rng(3000 + case)
    kw = LSTM_CASES[case]
    model, shape, dt, states = lstm_model(rng, **kw)
    info = np.iinfo(dt)
    t = runtime.Interpreter.from_bytes(model, arena_size=1 << 21,
                                       intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    runs = {b: ours(model, b) for b in ("ref", "numpy")}
    if not kw.get("wide"):
        assert runs["numpy"]._fast[0] is not None, "the numpy fast path was not used"
    for step in range(4):
        x = rng.integers(info.min, info.max + 1, size=shape).astype(dt)
        t.set_input(x, 0)
        t.invoke()
        want = t.get_output(0)
        assert len(np.unique(want)) > 2, "degenerate test model"
        for b, it in runs.items():
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            got = it.get_tensor(it.get_output_details()[0]["index"])
            assert got.dtype == want.dtype and got.shape == want.shape
            assert int(np.count_nonzero(got != want)) == 0, "%s invoke %d\nours %s\ntflm %s" % (
                b, step, got.ravel()[:16], want.ravel()[:16])
            for k in states:   # the hidden and cell states, read back from both
                assert np.array_equal(it.get_tensor(k).ravel(), t.GetTensor(k, 0)["tensor_data"].ravel()), (b, k)


BAD_LSTMS = [(dict(add=(9, 10, 11)), "peephole"), (dict(add=(16,)), "projection"),
             (dict(add=(20, 21, 22, 23)), "layer normalization"), (dict(drop=(1, 5)), "CIFG"),
             (dict(per_channel=True), "per-channel"), (dict(x_type=F32), "type float32"),
             (dict(act=S.ACT_RELU), "activation 1"), (dict(act=6), "activation 6"),
             (dict(bias_type=I64), "has type int64"),
             (dict(state_var=False), "variable"), (dict(drop=(13,)), "forget gate bias")]


@pytest.mark.parametrize("case", range(len(BAD_LSTMS)))
def test_lstm_variants_tflm_does_not_run_are_model_errors(case):
    kw, what = BAD_LSTMS[case]
    model = lstm_model(np.random.default_rng(3100 + case), **kw)[0]
    with pytest.raises(ModelError) as e:
        ours(model, "ref")
    msg = str(e.value)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in msg and what in msg, msg
