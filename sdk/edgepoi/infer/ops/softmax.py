"""SOFTMAX, int8 input -> int8 (scale 1/256, zp -128) or int16 (scale 1/65536, zp -32768) output.

TFLM CalculateSoftmaxParams + reference Softmax: beta*scale*2**26 multiplier, gemmlowp exp on Q5.26
differences, Q12 accumulation, fixed-point reciprocal.
params: outer (rows), depth (last dim), input_multiplier, input_left_shift, diff_min, out_min, out_max
(output type range), out_bits (8 or 16), macs.
"""
from edgepoi.infer import quant
from edgepoi.infer import fixedpoint as fp


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0, (c.INT8,))
    y = c.out(op, tensors, 0, (c.INT8, c.INT16))
    c.same_shape(op, x, y)
    if not x.shape:
        op.fail("input must have rank >= 1")
    isb, _ = c.qparams(op, x, "input")
    osb, ozp = c.qparams(op, y, "output")
    if y.type == c.INT8 and (ozp != -128 or osb != quant.bits_of(1.0 / 256)):
        op.fail("int8 output must have scale 1/256 and zero point -128")
    if y.type == c.INT16:
        s = y.scale * 65536
        if ozp != -32768 or not 0.999 <= s <= 1.001:
            op.fail("int16 output must have scale 1/65536 and zero point -32768")
    beta_bits = op.options.get("beta_bits", 0)
    # beta * input_scale * 2**(31 - 5), both float32 -> exact; capped at 2**31 - 1
    bm, be = quant.mul(quant.f32(beta_bits), quant.f32(isb))
    be += 26
    cap = (1 << 31) - 1
    if bm and (be >= 0 and (bm << be) > cap or be < 0 and bm > (cap << -be)):
        bm, be = cap, 0
    mult, shift = quant.quantize_multiplier((bm, be))
    if bm and shift < 0:
        op.fail("softmax beta*scale too small")
    # CalculateInputRadius(5, shift, 31) = floor(31 * 2**26 / 2**shift)
    diff_min = -((31 << 26) >> shift)
    depth = x.shape[-1]
    lo, hi = c.QRANGE[y.type]
    return {"outer": c.numel(x.shape) // depth if depth else 0, "depth": depth,
            "input_multiplier": mult, "input_left_shift": shift, "diff_min": diff_min,
            "out_min": lo, "out_max": hi, "out_bits": 8 if y.type == c.INT8 else 16,
            "macs": 2 * c.numel(x.shape)}


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    depth = p["depth"]
    mult, shift, diff_min = p["input_multiplier"], p["input_left_shift"], p["diff_min"]
    lo, hi = p["out_min"], p["out_max"]
    srdhm = quant.srdhm
    exp = fp.exp_on_negative_values
    for r in range(p["outer"]):
        base = r * depth
        mx = -128
        for k in range(depth):
            if x[base + k] > mx:
                mx = x[base + k]
        exps = []
        total = 0
        for k in range(depth):
            d = x[base + k] - mx
            if d >= diff_min:
                e = exp(srdhm(d << shift, mult), 5)
                exps.append(e)
                total += quant.rdbp(e, 12)  # Rescale<12> of a Q0 value
            else:
                exps.append(None)
        total = quant.wrap32(total)
        scale, nbou = fp.get_reciprocal(total, 12)
        exponent = nbou + 31 - p["out_bits"]
        for k in range(depth):
            e = exps[k]
            if e is None:
                y[base + k] = lo
                continue
            v = quant.rdbp(srdhm(scale, e), exponent) + lo
            y[base + k] = lo if v < lo else (hi if v > hi else v)
