"""LOGISTIC, int8 -> int8 (output scale 1/256, zero point -128): TFLM's gemmlowp fixed-point path;
int16 -> int16 (zero points 0, output scale 2**-15): TFLM's table interpolation (``act16``).

params (int8): in_zp, mult, shift (input scale * 2**27 as frexp multiplier), radius, count, macs.
params (int16): int16 True, mult, shift, round (the input scaling of ``act16.input_scaling``), count,
macs. The same params serve TANH (ops/tanh.py), whose int8 output has zero point 0.
"""
from edgepoi.infer import fixedpoint as fp
from edgepoi.infer import quant


def prepare(op, tensors, out_zp=-128, tanh_op=False):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0, (c.INT8, c.INT16))
    y = c.out(op, tensors, 0, (x.type,))
    c.same_shape(op, x, y)
    xb, xzp = c.qparams(op, x, "input")
    yb, yzp = c.qparams(op, y, "output")
    n = c.numel(x.shape)
    if x.type == c.INT16:
        from edgepoi.infer import act16
        from edgepoi.infer.flatbuf import ModelError
        if xzp or yzp:
            op.fail("int16 input and output must have zero point 0")
        r, pot = act16.checked_log2(yb)
        if not pot or r != -15:
            op.fail("int16 output scale must be 2**-15")
        try:
            mult, shift, rnd = act16.input_scaling(xb, tanh_op)
        except ModelError as e:  # raised without the op's name
            op.fail(str(e))
        return {"int16": True, "mult": mult, "shift": shift, "round": rnd, "count": n, "macs": n}
    if out_zp is not None and yzp != out_zp:
        op.fail("int8 output zero point must be %d, is %d" % (out_zp, yzp))
    m, e = quant.f32(xb)
    mult, shift = quant.frexp_multiplier((m, e + 27))
    r = 15 << 27
    radius = r >> shift if shift >= 0 else r << -shift
    return {"in_zp": xzp, "mult": mult, "shift": shift, "radius": radius, "count": n, "macs": n}


def eval(p, bufs, fn=fp.logistic, out_offset=-128, out_shift=23):
    if p.get("int16"):
        from edgepoi.infer import act16
        act16.eval16(p, bufs, act16.sigmoid if fn is fp.logistic else act16.tanh)
        return
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
