"""PAD (int8/int16/int32/float32): constant padding with the output zero point (0 for float/int32).

params: in_shape, out_shape, before (padding before each dim), pad_value, macs.
"""
from edgepoi.infer.ops import common as c
from edgepoi.infer.ops import nd


def prepare(op, tensors):
    x = c.inp(op, tensors, 0, (c.INT8, c.INT16, c.INT32, c.FLOAT32))
    pt = c.inp(op, tensors, 1)
    y = c.out(op, tensors, 0, (x.type,))
    pads = c.const_ints(op, pt, "paddings")
    r = len(x.shape)
    if len(pads) != 2 * r or len(y.shape) != r:
        op.fail("paddings %s do not fit input rank %d" % (pads, r))
    before = []
    for d in range(r):
        b, a = pads[2 * d], pads[2 * d + 1]
        if b < 0 or a < 0 or x.shape[d] + b + a != y.shape[d]:
            op.fail("paddings %s do not turn %s into %s" % (pads, x.shape, y.shape))
        before.append(b)
    value = 0
    if x.type in (c.INT8, c.INT16):
        if c.qparams(op, x, "input") != c.qparams(op, y, "output"):
            op.fail("input and output quantization must be equal")
        value = c.qparams(op, y, "output")[1]
    return {"in_shape": list(x.shape), "out_shape": list(y.shape), "before": before,
            "pad_value": value, "macs": 0}


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    out_shape, in_shape, before = p["out_shape"], p["in_shape"], p["before"]
    n = c.numel(out_shape)
    v = p["pad_value"]
    for i in range(n):
        y[i] = v
    # output offset of each input element: strides of the output, shifted by `before`
    r = len(out_shape)
    strides = [0] * r
    acc = 1
    base = 0
    for d in range(r - 1, -1, -1):
        strides[d] = acc
        base += before[d] * acc
        acc *= out_shape[d]
    oi = nd.iter_offsets(in_shape, strides)
    for i in range(c.numel(in_shape)):
        y[base + next(oi)] = x[i]
