"""TRANSPOSE (any type) with a constant permutation.

params: out_shape, in_strides_perm (input stride of each output dim), count, macs.
"""
from edgepoi.infer.ops import nd


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0)
    perm = c.const_ints(op, c.inp(op, tensors, 1), "perm")
    y = c.out(op, tensors, 0, (x.type,))
    r = len(x.shape)
    if sorted(perm) != list(range(r)):
        op.fail("perm %s is not a permutation of rank %d" % (perm, r))
    if [x.shape[k] for k in perm] != list(y.shape):
        op.fail("output shape %s is not input %s permuted by %s" % (y.shape, x.shape, perm))
    strides = [0] * r
    acc = 1
    for d in range(r - 1, -1, -1):
        strides[d] = acc
        acc *= x.shape[d]
    return {"out_shape": list(y.shape), "perm": perm, "in_strides_perm": [strides[k] for k in perm],
            "count": c.numel(y.shape), "macs": 0}


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    ii = nd.iter_offsets(p["out_shape"], p["in_strides_perm"])
    for i in range(p["count"]):
        y[i] = x[next(ii)]
