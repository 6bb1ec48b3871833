"""MEAN fast path (int8): integer sums over the reduced axes, then the same requantization as the
reference (multiplier already scaled by 1/count in prepare). Consumes ``ops.mean`` params.

    from edgepoi.infer.fast_numpy import mean
    mean.eval(params, [x, axes, y])
"""
import numpy as np

from edgepoi.infer.fast_numpy._q import Requant


def eval(p, arrays):
    rq = p.get("_np")
    if rq is None:
        rq = p["_np"] = Requant(p["mult"], p["shift"], -p["in_zp"] * p["reduce_count"], p["out_zp"],
                                -128, 127, 1)
    x, y = arrays[0], arrays[-1]
    s = x.sum(axis=tuple(p["axes"]), dtype=np.int64)
    rq.apply(s.reshape(-1, 1), y.reshape(-1, 1))
