"""MEAN, int8 or int16 (TFLM QuantizedMeanOrSum: integer sum, multiplier scaled by 1/count).

params: in_shape, axes (resolved, sorted), out_count, reduce_count, in_zp, out_zp, mult, shift,
out_min, out_max, macs. Output order follows the input order with the reduced axes removed (or kept as size 1).
"""
from edgepoi.infer.ops import common as c
from edgepoi.infer.ops import nd
from edgepoi.infer import quant


def prepare(op, tensors):
    x = c.inp(op, tensors, 0, (c.INT8, c.INT16))
    ax_t = c.inp(op, tensors, 1, (c.INT32,))
    y = c.out(op, tensors, 0, (x.type,))
    r = len(x.shape)
    axes = []
    for a in c.const_ints(op, ax_t, "axis"):
        if a < -r or a >= r:
            op.fail("axis %d out of range for rank %d" % (a, r))
        a = a + r if a < 0 else a
        if a not in axes:
            axes.append(a)
    axes.sort()
    rc = 1
    for a in axes:
        rc *= x.shape[a]
    out_count = c.numel(x.shape) // rc if rc else 0
    if c.numel(y.shape) != out_count:
        op.fail("output shape %s does not match reducing %s over %s" % (y.shape, x.shape, axes))
    xb, xzp = c.qparams(op, x, "input")
    yb, yzp = c.qparams(op, y, "output")
    m, s = quant.ratio_multiplier(xb, yb)
    if rc:
        sh = 0
        while (rc >> (sh + 1)) > 0:
            sh += 1
        sh = min(sh, 32, 31 + s)
        m = (m << sh) // rc
        s -= sh
    return {"in_shape": list(x.shape), "axes": axes, "out_count": out_count, "reduce_count": rc,
            "in_zp": xzp, "out_zp": yzp, "mult": m, "shift": s, "out_min": c.QRANGE[y.type][0], "out_max": c.QRANGE[y.type][1], "macs": c.numel(x.shape),
            "int16": y.type == c.INT16}


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    shape, axes = p["in_shape"], p["axes"]
    # strides of the input; output index of each input element via kept dims
    r = len(shape)
    kept = [d for d in range(r) if d not in axes]
    out_strides = [0] * r
    acc = 1
    for d in reversed(kept):
        out_strides[d] = acc
        acc *= shape[d]
    sums = [0] * p["out_count"]
    oi = nd.iter_offsets(shape, out_strides)
    for i in range(c.numel(shape)):
        sums[next(oi)] += x[i]
    lo, hi = p["out_min"], p["out_max"]
    zsum = p["in_zp"] * p["reduce_count"]
    for k in range(p["out_count"]):
        v = quant.multiply_by_quantized_multiplier(sums[k] - zsum, p["mult"], p["shift"]) + p["out_zp"]
        y[k] = lo if v < lo else (hi if v > hi else v)
