"""TANH, int8 -> int8 (output scale 1/128, zero point 0): TFLM's gemmlowp fixed-point path.

params: as ops/logistic.py (in_zp, mult, shift, radius, count, macs).
"""
from edgepoi.infer.ops import logistic
from edgepoi.infer import fixedpoint as fp


def prepare(op, tensors):
    return logistic.prepare(op, tensors, out_zp=None)


def eval(p, bufs):
    logistic.eval(p, bufs, fp.tanh, 0, 24)
