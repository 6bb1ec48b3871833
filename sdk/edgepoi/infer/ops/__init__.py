"""Op registry and the op-module interface of the reference interpreter.

Every supported builtin op has a module ``edgepoi/infer/ops/<name>.py`` exposing exactly:

``prepare(op, tensors) -> params``
    ``op`` is an ``edgepoi.infer.model.Operator`` (``.index``, ``.name``, ``.opcode``, ``.inputs``,
    ``.outputs``, ``.options`` dict); ``tensors`` is the subgraph's list of ``model.Tensor``
    (``.shape``, ``.type``, ``.nq``, ``.scales``/``.scale_bits``/``.zero_points`` (lists decoded on each
    access: read once), ``.scale``/``.scale_bits0``/``.zero_point``, ``.qdim``, ``.data`` for
    constants: read it through ``common.const`` / ``common.row_sums``, since with streamed weights it
    is a ``model.Const`` still in the file). Per-channel multipliers/shifts/biases are ``array('i')``
    (``common.ints``). It validates types, shapes and quantization (raising ``ModelError`` naming the op,
    its index and the fault) and returns ``params``: a plain dict whose fields are documented at the
    top of each op module. Every params dict has ``"macs"`` (multiply-accumulates per invoke).
    Multipliers/shifts follow TFLM: ``shift`` > 0 is a left shift (``multiply_by_quantized_multiplier``),
    offsets are *added* to raw values (``in_offset = -input_zero_point``, ``out_offset = +zero_point``),
    ``act_min``/``act_max`` are the quantized clamp bounds. Shapes are lists of ints. Params of ops
    that accept int16 tensors carry ``int16``: True when the op runs on int16 data (16x8 FC/CONV/DW
    with int64 requantization ``multiply_by_quantized_multiplier64``, int16 ADD with left_shift 15,
    ...); fast modules that handle it set ``SUPPORTS_INT16 = True``, others are bypassed for such ops.

``eval(params, bufs) -> None``
    ``bufs`` holds one buffer per op tensor: first the op's inputs in ``op.inputs`` order (``None`` for an
    absent optional input), then its outputs in ``op.outputs`` order. Each buffer is a flat, indexable
    sequence of the tensor's values in row-major (NHWC) order: int8 as a signed memoryview/array('b'),
    int16 array('h'), int32 array('i'), float32 array('f'). Constant weights may be zero-copy memoryviews
    of the model. ``eval`` only reads inputs and writes outputs; it keeps no state between calls
    (variable tensors are ordinary buffers). This pure-Python code is MicroPython-safe and is the truth.

Fast paths (``edgepoi/infer/fast_numpy/<name>.py``) provide ``eval(params, arrays)`` consuming the same
``params`` with ``arrays`` laid out like ``bufs`` but as numpy arrays shaped like the tensors. A fast
module may also define ``setup(params) -> params``: the Interpreter calls it once after ``prepare`` and
passes what it returns (its own precomputed state; on a small heap, less than the dict) to that fast
module's ``eval`` from then on (``edgepoi.infer.backends.Setup``).

Usage::

    from edgepoi.infer import ops
    mod = ops.module_for(op)          # raises ModelError for an unsupported op
    params = mod.prepare(op, tensors)
    mod.eval(params, bufs)
"""
import gc

from edgepoi.infer import schema
from edgepoi.infer.flatbuf import ModelError

# builtin opcode -> module name in this package (imported lazily: small heaps load only what they need)
REGISTRY = {
    schema.ADD: "add",
    schema.AVERAGE_POOL_2D: "average_pool_2d",
    schema.CONCATENATION: "concatenation",
    schema.CONV_2D: "conv_2d",
    schema.DEPTHWISE_CONV_2D: "depthwise_conv_2d",
    schema.DEQUANTIZE: "dequantize",
    schema.FULLY_CONNECTED: "fully_connected",
    schema.MAX_POOL_2D: "max_pool_2d",
    schema.MEAN: "mean",
    schema.MUL: "mul",
    schema.PAD: "pad",
    schema.QUANTIZE: "quantize",
    schema.RELU: "relu",
    schema.RELU6: "relu6",
    schema.RESHAPE: "reshape",
    schema.SOFTMAX: "softmax",
    schema.STRIDED_SLICE: "strided_slice",
    schema.TRANSPOSE: "transpose",
    schema.LOGISTIC: "logistic",
    schema.SVDF: "svdf",
    schema.TANH: "tanh",
    schema.UNIDIRECTIONAL_SEQUENCE_LSTM: "unidirectional_sequence_lstm",
}

_cache = {}


def module_name(opcode):
    return REGISTRY.get(opcode)


def preload(opcode):
    """Import the module of ``opcode`` if it is supported (no error otherwise)."""
    name = REGISTRY.get(opcode)
    if name is not None and name not in _cache:
        _load(name)


def _load(name):
    gc.collect()  # compiling a module from source needs large free blocks on small heaps
    mod = __import__("edgepoi.infer.ops." + name, None, None, ["prepare"])
    _cache[name] = mod
    return mod


def module_for(op):
    """The reference module for ``op``; ModelError when the op is not supported."""
    name = REGISTRY.get(op.opcode) if not op.custom_code else None
    if name is None:
        raise ModelError("op %d (%s): unsupported operator" % (op.index, op.name))
    mod = _cache.get(name)
    return mod if mod is not None else _load(name)


def unload(keep=()):
    """Drop cached op modules (except ``keep`` names) so a small heap can reclaim them."""
    import sys
    for name in list(_cache):
        if name not in keep:
            del _cache[name]
            sys.modules.pop("edgepoi.infer.ops." + name, None)
    gc.collect()
