"""RESHAPE fast path: a flat copy (nothing when input and output share memory).

    from edgepoi.infer.fast_numpy import reshape
    reshape.eval(params, [x, shape_or_None, y])
"""
import numpy as np


def eval(p, arrays):
    x, y = arrays[0], arrays[-1]
    if not np.shares_memory(x, y):
        y.reshape(-1)[:] = x.reshape(-1)
