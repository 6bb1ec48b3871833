"""AVERAGE_POOL_2D fast path: window sums from a strided view, TFLM's round-half-away division by the
number of in-image taps, clamp. Consumes the params of ``edgepoi.infer.ops.pool.prepare``.

    from edgepoi.infer.fast_numpy import average_pool_2d
    average_pool_2d.eval(params, [x, y])
"""
import numpy as np

from edgepoi.infer.fast_numpy._kern import div_round_away, pool_windows, valid_counts


SUPPORTS_INT16 = True   # int64 sums / the dtype's own minimum: exact for int16 too


def _prepare(p):
    n, h, w, ch = p["in_shape"]
    _, oh, ow, _ = p["out_shape"]
    fh, fw, sh, sw, ph, pw = (p["filter_h"], p["filter_w"], p["stride_h"], p["stride_w"], p["pad_h"],
                              p["pad_w"])
    cnt = valid_counts(h, w, fh, fw, sh, sw, ph, pw, oh, ow).astype(np.int64)
    if (cnt <= 0).any():
        raise ValueError("average pool window outside the image")
    glob = oh == 1 and ow == 1 and ph == 0 and pw == 0 and fh >= h and fw >= w
    c = (cnt[None, :, :, None], glob)
    p["_np"] = c
    return c


def eval(p, arrays):
    cnt, glob = p.get("_np") or _prepare(p)
    x, y = arrays[0], arrays[-1]
    if glob:
        s = x.sum(axis=(1, 2), dtype=np.int64, keepdims=True)
    else:
        _, oh, ow, _ = p["out_shape"]
        win = pool_windows(x, p["filter_h"], p["filter_w"], p["stride_h"], p["stride_w"], p["pad_h"],
                           p["pad_w"], oh, ow, 0)
        s = win.sum(axis=(3, 4), dtype=np.int64)
    v = div_round_away(s, cnt)
    np.clip(v, p["act_min"], p["act_max"], out=y, casting="unsafe")
