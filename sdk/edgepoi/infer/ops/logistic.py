"""LOGISTIC, int8 -> int8 (output scale 1/256, zero point -128): TFLM's gemmlowp fixed-point path.

params: in_zp, mult, shift (input scale * 2**27 as frexp multiplier), radius, count, macs.
The same params serve TANH (ops/tanh.py), whose output has zero point 0.
"""
from edgepoi.infer import fixedpoint as fp
from edgepoi.infer import quant


def prepare(op, tensors, out_zp=-128):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0, (c.INT8,))
    y = c.out(op, tensors, 0, (c.INT8,))
    c.same_shape(op, x, y)
    xb, xzp = c.qparams(op, x, "input")
    _, yzp = c.qparams(op, y, "output")
    if out_zp is not None and yzp != out_zp:
        op.fail("int8 output zero point must be %d, is %d" % (out_zp, yzp))
    m, e = quant.f32(xb)
    mult, shift = quant.frexp_multiplier((m, e + 27))
    r = 15 << 27
    radius = r >> shift if shift >= 0 else r << -shift
    return {"in_zp": xzp, "mult": mult, "shift": shift, "radius": radius, "count": c.numel(x.shape),
            "macs": c.numel(x.shape)}


def eval(p, bufs, fn=fp.logistic, out_offset=-128, out_shift=23):
    x, y = bufs[0], bufs[-1]
    zp, m, s, r = p["in_zp"], p["mult"], p["shift"], p["radius"]
    mb = quant.multiply_by_quantized_multiplier
    for i in range(p["count"]):
        v = x[i] - zp
        if v <= -r:
            y[i] = -128
        elif v >= r:
            y[i] = 127
        else:
            o = quant.rdbp(fn(mb(v, m, s), 4), out_shift) + out_offset
            y[i] = -128 if o < -128 else (127 if o > 127 else o)
