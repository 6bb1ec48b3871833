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
