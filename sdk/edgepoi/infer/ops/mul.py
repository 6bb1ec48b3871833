"""MUL, int8 or int16 with broadcasting: MultiplyByQuantizedMultiplier((a+o1)*(b+o2)) + out zero point.

params: out_shape, strides1, strides2, in1_offset, in2_offset, out_offset, out_mult, out_shift,
act_min, act_max, count, macs.
"""
from edgepoi.infer.ops import nd
from edgepoi.infer import quant


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    a = c.inp(op, tensors, 0, (c.INT8, c.INT16))
    b = c.inp(op, tensors, 1, (a.type,))
    y = c.out(op, tensors, 0, (a.type,))
    s1 = nd.broadcast_strides(a.shape, y.shape)
    s2 = nd.broadcast_strides(b.shape, y.shape)
    if s1 is None or s2 is None or len(a.shape) > len(y.shape) or len(b.shape) > len(y.shape):
        op.fail("shapes %s and %s do not broadcast to %s" % (a.shape, b.shape, y.shape))
    ab, azp = c.qparams(op, a, "input 0")
    bb, bzp = c.qparams(op, b, "input 1")
    yb, yzp = c.qparams(op, y, "output")
    mo, so = quant.quantize_multiplier(
        quant.round_ratio(quant.mul(quant.f32(ab), quant.f32(bb)), quant.f32(yb), 53))
    lo, hi = c.act_range(op, op.options.get("activation", 0), y)
    n = c.numel(y.shape)
    return {"out_shape": list(y.shape), "strides1": s1, "strides2": s2, "in1_offset": -azp,
            "in2_offset": -bzp, "out_offset": yzp, "out_mult": mo, "out_shift": so,
            "act_min": lo, "act_max": hi, "count": n, "macs": n, "int16": y.type == c.INT16}


def eval(p, bufs):
    a, b, y = bufs[0], bufs[1], bufs[-1]
    mb = quant.multiply_by_quantized_multiplier
    o1, o2, oo = p["in1_offset"], p["in2_offset"], p["out_offset"]
    mo, so = p["out_mult"], p["out_shift"]
    lo, hi = p["act_min"], p["act_max"]
    i1 = nd.iter_offsets(p["out_shape"], p["strides1"])
    i2 = nd.iter_offsets(p["out_shape"], p["strides2"])
    for i in range(p["count"]):
        v = mb((a[next(i1)] + o1) * (b[next(i2)] + o2), mo, so) + oo
        y[i] = lo if v < lo else (hi if v > hi else v)
