"""AVERAGE_POOL_2D, int8/int16: TFLM rounding average over the in-image part of each window.

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
        cnt = len(offs)
        if cnt == 0:
            raise ValueError("average pool window outside the image")
        half = cnt // 2
        for k in range(ch):
            acc = 0
            for o in offs:
                acc += x[o + k]
            # C integer division truncates toward zero
            if acc > 0:
                v = (acc + half) // cnt
            else:
                v = -((half - acc) // cnt)
            y[yi + k] = lo if v < lo else (hi if v > hi else v)
