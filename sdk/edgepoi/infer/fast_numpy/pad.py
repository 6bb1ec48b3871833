"""PAD fast path: fill with the pad value, copy the input into its window.

    from edgepoi.infer.fast_numpy import pad
    pad.eval(params, [x, paddings, y])
"""


def eval(p, arrays):
    x, y = arrays[0], arrays[-1]
    y[...] = p["pad_value"]
    y[tuple(slice(b, b + n) for b, n in zip(p["before"], p["in_shape"]))] = x
