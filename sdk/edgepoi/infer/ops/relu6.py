"""RELU6, int8 (TFLM Relu6Quantized): clamp raw values to [input zero point, input-quantized 6.0];
no rescaling (TFLM ignores the output quantization here).

params: lower, upper, count, macs.
"""
from edgepoi.infer import quant


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0, (c.INT8,))
    y = c.out(op, tensors, 0, (c.INT8,))
    c.same_shape(op, x, y)
    xb, xzp = c.qparams(op, x, "input")
    six = quant.quantize_value(6, xb, xzp)
    return {"lower": max(-128, min(127, xzp)), "upper": max(-128, min(127, six)),
            "count": c.numel(x.shape), "macs": c.numel(x.shape)}


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    lo, hi = p["lower"], p["upper"]
    for i in range(p["count"]):
        v = x[i]
        y[i] = lo if v < lo else (hi if v > hi else v)
