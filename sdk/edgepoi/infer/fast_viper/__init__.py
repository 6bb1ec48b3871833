"""Viper fast path of the int8 interpreter (MicroPython only): one module per op with a hot loop, same
names as ``edgepoi/infer/ops/``, each with ``eval(params, bufs)`` consuming the reference op's
``prepare`` params and the same flat buffers. Results are bit-exact with the reference ops; op
configurations a module does not handle (groups, 16x8, broadcasting) run the reference op. Modules with
state define ``setup(params)``: it builds the state once and returns just ``{"_viper": state}``, which
their ``eval`` reads from then on (the params dict is dropped). ``reserve`` and ``finish`` (below) are
the package's hooks for one state block and the shared scratch.

On CPython importing this package raises ImportError (viper exists only on MicroPython).

    from edgepoi.infer import Interpreter
    it = Interpreter(model_path="kws.tflite", backend="viper")
"""
import micropython  # noqa: F401  (ImportError on CPython: no viper there)


def reserve(ops, tensors):
    """In Interpreter(), with the arena (MicroPython): one block for the requant states of the CONV_2D,
    DEPTHWISE_CONV_2D and FULLY_CONNECTED ops (one per output channel)."""
    from edgepoi.infer.fast_viper import _vq
    total = 0
    for op in ops:
        if op.opcode in (3, 4, 9) and op.outputs:  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
            shape = tensors[op.outputs[0]].shape
            if shape:
                total += _vq.state_size(shape[-1])
    _vq.reserve(total)


def finish():
    """After every op's setup: the shared scratch at the size the ops need (see backends.Setup)."""
    from edgepoi.infer.fast_viper import _vq
    _vq.scratch(0, 0)
    _vq.reserve(0)  # (the states keep their block)
