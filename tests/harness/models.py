"""Small int8 models built in the tests with the project's own flatbuffer writer (no ../shared needed)."""
import numpy as np

from edgepoi.infer import schema
from edgepoi_host.tflite_writer import ModelWriter


def fc_model(path, inputs=16, outputs=4, seed=7):
    """x[1, inputs] int8 (scale 0.25 °C, zero point -84) -> FULLY_CONNECTED + RELU -> y[1, outputs] int8."""
    rng = np.random.default_rng(seed)
    w = ModelWriter()
    x = w.tensor("x", [1, inputs], schema.INT8, scale=0.25, zero_point=-84)
    k = w.tensor("w", [outputs, inputs], schema.INT8, data=rng.integers(-127, 128, (outputs, inputs)),
                 scale=[0.01] * outputs)
    b = w.tensor("b", [outputs], schema.INT32, data=rng.integers(-500, 500, outputs),
                 scale=[0.0025] * outputs)
    y = w.tensor("y", [1, outputs], schema.INT8, scale=0.05, zero_point=3)
    w.op(schema.FULLY_CONNECTED, [x, k, b], [y], activation=schema.ACT_RELU)
    path.write_bytes(w.finish(inputs=[x], outputs=[y]))
    return str(path)


def micro_speech_like(path, seed=11):
    """The shape of TFLM's micro_speech model, with random weights (18 KB of int8 weights, 1,960-byte input):
    x[1, 1960] -> RESHAPE [1, 49, 40, 1] -> DEPTHWISE_CONV_2D 10x8, x8, stride 2, SAME, RELU -> [1, 25, 20, 8]
    -> FULLY_CONNECTED 4000 -> 4 -> SOFTMAX."""
    rng = np.random.default_rng(seed)
    w = ModelWriter()
    x = w.tensor("x", [1, 1960], schema.INT8, scale=0.1, zero_point=-128)
    shape = w.tensor("shape", [4], schema.INT32, data=np.array([1, 49, 40, 1]))
    img = w.tensor("img", [1, 49, 40, 1], schema.INT8, scale=0.1, zero_point=-128)
    ks = list(rng.uniform(0.002, 0.02, 8))
    k = w.tensor("k", [1, 10, 8, 8], schema.INT8, data=rng.integers(-127, 128, (1, 10, 8, 8)), scale=ks,
                 quantized_dimension=3)
    kb = w.tensor("kb", [8], schema.INT32, data=rng.integers(-2000, 2000, 8), scale=[s * 0.1 for s in ks])
    h = w.tensor("h", [1, 25, 20, 8], schema.INT8, scale=0.08, zero_point=-128)
    flat = w.tensor("flat", [1, 4000], schema.INT8, scale=0.08, zero_point=-128)
    fshape = w.tensor("fshape", [2], schema.INT32, data=np.array([1, 4000]))
    fw = w.tensor("fw", [4, 4000], schema.INT8, data=rng.integers(-127, 128, (4, 4000)), scale=0.0005)
    fb = w.tensor("fb", [4], schema.INT32, data=rng.integers(-500, 500, 4), scale=0.0005 * 0.08)
    logits = w.tensor("logits", [1, 4], schema.INT8, scale=0.09, zero_point=14)
    y = w.tensor("y", [1, 4], schema.INT8, scale=1.0 / 256, zero_point=-128)
    w.op(schema.RESHAPE, [x, shape], [img], new_shape=[1, 49, 40, 1])
    w.op(schema.DEPTHWISE_CONV_2D, [img, k, kb], [h], padding=schema.PADDING_SAME, stride_h=2, stride_w=2,
         depth_multiplier=8, dilation_h=1, dilation_w=1, activation=schema.ACT_RELU)
    w.op(schema.RESHAPE, [h, fshape], [flat], new_shape=[1, 4000])
    w.op(schema.FULLY_CONNECTED, [flat, fw, fb], [logits])
    w.op(schema.SOFTMAX, [logits], [y], beta=1.0)
    path.write_bytes(w.finish(inputs=[x], outputs=[y]))
    return str(path)
