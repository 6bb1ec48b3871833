"""DEPTHWISE_CONV_2D, int8 weights (per-tensor or per-channel), int8 or int16 (16x8) activations,
depth multiplier, dilation, NHWC.

params: in_shape [n,h,w,c], out_shape [n,oh,ow,oc], filter_h, filter_w, depth_multiplier,
stride_h, stride_w, dil_h, dil_w, pad_h, pad_w, in_offset, w_offset, out_offset, mults[oc], shifts[oc],
bias[oc], act_min, act_max, int16 (True for 16x8), acc64 (16x8 with int64/absent bias: TFLM then
requantizes with the int64 MultiplyByQuantizedMultiplier; with int32 bias, the int32 one), macs. Filter is [1, fh, fw, oc] with oc = c * depth_multiplier.
"""
from edgepoi.infer.quant import multiply_by_quantized_multiplier as _mbqm
from edgepoi.infer.quant import multiply_by_quantized_multiplier64 as _mbqm64


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    from edgepoi.infer.ops import geometry
    x, y, wide = c.activations(op, tensors)
    w = c.inp(op, tensors, 1, (c.INT8,))
    if wide and c.bias_type(op, tensors, 2) == c.INT32:
        op.fail("16x8 depthwise conv needs an int64 bias (TFLM reads it as int64)")
    n, h, wd, ch = c.rank(op, x, 4, "input")
    one, fh, fw, oc = c.rank(op, w, 4, "filter")
    ys = c.rank(op, y, 4, "output")
    o = op.options
    dm = o.get("depth_multiplier", 0)
    if one != 1 or ch <= 0 or oc % ch:
        op.fail("filter shape %s does not fit input depth %d" % (w.shape, ch))
    if dm != oc // ch:
        # TFLM derives the multiplier from the shapes; a disagreeing option is a broken model
        if dm not in (0, oc // ch):
            op.fail("depth_multiplier %d but filter/input depths give %d" % (dm, oc // ch))
        dm = oc // ch
    if ys[0] != n or ys[3] != oc:
        op.fail("output shape %s does not match batch %d / %d channels" % (ys, n, oc))
    ph, pw = geometry.conv_geometry(op, o, h, wd, fh, fw, ys)
    _, izp = c.qparams(op, x, "input")
    _, wzp = c.qparams(op, w, "filter")
    _, ozp = c.qparams(op, y, "output")
    mults, shifts = c.channel_multipliers(op, x, w, y, oc)
    lo, hi = c.act_range(op, o.get("activation", 0), y)
    return {"in_shape": [n, h, wd, ch], "out_shape": list(ys), "filter_h": fh, "filter_w": fw,
            "depth_multiplier": dm, "stride_h": o["stride_h"], "stride_w": o["stride_w"],
            "dil_h": o["dilation_h"], "dil_w": o["dilation_w"], "pad_h": ph, "pad_w": pw,
            "in_offset": -izp, "w_offset": -wzp, "out_offset": ozp, "mults": mults, "shifts": shifts,
            "bias": c.bias_list(op, tensors, 2, oc), "act_min": lo, "act_max": hi, "int16": wide,
            "acc64": wide and c.bias_type(op, tensors, 2) != c.INT32,
            "macs": n * ys[1] * ys[2] * oc * fh * fw}


def eval(p, bufs):
    x, w, y = bufs[0], bufs[1], bufs[-1]
    n, h, wd, ch = p["in_shape"]
    _, oh, ow, oc = p["out_shape"]
    fh, fw, dm = p["filter_h"], p["filter_w"], p["depth_multiplier"]
    sh, sw, dh, dw = p["stride_h"], p["stride_w"], p["dil_h"], p["dil_w"]
    ph, pw = p["pad_h"], p["pad_w"]
    ioff, woff, ooff = p["in_offset"], p["w_offset"], p["out_offset"]
    mults, shifts, bias = p["mults"], p["shifts"], p["bias"]
    lo, hi = p["act_min"], p["act_max"]
    mb = _mbqm64 if p["acc64"] else _mbqm
    yi = 0
    for b in range(n):
        for oy in range(oh):
            iy0 = oy * sh - ph
            for ox in range(ow):
                ix0 = ox * sw - pw
                taps = []
                for ky in range(fh):
                    iy = iy0 + ky * dh
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(fw):
                        ix = ix0 + kx * dw
                        if 0 <= ix < wd:
                            taps.append((((b * h + iy) * wd + ix) * ch, (ky * fw + kx) * oc))
                for o in range(oc):
                    ic = o // dm
                    acc = 0
                    for xo, fo in taps:
                        acc += (w[fo + o] + woff) * (x[xo + ic] + ioff)
                    acc += bias[o]
                    v = mb(acc, mults[o], shifts[o]) + ooff
                    y[yi] = lo if v < lo else (hi if v > hi else v)
                    yi += 1
