"""Helpers shared by the op modules' prepare() functions: tensor checks, padding, activation ranges.

Usage::

    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0, (c.INT8,))
    lo, hi = c.act_range(op, activation, out_t)
"""
import array
import struct
import sys

from edgepoi.infer import quant, schema
from edgepoi.infer.flatbuf import ModelError  # noqa: F401

INT8 = schema.INT8
INT16 = schema.INT16
INT32 = schema.INT32
FLOAT32 = schema.FLOAT32
QRANGE = {schema.INT8: (-128, 127), schema.INT16: (-32768, 32767), schema.UINT8: (0, 255)}


def _get(op, tensors, idx, k, kind, types, optional):
    if k >= len(idx) or idx[k] < 0:
        if optional:
            return None
        op.fail("missing %s %d" % (kind, k))
    t = tensors[idx[k]]
    if types is not None and t.type not in types:
        op.fail("%s %d (%s) has type %s, supported: %s"
                % (kind, k, t.name, t.type_name, ", ".join(schema.TYPE_NAMES[x] for x in types)))
    return t


def inp(op, tensors, k, types=None, optional=False):
    return _get(op, tensors, op.inputs, k, "input", types, optional)


def out(op, tensors, k=0, types=None):
    return _get(op, tensors, op.outputs, k, "output", types, False)


def const(op, t, what):
    """The constant data of t; fails when t is not a constant (buffer-backed) tensor."""
    d = t.data
    if d is None:
        op.fail("%s (%s) must be a constant tensor" % (what, t.name))
    return d if not hasattr(d, "readinto") else d.read()  # model.Const: still in the file


def row_sums(op, t, rows, depth, what):
    """Sum of the signed int8 values of each of ``rows`` rows of ``depth`` values of constant t,
    read in small chunks when the data is still in the model file (no full copy)."""
    d = t.data
    if d is None:
        op.fail("%s (%s) must be a constant tensor" % (what, t.name))
    sums = [0] * rows
    streamed = hasattr(d, "readinto")
    chunk = bytearray(256) if streamed else None
    pos, n = 0, rows * depth
    while pos < n:
        k = min(256, n - pos) if streamed else n
        if streamed:
            part = memoryview(chunk)[:k]
            d.readinto(part, pos)
        else:
            part = d
        for i in range(k):
            v = part[i]
            sums[(pos + i) // depth] += v - 256 if v > 127 else v  # raw views may be unsigned
        pos += k
    return sums


def const_ints(op, t, what):
    """Decode a constant int32/int64 tensor into a list."""
    if t.type not in (schema.INT32, schema.INT64):
        op.fail("%s (%s) must be int32 or int64, not %s" % (what, t.name, t.type_name))
    return _unpack("<i" if t.type == schema.INT32 else "<q", const(op, t, what))


def _unpack(fmt, data):
    size = struct.calcsize(fmt)
    return [struct.unpack_from(fmt, data, k * size)[0] for k in range(len(data) // size)]


def qparams(op, t, what):
    """(scale_bits, zero_point) of a per-tensor quantized tensor."""
    if not t.nq:
        op.fail("%s (%s) is not quantized" % (what, t.name))
    bits = t.scale_bits0
    if (bits >> 23) & 0xFF == 0xFF or bits >> 31 or not bits:
        op.fail("%s (%s) has an invalid scale (zero, negative, inf or nan)" % (what, t.name))
    return bits, t.zero_point


def rank(op, t, n, what):
    if len(t.shape) != n:
        op.fail("%s (%s) must have rank %d, has shape %s" % (what, t.name, n, t.shape))
    return t.shape


def same_shape(op, a, b):
    if list(a.shape) != list(b.shape):
        op.fail("shapes differ: %s vs %s" % (a.shape, b.shape))


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def act_range(op, act, out_t):
    lo, hi = QRANGE[out_t.type]
    sb, zp = qparams(op, out_t, "output")
    try:
        return quant.activation_range(act, sb, zp, lo, hi)
    except ValueError as e:
        op.fail(str(e))


def channel_multipliers(op, in_t, w_t, out_t, n, per_tensor_fc=False):
    """Per-output-channel (multipliers, shifts) as TFLM computes them (per-tensor broadcast): two
    array('i') of n values."""
    isb, _ = qparams(op, in_t, "input")
    osb, _ = qparams(op, out_t, "output")
    nw = w_t.nq  # (scales read one by one: a list of them is a large block on a small heap)
    if not nw:
        op.fail("weights (%s) are not quantized" % w_t.name)
    if nw > 1 and nw != n:
        op.fail("weights have %d scales for %d output channels" % (nw, n))
    mults, shifts = array.array("i", bytes(4 * n)), array.array("i", bytes(4 * n))
    try:
        if nw == 1:
            fn = quant.fc_multiplier if per_tensor_fc else quant.conv_multiplier
            m, s = fn(isb, w_t.scale_bits_at(0), osb)
            for i in range(n):
                mults[i], shifts[i] = m, s
        else:
            for i in range(n):
                mults[i], shifts[i] = quant.conv_multiplier(isb, w_t.scale_bits_at(i), osb)
    except ValueError as e:
        op.fail(str(e))
    return mults, shifts


def ints(values):
    """array('i') of values when all fit int32 (4 bytes each, no boxed ints), else the list."""
    for v in values:
        if not -0x80000000 <= v <= 0x7FFFFFFF:
            return values
    return array.array("i", values)


def activations(op, tensors):
    """(input, output, int16) for ops taking int8 activations, or int16 ones (16x8: zero points 0)."""
    x = inp(op, tensors, 0, (INT8, INT16))
    y = out(op, tensors, 0, (x.type,))
    if x.type == INT16:
        if qparams(op, x, "input")[1] or qparams(op, y, "output")[1]:
            op.fail("int16 activations must have zero point 0")
    return x, y, x.type == INT16


def bias_list(op, tensors, k, n):
    """Decoded int32/int64 bias: array('i') of n values (a list if some need int64); zeros if absent."""
    b = inp(op, tensors, k, (INT32, schema.INT64), optional=True)
    if b is None:
        return array.array("i", bytes(4 * n))
    if b.type == INT32 and b.data is not None and len(b.data) == 4 * n:
        a = array.array("i", bytes(4 * n))  # decoded in place: no list of n ints on the heap
        d = b.data
        if hasattr(d, "readinto") and sys.byteorder == "little":
            d.readinto(_bytes_of(a))  # model.Const: straight from the file
        else:
            for i in range(n):
                a[i] = struct.unpack_from("<i", d, 4 * i)[0]
        return a
    vals = const_ints(op, b, "bias")
    if len(vals) != n:
        op.fail("bias has %d values for %d output channels" % (len(vals), n))
    return ints(vals)


def _bytes_of(a):
    """A writable byte view of array a."""
    try:
        import uctypes
    except ImportError:
        return memoryview(a).cast("B")
    return uctypes.bytearray_at(uctypes.addressof(a), len(a) * 4)


def bias_type(op, tensors, k):
    """Type of optional input k, or None when absent."""
    if k >= len(op.inputs) or op.inputs[k] < 0:
        return None
    return tensors[op.inputs[k]].type
