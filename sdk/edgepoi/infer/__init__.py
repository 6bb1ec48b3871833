"""edgepoi.infer: a bit-exact int8 TFLite interpreter (portable reference kernels, optional fast paths).

Usage::

    from edgepoi.infer import Interpreter, ModelError
    it = Interpreter(model_path="kws.tflite", backend="ref")
    it.allocate_tensors()
"""
from edgepoi.infer.flatbuf import ModelError  # noqa: F401
from edgepoi.infer.interpreter import Interpreter  # noqa: F401
