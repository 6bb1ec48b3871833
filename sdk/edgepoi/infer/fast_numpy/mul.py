"""MUL fast path (int8): the reference op evaluated once on every (a, b) pair into a 65536-entry table,
then looked up with numpy broadcasting (bit-exact by construction; see _lut.py).

    from edgepoi.infer.fast_numpy import mul
    mul.eval(params, [a, b, y])
"""
from edgepoi.infer.fast_numpy._lut import binary_lookup, binary_table
from edgepoi.infer.ops import mul as ref


def eval(p, arrays):
    a, b, y = arrays[0], arrays[1], arrays[-1]
    t = p.get("_np")
    if t is None:
        t = p["_np"] = binary_table(ref.eval, p, y.dtype)
    binary_lookup(t, a, b, y)
