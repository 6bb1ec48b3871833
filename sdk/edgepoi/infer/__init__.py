"""edgepoi.infer: a bit-exact int8 TFLite interpreter (portable reference kernels, optional fast paths).

Usage::

    from edgepoi.infer import Interpreter, ModelError
    it = Interpreter(model_path="kws.tflite", backend="ref")
    it.allocate_tensors()
"""


class ModelError(ValueError):
    """A model file is malformed or uses something this interpreter does not support."""


# (defined here, not in flatbuf: on MicroPython the parser modules are unloaded after allocate_tensors()
# and re-imported on demand, and every copy must raise this one class)
from edgepoi.infer.interpreter import Interpreter  # noqa: E402,F401
