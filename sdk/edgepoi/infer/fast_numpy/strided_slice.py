"""STRIDED_SLICE fast path: one numpy basic slice with the reference's resolved starts/stops/strides.

    from edgepoi.infer.fast_numpy import strided_slice
    strided_slice.eval(params, [x, begin, end, strides, y])
"""


def _slices(p):
    out = []
    for b, e, s in zip(p["starts"], p["stops"], p["strides"]):
        if s > 0:
            out.append(slice(b, max(e, 0), s))
        else:   # the reference walks i > e; a negative stop means "through index 0"
            out.append(slice(b, e if e >= 0 else None, s))
    return tuple(out)


def eval(p, arrays):
    sl = p.get("_np")
    if sl is None:
        sl = p["_np"] = _slices(p)
    x, y = arrays[0], arrays[-1]
    y.reshape(-1)[:] = x.reshape(p["in_shape"])[sl].reshape(-1)
