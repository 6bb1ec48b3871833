"""QUANTIZE: float32 -> int8/int16 (round half away from zero of float32 x/scale), or requantize
int8/int16 -> int8/int16/int32 with MultiplyByQuantizedMultiplier(x - in_zp) + out_zp (TFLM).

params: mode ("float" or "requant"), scale (float32 value, float mode), in_zp, out_zp, mult, shift,
out_min, out_max, count, macs.
"""
import struct

from edgepoi.infer.ops import common as c
from edgepoi.infer import quant

_RANGES = {c.INT8: (-128, 127), c.INT16: (-32768, 32767), c.INT32: (-2147483648, 2147483647)}


def prepare(op, tensors):
    x = c.inp(op, tensors, 0, (c.FLOAT32, c.INT8, c.INT16))
    y = c.out(op, tensors, 0, (c.INT8, c.INT16, c.INT32))
    c.same_shape(op, x, y)
    if y.nq > 1:
        op.fail("per-channel quantize is not supported")
    yb, yzp = c.qparams(op, y, "output")
    lo, hi = _RANGES[y.type]
    p = {"in_zp": 0, "out_zp": yzp, "mult": 0, "shift": 0, "scale": 0.0, "out_min": lo, "out_max": hi,
         "count": c.numel(y.shape), "macs": c.numel(y.shape),
         "int16": x.type == c.INT16 or y.type != c.INT8}
    if x.type == c.FLOAT32:
        if y.type == c.INT32:
            op.fail("float32 -> int32 quantize is not supported")
        p["mode"] = "float"
        p["scale"] = struct.unpack("<f", struct.pack("<I", yb))[0]
    else:
        xb, xzp = c.qparams(op, x, "input")
        p["mode"] = "requant"
        p["in_zp"] = xzp
        p["mult"], p["shift"] = quant.ratio_multiplier(xb, yb)
    return p


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    lo, hi, zp = p["out_min"], p["out_max"], p["out_zp"]
    if p["mode"] == "float":
        s = p["scale"]
        pk, up = struct.pack, struct.unpack
        for i in range(p["count"]):
            q = up("<f", pk("<f", x[i] / s))[0]
            if q != q:
                v = zp
            elif q >= 0:
                v = int(q + 0.5) + zp if q < 4e9 else hi
            else:
                v = -int(0.5 - q) + zp if q > -4e9 else lo
            y[i] = lo if v < lo else (hi if v > hi else v)
        return
    mb = quant.multiply_by_quantized_multiplier
    izp, m, sh = p["in_zp"], p["mult"], p["shift"]
    for i in range(p["count"]):
        v = mb(x[i] - izp, m, sh) + zp
        y[i] = lo if v < lo else (hi if v > hi else v)
