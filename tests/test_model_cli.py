"""``edgepoi model info|check|bench`` (edgepoi_host.model_cli.main): output, exit codes, one-line errors.

Models are built here with edgepoi's TFLite writer (so these tests run in a fresh clone); the real
shared models are used where present (EDGEPOI_MODELS), with their goldens.
"""
import os

import numpy as np
import pytest

from edgepoi.infer import schema as S
from edgepoi_host.model_cli import main
from edgepoi_host.tflite_writer import ModelWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.environ.get("EDGEPOI_MODELS", os.path.join(ROOT, "..", "shared", "models"))
KWS = os.path.join(MODELS, "mlperf_tiny_kws01_dscnn_int8.tflite")
need_models = pytest.mark.skipif(not os.path.exists(KWS), reason="real models not found at %s (set "
                                 "EDGEPOI_MODELS)" % os.path.abspath(MODELS))


@pytest.fixture
def small_model(tmp_path):
    """A 2-layer int8 MLP (FC+RELU, FC) written to a .tflite file; returns its path."""
    rng = np.random.default_rng(7)
    w = ModelWriter()
    x = w.tensor("x", [1, 12], S.INT8, scale=0.05, zero_point=-3)
    k1 = w.tensor("w1", [16, 12], S.INT8, data=rng.integers(-127, 128, size=(16, 12)), scale=[0.01] * 16)
    b1 = w.tensor("b1", [16], S.INT32, data=rng.integers(-500, 500, size=16), scale=[0.0005] * 16)
    h = w.tensor("h", [1, 16], S.INT8, scale=0.08, zero_point=-128)
    k2 = w.tensor("w2", [4, 16], S.INT8, data=rng.integers(-127, 128, size=(4, 16)), scale=0.02)
    b2 = w.tensor("b2", [4], S.INT32, data=rng.integers(-500, 500, size=4), scale=0.0016)
    y = w.tensor("y", [1, 4], S.INT8, scale=0.1, zero_point=2)
    w.op(S.FULLY_CONNECTED, [x, k1, b1], [h], activation=S.ACT_RELU)
    w.op(S.FULLY_CONNECTED, [h, k2, b2], [y])
    p = tmp_path / "mlp.tflite"
    p.write_bytes(w.finish([x], [y]))
    return str(p)


def test_info_lists_ops_tensors_macs_arena_and_backends(small_model, capsys):
    assert main(["info", small_model]) == 0
    out = capsys.readouterr().out
    assert "FULLY_CONNECTED" in out and "│       2 │" in out          # op with its count
    assert "scale 0.05, zp -3" in out and "per-channel x16" in out   # per-tensor and per-channel
    assert "1x12" in out and "int8" in out and "int32" in out
    assert "MACs per inference: 256" in out                          # 12*16 + 16*4
    from edgepoi.infer import Interpreter
    it = Interpreter(model_path=small_model, backend="ref")
    it.allocate_tensors()
    assert 16 <= it.arena_bytes <= 32                                  # h alone .. x + h + y
    assert "tensor arena: %d bytes" % it.arena_bytes in out
    for name in ("ref", "numpy", "tflm", "tflite_ref", "litert"):
        assert "│ %s " % name in out


def test_check_passes_on_a_model_without_goldens(small_model, capsys):
    assert main(["check", small_model, "--inputs", "5", "--backend", "numpy", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "random (seed 3)" in out and "no golden npz found" in out
    assert "OK: 0 differing bytes" in out


def test_check_reports_differing_bytes_and_exits_1(small_model, capsys, monkeypatch):
    """A real difference: the numpy FC kernel is made to flip one output byte."""
    from edgepoi.infer.fast_numpy import fully_connected
    orig = fully_connected.eval

    def broken(p, arrays):
        orig(p, arrays)
        if arrays[-1].size == 4:
            arrays[-1].reshape(-1)[1] ^= 1
    monkeypatch.setattr(fully_connected, "eval", broken)
    assert main(["check", small_model, "--inputs", "6", "--backend", "numpy", "--seed", "1"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: 6 differing bytes" in out
    row = [ln for ln in out.splitlines() if "tflm live" in ln][0]
    assert row.rstrip("│ ").endswith("6")


def test_check_uses_a_golden_npz_beside_the_model(small_model, capsys, tmp_path):
    from edgepoi.infer.engines import open_engine
    t = open_engine("tflm", open(small_model, "rb").read())
    t.allocate_tensors()
    xs = np.random.default_rng(0).integers(-128, 128, size=(3, 1, 12)).astype(np.int8)
    outs = []
    for x in xs:
        t.set_tensor(t.get_input_details()[0]["index"], x)
        t.invoke()
        outs.append(t.get_tensor(t.get_output_details()[0]["index"]))
    np.savez(os.path.join(os.path.dirname(small_model), "mlp.golden.npz"), inputs=xs,
             out_tflm=np.stack(outs))
    assert main(["check", small_model, "--inputs", "0", "--backend", "ref"]) == 0
    out = capsys.readouterr().out
    assert "golden mlp.golden.npz" in out and "out_tflm" in out and "OK: 0 differing bytes" in out


def test_bench_prints_latency_and_ratio_to_tflm(small_model, capsys):
    assert main(["bench", small_model, "--backends", "numpy,ref,tflm", "--runs", "3"]) == 0
    out = capsys.readouterr().out
    assert "median of 3 runs" in out
    for name in ("numpy", "ref", "tflm"):
        assert "│ %s " % name in out
    rows = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:-1]]
            for ln in out.splitlines() if ln.startswith("│")}
    assert rows["tflm"][0] == "yes" and rows["tflm"][2] == "1.00"
    assert rows["numpy"][0] == "yes" and float(rows["numpy"][1]) > 0 and float(rows["ref"][2]) > 0


def test_bench_exits_1_on_an_unknown_backend(small_model, capsys):
    assert main(["bench", small_model, "--backends", "numpy,onnx", "--runs", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown backend 'onnx'" in err[0]


@pytest.mark.parametrize("cmd", ["info", "check", "bench"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_corrupted_model_gives_one_line_error_and_exit_1(small_model, capsys, tmp_path, cmd, damage):
    data = open(small_model, "rb").read()
    bad = tmp_path / "bad.tflite"
    if damage == "truncated":
        bad.write_bytes(data[:len(data) // 3])
    elif damage == "garbage":
        bad.write_bytes(data[:4] + b"XXXX" + bytes(range(256)) * 4)
    args = [cmd, str(bad)] + (["--inputs", "2"] if cmd == "check" else [])
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgepoi model: ")
    assert "Traceback" not in err[0]


def test_usage_errors_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    assert main(["check"]) == 2


@need_models
def test_real_models_check_against_goldens_and_bench_survives_a_crashing_engine(capsys):
    """KWS: goldens + random inputs, 0 differing bytes. tflite-runtime segfaults on TFLM's int16-io
    SVDF model: bench probes engines in a child process and reports the crash in its row."""
    assert main(["check", KWS, "--inputs", "3", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "golden mlperf_tiny_kws01_dscnn_int8.golden.npz" in out
    assert "OK: 0 differing bytes" in out
    svdf = os.path.join(MODELS, "tflm_keyword_scrambled_svdf_int8_int16io.tflite")
    assert main(["bench", svdf, "--backends", "tflm,tflite", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    row = [ln for ln in out.splitlines() if ln.startswith("│ tflite ")][0]
    assert "crashed (signal" in row
