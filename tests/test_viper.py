"""The viper backend under the real MicroPython runs real models bit-exact with TFLM.

For hello_world, micro_speech, the MLPerf Tiny KWS DS-CNN and the emlearn MNIST CNN, a MicroPython
script (the sdk as it ships: the unix-board .mpy bundle, viper kernels compiled to x64 machine code)
loads the model with ``backend="viper"``, reads a file of int8 inputs — golden inputs from
``golden/*.npz`` plus fresh random ones — and prints every output as hex. Outputs must equal, byte for
byte, TFLM's stored goldens (``out_tflm``) and what tflite-micro computes here for the random inputs.
The script also reports how many ops ran a viper kernel, so a silent fallback to the reference fails.
"""
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_DIR = os.environ.get("EDGEPOI_MODELS", os.path.join(ROOT, "..", "shared", "models"))

MODELS = ["tflm_hello_world_int8", "tflm_micro_speech_int8", "mlperf_tiny_kws01_dscnn_int8",
          "emlearn_mnist_cnn_int8"]
N_GOLDEN = 3
N_RANDOM = 2

# The MicroPython side: argv = model, input file. Prints "fast N/M", then one hex line per input.
DEVICE_SCRIPT = """
import sys
from edgepoi.infer import Interpreter
it = Interpreter(model_path=sys.argv[1], backend="viper")
it.allocate_tensors()
d = it.get_input_details()[0]
o = it.get_output_details()[0]
n = 1
for s in d["shape"]:
    n *= s
print("backend", it.backend)
print("fast %d/%d" % (len([f for f in it._fast if f is not None]), len(it._fast)))
with open(sys.argv[2], "rb") as f:
    data = f.read()
for k in range(len(data) // n):
    it.set_tensor(d["index"], data[k * n:(k + 1) * n])
    it.invoke()
    print("out", bytes(it.get_tensor(o["index"])).hex())
"""


def _model(name):
    if not os.path.isdir(MODELS_DIR):
        pytest.skip("shared models folder %s not found (set EDGEPOI_MODELS)" % os.path.abspath(MODELS_DIR))
    golden = os.path.join(MODELS_DIR, "golden", name + ".golden.npz")
    return os.path.join(MODELS_DIR, name + ".tflite"), golden


def _tflm_outputs(path, inputs):
    from tflite_micro.python.tflite_micro import runtime
    outs = []
    for x in inputs:
        it = runtime.Interpreter.from_file(path)  # fresh: TFLM's arena may reuse the input tensor
        it.set_input(x, 0)
        it.invoke()
        outs.append(it.get_output(0).tobytes())
    return outs


@pytest.mark.parametrize("name", MODELS)
def test_viper_backend_matches_tflm_byte_for_byte(micropython, sdk_mpy, tmp_path, name):
    path, golden = _model(name)
    g = np.load(golden)
    assert g["inputs"].dtype == np.int8, "model input is %s" % g["inputs"].dtype
    gold_in = g["inputs"][:N_GOLDEN]
    want = [g["out_tflm"][k].astype(np.int8).tobytes() for k in range(len(gold_in))]
    rng = np.random.default_rng(sum(map(ord, name)))
    rand_in = rng.integers(-128, 128, size=(N_RANDOM,) + gold_in.shape[1:], dtype=np.int8)
    want += _tflm_outputs(path, rand_in)
    inputs = tmp_path / "inputs.bin"
    inputs.write_bytes(gold_in.tobytes() + rand_in.tobytes())
    script = tmp_path / "run_viper.py"
    script.write_text(DEVICE_SCRIPT)
    mp = micropython(heapsize="1M", path=[sdk_mpy], sdk=False)
    res = mp.run([str(script), path, str(inputs)], timeout=300)
    lines = res.stdout.split("\n")
    assert "backend viper" in lines, res.stdout
    fast = [ln for ln in lines if ln.startswith("fast ")][0]
    assert int(fast.split()[1].split("/")[0]) > 0, "no op ran a viper kernel: " + fast
    got = [bytes.fromhex(ln[4:]) for ln in lines if ln.startswith("out ")]
    assert len(got) == len(want), res.stdout
    for k, (a, b) in enumerate(zip(got, want)):
        diff = sum(1 for u, v in zip(a, b) if u != v)
        kind = "golden" if k < len(gold_in) else "random"
        assert a == b, "%s input %d (%s): %d of %d bytes differ: viper %s, TFLM %s" % (
            name, k, kind, diff, len(b), a.hex(), b.hex())
