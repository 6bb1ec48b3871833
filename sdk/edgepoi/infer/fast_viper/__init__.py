"""Viper fast path of the int8 interpreter (MicroPython only): one module per op with a hot loop, same
names as ``edgepoi/infer/ops/``, each with ``eval(params, bufs)`` consuming the reference op's
``prepare`` params and the same flat buffers. Results are bit-exact with the reference ops; op
configurations a module does not handle (groups, 16x8, broadcasting) run the reference op.

On CPython importing this package raises ImportError (viper exists only on MicroPython).

    from edgepoi.infer import Interpreter
    it = Interpreter(model_path="kws.tflite", backend="viper")
"""
import micropython  # noqa: F401  (ImportError on CPython: no viper there)
