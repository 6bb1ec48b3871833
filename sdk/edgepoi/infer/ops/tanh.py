"""TANH, int8 -> int8 (output scale 1/128, zero point 0): TFLM's gemmlowp fixed-point path; int16 ->
int16 (zero points 0, output scale 2**-15): TFLM's table interpolation (``act16``).

params: as ops/logistic.py (int8: in_zp, mult, shift, radius, count, macs; int16: int16, mult, shift,
round, count, macs).
"""
from edgepoi.infer.ops import logistic
from edgepoi.infer import fixedpoint as fp


def prepare(op, tensors):
    return logistic.prepare(op, tensors, out_zp=None, tanh_op=True)


def eval(p, bufs):
    logistic.eval(p, bufs, fp.tanh, 0, 24)
