"""RESHAPE (any type): copies the values; the element count must match.

params: count (elements), macs = 0.
"""


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0)
    y = c.out(op, tensors, 0, (x.type,))
    if c.numel(x.shape) != c.numel(y.shape):
        op.fail("cannot reshape %s into %s" % (x.shape, y.shape))
    if x.nq and y.nq and c.qparams(op, x, "input") != c.qparams(op, y, "output"):
        op.fail("input and output quantization must be equal")
    return {"count": c.numel(x.shape), "macs": 0}


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    if x is y:
        return
    for i in range(p["count"]):
        y[i] = x[i]
