"""DEQUANTIZE fast path: a table of the reference op's own outputs for every int8/int16 input value,
looked up with numpy (bit-exact by construction; see _lut.py); float inputs run the reference.

    from edgepoi.infer.fast_numpy import dequantize
    dequantize.eval(params, [x, y])
"""
from edgepoi.infer.fast_numpy._lut import unary_eval
from edgepoi.infer.ops import dequantize as ref

SUPPORTS_INT16 = True   # the table holds the reference's own int16 results too


def eval(p, arrays):
    unary_eval(ref, p, arrays)
