"""ADD, int8 or int16 with broadcasting (TFLM: left_shift 20 for int8, 15 for int16, per-input and
output multipliers; TFLM ignores pot_scale_int16 and so do we).

params: out_shape, strides1, strides2 (broadcast strides of each input over out_shape), left_shift,
in1_offset, in2_offset, out_offset, in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift,
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
    left = 20 if y.type == c.INT8 else 15
    fa, fb, fy = quant.f32(ab), quant.f32(bb), quant.f32(yb)
    big = fa if ab >= bb else fb  # positive floats order like their bit patterns
    twice_max = (big[0], big[1] + 1)
    m1, s1_ = quant.quantize_multiplier(quant.round_ratio(fa, twice_max, 53))
    m2, s2_ = quant.quantize_multiplier(quant.round_ratio(fb, twice_max, 53))
    mo, so = quant.quantize_multiplier(quant.round_ratio(twice_max, (fy[0], fy[1] + left), 53))
    lo, hi = c.act_range(op, op.options.get("activation", 0), y)
    n = c.numel(y.shape)
    return {"out_shape": list(y.shape), "strides1": s1, "strides2": s2, "left_shift": left,
            "in1_offset": -azp, "in2_offset": -bzp, "out_offset": yzp, "in1_mult": m1, "in1_shift": s1_,
            "in2_mult": m2, "in2_shift": s2_, "out_mult": mo, "out_shift": so,
            "act_min": lo, "act_max": hi, "count": n, "macs": n, "int16": y.type == c.INT16}


def eval(p, bufs):
    a, b, y = bufs[0], bufs[1], bufs[-1]
    mb = quant.multiply_by_quantized_multiplier
    left = p["left_shift"]
    o1, o2, oo = p["in1_offset"], p["in2_offset"], p["out_offset"]
    m1, s1, m2, s2 = p["in1_mult"], p["in1_shift"], p["in2_mult"], p["in2_shift"]
    mo, so = p["out_mult"], p["out_shift"]
    lo, hi = p["act_min"], p["act_max"]
    i1 = nd.iter_offsets(p["out_shape"], p["strides1"])
    i2 = nd.iter_offsets(p["out_shape"], p["strides2"])
    for i in range(p["count"]):
        v1 = mb((a[next(i1)] + o1) << left, m1, s1)
        v2 = mb((b[next(i2)] + o2) << left, m2, s2)
        v = mb(v1 + v2, mo, so) + oo
        y[i] = lo if v < lo else (hi if v > hi else v)
