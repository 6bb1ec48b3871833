"""RESHAPE for the viper backend (MicroPython): one block copy of the buffer bytes instead of an
element loop (no viper needed). Falls back to the reference op when the two buffers do not expose the
same number of items (different element kinds).

Usage (the Interpreter does this for backend "viper")::

    from edgepoi.infer.fast_viper import reshape
    reshape.eval(params, bufs)
"""
from edgepoi.infer.ops import reshape as _ref


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    if x is y:
        return
    mx = memoryview(x)
    my = memoryview(y)
    if len(mx) == len(my) and len(mx) >= p["count"]:
        try:
            my[:] = mx
            return
        except ValueError:  # item sizes differ
            pass
    _ref.eval(p, bufs)
