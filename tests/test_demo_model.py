"""The demo's own anomaly model: valid for TFLM, bit-exact in edgepoi's Interpreter (CPython and the real
MicroPython), small, deterministic, cached by ``ensure``, and it finds the synthetic sensor's spikes.

Spike labels here come from the sensor's own random draws (its anomaly branch), not from the
model module's labelling, and detection figures are computed from the int8 outputs TFLM gives.
"""
import os
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from edgepoi.agent import Agent
from edgepoi.infer import Interpreter, schema as S
from edgepoi.infer.model import Model
from edgepoi.sensors.synthetic import SyntheticSensor
from edgepoi_host import bundle, demo_model
from edgepoi_host.runtime.micropython import MicroPython

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                              reason="tflite-micro (the oracle) is not installed")

HELD_OUT = list(range(1, 9))  # the simulator's device seeds; never used in training


class TappedSensor(SyntheticSensor):
    """SyntheticSensor that records whether each reading took the anomaly branch (its 3rd draw)."""

    def read(self):
        self.draws = []
        r = SyntheticSensor.read(self)
        self.spike = self.draws[2] < self.anomaly_rate
        return r

    def _rand(self):
        v = SyntheticSensor._rand(self)
        self.draws.append(v)
        return v


def tapped_windows(seed, readings=1500, window=16, rate=0.02):
    s = TappedSensor(seed=seed, anomaly_rate=rate)
    temps, spikes = [], []
    for _ in range(readings):
        temps.append(s.read()["temp_c"])
        spikes.append(s.spike)
    wins = [temps[i:i + window] for i in range(readings - window + 1)]
    labels = [any(spikes[i:i + window]) for i in range(readings - window + 1)]
    return wins, np.array(labels)


def agent_quantize(model, windows):
    """Quantize windows with the agent's own code and the model's input tensor parameters."""
    it = Interpreter(model_content=model, backend="ref")
    it.allocate_tensors()
    fake = types.SimpleNamespace(in_q=it.get_input_details()[0]["quantization"])
    return np.array([np.frombuffer(bytes(Agent._quantize(fake, w)), dtype=np.int8) for w in windows])


def run_tflm(model, qwins):
    tf = runtime.Interpreter.from_bytes(model)
    out = []
    for q in qwins:
        tf.set_input(q.reshape(1, -1), 0)
        tf.invoke()
        out.append(tf.get_output(0).copy())
    return np.array(out)


def run_ours(model, qwins, backend):
    it = Interpreter(model_content=model, backend=backend)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for q in qwins:
        it.set_tensor(i, q.reshape(1, -1))
        it.invoke()
        out.append(it.get_tensor(o))
    return np.array(out)


def random_windows(rng, n=200):
    """n int8 windows: half uniform over the whole range (every one an outlier for this model), half a
    random level with noise and one bump of 0..12 °C, so the outputs cross the decision boundary."""
    wild = rng.integers(-128, 128, size=(n // 2, 16))
    m = n - n // 2
    near = rng.integers(-12, 13, size=(m, 1)) + rng.integers(-2, 3, size=(m, 16))
    near[np.arange(m), rng.integers(0, 16, size=m)] += rng.integers(0, 49, size=m)
    return np.clip(np.concatenate([wild, near]), -128, 127).astype(np.int8)


@pytest.fixture(scope="module")
def model():
    t = time.perf_counter()
    data = demo_model.build()
    print("\ndemo model: %d bytes, built in %.2f s" % (len(data), time.perf_counter() - t))
    return data


@pytest.fixture(scope="module")
def held_out(model):
    wins, labels = [], []
    for seed in HELD_OUT:
        w, y = tapped_windows(seed)
        wins += w
        labels.append(y)
    return agent_quantize(model, wins), np.concatenate(labels)


def test_model_is_a_small_int8_mlp_with_the_documented_quantization(model):
    assert len(model) < 4096
    m = Model(model)
    g = m.subgraphs[0]
    assert [op.name for op in g.operators] == ["FULLY_CONNECTED"] * 2 + ["LOGISTIC"]
    x, y = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    assert (x.shape, x.type, x.scale, x.zero_point) == ([1, 16], S.INT8, 0.25, -84)
    assert (y.shape, y.type, y.scale, y.zero_point) == ([1, 1], S.INT8, 1 / 256, -128)
    assert m.description == demo_model.description(0, 16)
    it = Interpreter(model_content=model, backend="ref")
    it.allocate_tensors()
    print("MACs %d, arena %d bytes" % (it.macs, it.arena_bytes))
    assert 16 * 16 + 16 <= it.macs < 500


def test_training_seeds_are_disjoint_from_the_held_out_devices():
    assert not set(s for s, _ in demo_model.training_seeds(0)) & set(HELD_OUT)


def test_module_labels_agree_with_the_sensor_anomaly_branch():
    for seed in (3, 1001):
        wins, labels = tapped_windows(seed, 800, rate=0.05)
        temps, ours = demo_model.sensor_windows(seed, 800, 16, 0.05)
        assert np.array_equal(temps, np.array(wins))
        assert np.array_equal(ours.astype(bool), labels)


def test_module_input_quantization_is_the_agents(model, held_out):
    qwins, _ = held_out
    wins, _ = tapped_windows(HELD_OUT[0])
    assert np.array_equal(demo_model.quantize_input(np.array(wins)), qwins[:len(wins)])


def test_build_is_deterministic_and_seeded(model):
    assert demo_model.build() == model
    assert demo_model.build(seed=1) != model
    # another process, single-threaded BLAS: the same bytes
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", "import sys; from edgepoi_host import demo_model; "
                          "sys.stdout.write(demo_model.build().hex())"], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    assert bytes.fromhex(res.stdout) == model


@pytest.mark.parametrize("backend", ["ref", "numpy"])
def test_interpreter_matches_tflm_on_random_windows(model, backend):
    qwins = random_windows(np.random.default_rng(7))
    ours, tflm = run_ours(model, qwins, backend), run_tflm(model, qwins)
    assert ours.dtype == tflm.dtype == np.int8 and ours.shape == tflm.shape
    assert int(np.count_nonzero(ours != tflm)) == 0
    assert len(np.unique(tflm)) > 5  # not only the two saturated outputs


@pytest.mark.parametrize("backend", ["ref", "numpy"])
def test_interpreter_matches_tflm_on_synthetic_windows(model, held_out, backend):
    qwins = held_out[0][::3]
    assert int(np.count_nonzero(run_ours(model, qwins, backend) != run_tflm(model, qwins))) == 0


@pytest.mark.parametrize("rate", [0.02, 0.05])
def test_detects_spikes_on_held_out_sensors(model, held_out, rate):
    if rate == 0.02:
        qwins, labels = held_out
    else:
        wins, labels = zip(*[tapped_windows(s, 800, rate=rate) for s in HELD_OUT])
        qwins, labels = agent_quantize(model, sum(wins, [])), np.concatenate(labels)
    out = run_tflm(model, qwins).reshape(-1).astype(np.int32)
    flagged = out >= 0  # probability (q + 128) / 256 >= 0.5
    recall = flagged[labels].mean()
    false_pos = flagged[~labels].mean()
    print("rate %.2f: %d windows, %d with a spike: recall %.4f, false positives %.4f"
          % (rate, len(labels), labels.sum(), recall, false_pos))
    assert labels.sum() > 100 and (~labels).sum() > 1000
    assert recall >= 0.9 and false_pos <= 0.05


def test_ensure_builds_once_then_reuses_the_file(tmp_path, model, monkeypatch):
    path = str(tmp_path / "demo" / "anomaly.tflite")
    assert demo_model.ensure(path) == path
    with open(path, "rb") as f:
        assert f.read() == model
    before = os.stat(path)
    calls = []
    real_build = demo_model.build
    monkeypatch.setattr(demo_model, "build", lambda *a, **k: calls.append(a) or real_build(*a, **k))
    demo_model.ensure(path)
    after = os.stat(path)
    assert calls == [] and (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # other parameters: rebuilt in place, with the new window as the input shape
    demo_model.ensure(path, window=8)
    assert len(calls) == 1
    with open(path, "rb") as f:
        g = Model(f.read()).subgraphs[0]
    assert g.tensors[g.inputs[0]].shape == [1, 8]
    # a damaged file is replaced
    with open(path, "r+b") as f:
        f.truncate(100)
    demo_model.ensure(path)
    with open(path, "rb") as f:
        assert f.read() == model
    assert sorted(os.listdir(tmp_path / "demo")) == ["anomaly.tflite"]


MP_CODE = """
from edgepoi.infer import Interpreter
it = Interpreter(model_path=%r, backend=%r)
it.allocate_tensors()
i = it.get_input_details()[0]["index"]
o = it.get_output_details()[0]["index"]
for h in %r:
    it.set_tensor(i, bytes.fromhex(h))
    it.invoke()
    print(bytes(it.get_tensor(o)).hex())
print(it.backend)
"""


@pytest.fixture(scope="module")
def mpy_bundle(tmp_path_factory, model):
    out = bundle.build("unix", str(tmp_path_factory.mktemp("demo_model") / "bundle")).out_dir
    path = os.path.join(out, "anomaly.tflite")
    with open(path, "wb") as f:
        f.write(model)
    return out, path


@pytest.mark.parametrize("backend", ["ref", "viper"])
def test_runs_on_micropython_bit_exact_with_tflm(model, held_out, mpy_bundle, backend):
    out, path = mpy_bundle
    qwins, labels = held_out
    pick = np.concatenate([np.where(labels)[0][:4], np.where(~labels)[0][:4]])
    rng = np.random.default_rng(11)
    qwins = np.concatenate([qwins[pick], rng.integers(-128, 128, size=(4, 16)).astype(np.int8)])
    code = MP_CODE % (path, backend, [q.tobytes().hex() for q in qwins])
    res = MicroPython(sdk=False, path=[out], heapsize="96K").run_code(code)
    lines = res.stdout.split()
    assert lines[-1] == backend
    got = [bytes.fromhex(h) for h in lines[:-1]]
    assert got == [t.tobytes() for t in run_tflm(model, qwins)]
    assert got[0] != got[4]  # a spike window and a quiet one differ
    one = MP_CODE % (path, backend, [qwins[0].tobytes().hex()])
    heap = bundle.heap_needed(one, path=[out], sdk=False, lo=16, hi=96)
    bare = bundle.heap_needed("from edgepoi.infer import Interpreter", path=[out], sdk=False, lo=4, hi=96)
    print("MicroPython %s: smallest heap %d KiB to load and run the model (importing the Interpreter "
          "alone: %d KiB; model %d bytes)" % (backend, heap, bare, len(model)))
    assert heap <= 96
