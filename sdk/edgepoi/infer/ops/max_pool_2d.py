"""MAX_POOL_2D, int8/int16: maximum over the in-image part of each window, then clamp.

params: see ops/pool.py.
"""
from edgepoi.infer.ops import pool


def prepare(op, tensors):
    return pool.prepare(op, tensors)


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    ch = p["in_shape"][3]
    lo, hi = p["act_min"], p["act_max"]
    for yi, offs in pool.windows(p):
        for k in range(ch):
            m = -32769
            for o in offs:
                v = x[o + k]
                if v > m:
                    m = v
            y[yi + k] = lo if m < lo else (hi if m > hi else m)
