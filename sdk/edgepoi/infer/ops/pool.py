"""Shared prepare for AVERAGE_POOL_2D and MAX_POOL_2D (int8 / int16, NHWC).

params: in_shape [n,h,w,c], out_shape [n,oh,ow,c], filter_h, filter_w, stride_h, stride_w, pad_h,
pad_w, act_min, act_max, macs (one per window element).
"""


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    from edgepoi.infer.ops import geometry
    x = c.inp(op, tensors, 0, (c.INT8, c.INT16))
    y = c.out(op, tensors, 0, (x.type,))
    n, h, wd, ch = c.rank(op, x, 4, "input")
    ys = c.rank(op, y, 4, "output")
    o = op.options
    fh, fw = o["filter_h"], o["filter_w"]
    if fh <= 0 or fw <= 0:
        op.fail("filter size %dx%d must be positive" % (fh, fw))
    if ys[0] != n or ys[3] != ch:
        op.fail("output shape %s does not match input %s" % (ys, x.shape))
    ph, pw = geometry.conv_geometry(op, o, h, wd, fh, fw, ys)
    if c.qparams(op, x, "input") != c.qparams(op, y, "output"):
        op.fail("input and output quantization must be equal")
    lo, hi = c.act_range(op, o.get("activation", 0), y)
    return {"in_shape": [n, h, wd, ch], "out_shape": list(ys), "filter_h": fh, "filter_w": fw,
            "stride_h": o["stride_h"], "stride_w": o["stride_w"], "pad_h": ph, "pad_w": pw,
            "act_min": lo, "act_max": hi, "macs": n * ys[1] * ys[2] * ch * fh * fw,
            "int16": x.type == c.INT16}


def windows(p):
    """Yield (output index base, [input pixel offsets]) for every output pixel."""
    n, h, wd, ch = p["in_shape"]
    _, oh, ow, _ = p["out_shape"]
    fh, fw, sh, sw = p["filter_h"], p["filter_w"], p["stride_h"], p["stride_w"]
    ph, pw = p["pad_h"], p["pad_w"]
    yi = 0
    for b in range(n):
        for oy in range(oh):
            iy0 = oy * sh - ph
            y_lo, y_hi = max(0, -iy0), min(fh, h - iy0)
            for ox in range(ow):
                ix0 = ox * sw - pw
                x_lo, x_hi = max(0, -ix0), min(fw, wd - ix0)
                offs = [((b * h + iy0 + ky) * wd + ix0 + kx) * ch
                        for ky in range(y_lo, y_hi) for kx in range(x_lo, x_hi)]
                yield yi, offs
                yi += ch
