"""DEQUANTIZE: int8/int16 -> float32, float32(scale * (x - zero_point)) (TFLM, double product).

params: scale (float32 value), zero_point, count, macs.
"""
import struct



def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0, (c.INT8, c.INT16))
    y = c.out(op, tensors, 0, (c.FLOAT32,))
    c.same_shape(op, x, y)
    if x.nq > 1:
        op.fail("per-channel dequantize is not supported")
    xb, xzp = c.qparams(op, x, "input")
    return {"scale": struct.unpack("<f", struct.pack("<I", xb))[0], "zero_point": xzp,
            "count": c.numel(x.shape), "macs": c.numel(x.shape)}


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    s, zp = p["scale"], p["zero_point"]
    for i in range(p["count"]):
        y[i] = s * (x[i] - zp)  # array('f') stores the float32 rounding of the double product
