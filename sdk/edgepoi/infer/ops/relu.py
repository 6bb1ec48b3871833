"""RELU, int8: rescale to the output quantization (double in_scale/out_scale), clamp at zero.

params: in_zp, out_zp, mult, shift, act_min, act_max, count, macs.
"""
from edgepoi.infer import quant


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0, (c.INT8,))
    y = c.out(op, tensors, 0, (c.INT8,))
    c.same_shape(op, x, y)
    xb, xzp = c.qparams(op, x, "input")
    yb, yzp = c.qparams(op, y, "output")
    m, s = quant.ratio_multiplier(xb, yb)
    return {"in_zp": xzp, "out_zp": yzp, "mult": m, "shift": s, "act_min": max(-128, yzp),
            "act_max": 127, "count": c.numel(x.shape), "macs": c.numel(x.shape)}


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    mb = quant.multiply_by_quantized_multiplier
    izp, ozp, m, s, lo, hi = p["in_zp"], p["out_zp"], p["mult"], p["shift"], p["act_min"], p["act_max"]
    for i in range(p["count"]):
        v = ozp + mb(x[i] - izp, m, s)
        y[i] = lo if v < lo else (hi if v > hi else v)
