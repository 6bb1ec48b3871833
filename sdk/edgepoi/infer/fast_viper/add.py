"""ADD for the viper backend (MicroPython), int8 inputs of the output's shape (no broadcasting):
TFLM's left shift 20, per-input and output MultiplyByQuantizedMultiplier (``_vq.mbqm``), clamp.
Broadcasting and int16 adds use the reference op. Bit-exact with ``edgepoi.infer.ops.add``.

Usage (the Interpreter does this for backend "viper")::

    from edgepoi.infer.fast_viper import add
    add.eval(params, bufs)
"""
import micropython

from edgepoi.infer.fast_viper import _vq
from edgepoi.infer.ops import add as _ref
from edgepoi.infer.ops import nd


def _build(p):
    if p.get("int16"):
        return None
    flat = nd.broadcast_strides(p["out_shape"], p["out_shape"])
    if p["strides1"] != flat or p["strides2"] != flat:
        return None
    q = _vq.rq_state((), (), (), 0, 0, 0)  # just the header: WRAP, split, rounding nudge
    geo = _vq.ints([_vq.WRAP, p["count"], p["left_shift"], p["in1_offset"], p["in2_offset"],
                    p["out_offset"], p["in1_mult"], p["in1_shift"], p["in2_mult"], p["in2_shift"],
                    p["out_mult"], p["out_shift"], p["act_min"], p["act_max"]])
    return geo, q


def setup(p):
    """The state once; the params eval needs from then on."""
    st = _vq.cached(p, _build)
    return p if st is None else {"_viper": st}


def eval(p, bufs):
    st = _vq.cached(p, _build)
    if st is None:
        _ref.eval(p, bufs)
        return
    _add(bufs[0], bufs[1], bufs[-1], st[0], st[1])


@micropython.viper
def _add(a, b, y, geo, q) -> int:
    g = ptr32(geo)
    wrap = int(g[0])
    n = int(g[1])
    left = int(g[2])
    o1 = (int(g[3]) << wrap) >> wrap
    o2 = (int(g[4]) << wrap) >> wrap
    oo = (int(g[5]) << wrap) >> wrap
    m1 = int(g[6])
    s1 = (int(g[7]) << wrap) >> wrap
    m2 = int(g[8])
    s2 = (int(g[9]) << wrap) >> wrap
    mo = int(g[10])
    so = (int(g[11]) << wrap) >> wrap
    lo = (int(g[12]) << wrap) >> wrap
    hi = (int(g[13]) << wrap) >> wrap
    mb = _vq.mbqm
    pa = ptr8(a)
    pb = ptr8(b)
    py = ptr8(y)
    for i in range(n):
        v1 = int(mb((int(pa[i] ^ 128) - 128 + o1) << left, m1, s1, q))
        v2 = int(mb((int(pb[i] ^ 128) - 128 + o2) << left, m2, s2, q))
        v = int(mb(v1 + v2, mo, so, q)) + oo
        if v < lo:
            v = lo
        if v > hi:
            v = hi
        py[i] = v
    return 0
