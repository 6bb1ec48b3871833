"""Shared state of the viper pooling ops: the window geometry as an int32 array (see ops/pool.py).

    geo = _pool.geometry(p)      # [WRAP, n, h, w, c, oh, ow, fh, fw, sh, sw, ph, pw, act_min, act_max]
"""
from edgepoi.infer.fast_viper import _vq


def geometry(p):
    n, h, wd, ch = p["in_shape"]
    _, oh, ow, _ = p["out_shape"]
    return _vq.ints([_vq.WRAP, n, h, wd, ch, oh, ow, p["filter_h"], p["filter_w"], p["stride_h"],
                     p["stride_w"], p["pad_h"], p["pad_w"], p["act_min"], p["act_max"]])

