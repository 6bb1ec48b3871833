"""The numpy UNIDIRECTIONAL_SEQUENCE_LSTM (edgepoi.infer.fast_numpy): its exact float helpers against
the integer formulas, and every path it can take (float64 / float32 recurrent matmul, folded or
scaled input matmul, the int64 path, int16 activations, the saturating clamps) against TFLM, bit for
bit, over several invokes with the states carried.
"""
import numpy as np
import pytest

from edgepoi.infer import act16
from edgepoi.infer.fast_numpy import _lstm
from edgepoi.infer.fast_numpy import unidirectional_sequence_lstm as lstm
from edgepoi.infer.fast_numpy._q import mbqm

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                              reason="tflite-micro (the oracle) is not installed")
from test_infer_lstm import lstm_model, ours  # noqa: E402


def test_activation_arrays_match_act16():
    v = np.arange(-3 * 32768 - 600, 3 * 32768 + 600)
    assert _lstm.sigmoid(v).tolist() == [act16.sigmoid(int(a)) for a in v]
    assert _lstm.tanh(v).tolist() == [act16.tanh(int(a)) for a in v]


def _cases(rng):
    """(multiplier, shift, bound) triples of every kind the LSTM meets: 2**30 with large right shifts
    (cell state), 31-bit with small right shifts (FCs), multipliers with trailing zeros, left shifts."""
    for _ in range(400):
        yield 1 << 30, -int(rng.integers(0, 25)), 1 << 30
        yield int(rng.integers(1 << 30, 1 << 31)), -int(rng.integers(0, 8)), int(rng.integers(1, 1 << 20))
        m = int(rng.integers(1 << 30, 1 << 31)) & ~((1 << int(rng.integers(0, 28))) - 1)
        yield m, -int(rng.integers(0, 31)), int(rng.integers(1, 1 << 22))
        s = int(rng.integers(1, 6))
        yield int(rng.integers(1 << 30, 1 << 31)), s, int(rng.integers(1, 1 << (30 - s)))


def test_float_requantization_equals_mbqm_including_ties():
    rng = np.random.default_rng(7)
    used = 0
    for m, s, bound in _cases(rng):
        consts = _lstm.float_consts([m], [s], [bound])
        if consts is None:
            continue
        used += 1
        M, E, K = consts
        x = np.concatenate([rng.integers(-bound, bound + 1, 300), np.arange(-40, 41), [bound, -bound]])
        if s <= 0:   # accumulators next to the rounding ties: x*m near multiples of 2**(30-s)
            k = rng.integers(-(bound * m >> (30 - s)), (bound * m >> (30 - s)) + 1, 100)
            t = (k << (30 - s)) // m
            x = np.clip(np.concatenate([x, t - 1, t, t + 1]), -bound, bound)
        y = x * M + E
        got = np.trunc(y + np.copysign(K, y)).astype(np.int64)
        assert np.array_equal(got, mbqm(x, m, s)), (m, s, bound)
    assert used > 1200
    assert _lstm.float_consts([(1 << 31) - 1], [-1], [1 << 24]) is None      # beyond float64
    assert _lstm.float_consts([1 << 30], [3], [1 << 29]) is None              # the left shift may wrap


@pytest.mark.parametrize("m,s,zp,lo,hi", [(2146304392, -23, 0, -128, 127), (1139244951, -22, -4, -128, 127),
                                          (1 << 30, -14, 0, -32768, 32767), (1717986918, -20, 9, -128, 127)])
def test_thresholds_reproduce_the_hidden_state_requantization(m, s, zp, lo, hi):
    thr = _lstm.thresholds(m, s, zp, lo, hi)
    rng = np.random.default_rng(8)
    t = thr[(thr > -(1 << 30)) & (thr < 1 << 30)].astype(np.int64)
    x = np.concatenate([rng.integers(-(1 << 30), (1 << 30) + 1, 5000), t - 1, t, t + 1, [-(1 << 30), 1 << 30]])
    want = np.clip(mbqm(x, m, s) + zp, lo, hi)
    assert np.array_equal(lo + thr.searchsorted(x.astype(np.float64), "right"), want)


CASES = [dict(), dict(batch=2, steps=4), dict(batch=3, steps=2, time_major=True),
         dict(cell_pow=-11, clip=0.0, n_cell=7, n_in=9), dict(cell_pow=-15, clip=0.4),
         dict(cell_pow=-16, clip=0.0), dict(zero_gate=1, steps=6, clip=0.0),
         dict(wide=True, batch=2), dict(wide=True, n_cell=16, n_in=8, time_major=True),
         dict(wide=True, cell_pow=-16, clip=0.0), dict(n_cell=96, n_in=6, steps=3)]
PATHS = {"float": {}, "float32": {"_BIG": 0}, "scaled_input": {"_SMALL_IN": 0}, "int64": {"FLOAT_PATH": False}}


def _path(p):
    c = p.get("_np")
    if c is False:
        return "reference"
    if "int" in c:
        return "int64"
    return "float32" if c["M"] is not None else "float"


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", range(len(CASES)))
def test_numpy_lstm_paths_match_tflm(case, path, monkeypatch):
    for k, v in PATHS[path].items():
        monkeypatch.setattr(lstm, k, v)
    kw = CASES[case]
    rng = np.random.default_rng(3300 + case)
    model, shape, dt, states = lstm_model(rng, **kw)
    t = runtime.Interpreter.from_bytes(model, arena_size=1 << 21,
                                       intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    it = ours(model, "numpy")
    assert it._fast[0] is not None, "the numpy LSTM was not used"
    info = np.iinfo(dt)
    for step in range(3):
        x = rng.integers(info.min, info.max + 1, size=shape).astype(dt)
        t.set_input(x, 0)
        t.invoke()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        want, got = t.get_output(0), it.get_tensor(it.get_output_details()[0]["index"])
        assert got.dtype == want.dtype and int(np.count_nonzero(got != want)) == 0, (step, got.ravel()[:12],
                                                                                   want.ravel()[:12])
        for k in states:
            assert np.array_equal(it.get_tensor(k).ravel(), t.GetTensor(k, 0)["tensor_data"].ravel()), (step, k)
    p = it._plan[0][2]
    expect = {"int64": {"reference" if kw.get("wide") else "int64"},
              "float32": {"float", "float32"} if kw.get("wide") else {"float32"}}   # (int16: if exact)
    assert _path(p) in expect.get(path, {"float"})
    if path == "float" and kw.get("cell_pow") == -16:
        assert p["_np"]["qclip"] is not None          # the products' int16 clamp is exercised
    if path == "float" and kw.get("n_cell") == 16:
        assert p["_np"]["rclip"] is not None          # so is the recurrent FC's (int16 activations)


@pytest.mark.parametrize("seed", [6015, 3310])
def test_gate_multipliers_match_tflm_on_wide_layers(seed):
    """100 cells make rare rounding flips likely: with the float32 product of the scales as gate multiplier
    (per-tensor FC style) these seeds differ from TFLM on both backends; TFLM multiplies in double."""
    rng = np.random.default_rng(seed)
    model, shape, dt, states = lstm_model(rng, n_cell=100, n_in=6, steps=3)
    t = runtime.Interpreter.from_bytes(model, arena_size=1 << 21,
                                       intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    it = ours(model, "numpy")
    bad = 0
    for _ in range(3):
        x = rng.integers(-128, 128, size=shape).astype(dt)
        t.set_input(x, 0)
        t.invoke()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        bad += int(np.count_nonzero(t.get_output(0) != it.get_tensor(it.get_output_details()[0]["index"])))
        bad += sum(int(np.count_nonzero(t.GetTensor(k, 0)["tensor_data"].ravel() != it.get_tensor(k).ravel()))
                   for k in states)
    assert bad == 0
