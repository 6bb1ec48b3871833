# heapsize: 256K
"""Portable LSTM test: TFLM's MNIST LSTM (UNIDIRECTIONAL_SEQUENCE_LSTM with int16 cell state, the int16
sigmoid/tanh table of ``lut16``) on the reference interpreter, bit-exact with TFLM's golden outputs,
under MicroPython (weights streamed from the file) and CPython. Returns early with a printed note
without the shared models folder.
"""
import gc

from test_infer_portable import MODELS, _read, npz_arrays
from edgepoi.infer import Interpreter
from edgepoi.infer.lut16 import SIGMOID_U16

STEM = "tflm_mnist_lstm_int8"


def test_sigmoid_table_shape():
    assert len(SIGMOID_U16) == 256
    assert SIGMOID_U16[0] == 32768 and SIGMOID_U16[255] == 65535
    for i in range(255):
        assert SIGMOID_U16[i] <= SIGMOID_U16[i + 1]


def test_mnist_lstm_is_bit_exact_with_tflm_goldens():
    path = MODELS + "/" + STEM + ".tflite"
    if _read(path) is None:
        return
    gold = _read(MODELS + "/golden/" + STEM + ".golden.npz")
    if gold is None:
        return
    arrs = npz_arrays(gold, ("inputs", "out_tflm"))
    gold = None
    gc.collect()
    (shape, xs), (_, ys) = arrs["inputs"], arrs["out_tflm"]
    n_in, n_out = len(xs) // shape[0], len(ys) // shape[0]
    it = Interpreter(model_path=path, backend="ref")
    it.allocate_tensors()
    assert it.macs > 100000
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    for k in range(3):
        it.reset_all_variables()   # the LSTM states persist across invokes otherwise
        it.set_tensor(i, xs[k * n_in:(k + 1) * n_in])
        it.invoke()
        got = bytes(memoryview(it.get_tensor(o)))
        assert got == ys[k * n_out:(k + 1) * n_out], "input %d: %r != %r" % (k, got, ys[k * n_out:(k + 1) * n_out])
    it.close()
