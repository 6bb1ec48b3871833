"""MAX_POOL_2D fast path: maximum over a strided window view (padding never wins), clamp.
Consumes the params of ``edgepoi.infer.ops.pool.prepare``.

    from edgepoi.infer.fast_numpy import max_pool_2d
    max_pool_2d.eval(params, [x, y])
"""
import numpy as np

from edgepoi.infer.fast_numpy._kern import pool_windows


SUPPORTS_INT16 = True   # int64 sums / the dtype's own minimum: exact for int16 too


def eval(p, arrays):
    x, y = arrays[0], arrays[-1]
    _, oh, ow, _ = p["out_shape"]
    fill = np.iinfo(x.dtype).min
    win = pool_windows(x, p["filter_h"], p["filter_w"], p["stride_h"], p["stride_w"], p["pad_h"],
                       p["pad_w"], oh, ow, fill)
    m = win.max(axis=(3, 4))
    np.clip(m, p["act_min"], p["act_max"], out=y, casting="unsafe")
