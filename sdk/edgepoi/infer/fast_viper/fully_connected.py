"""FULLY_CONNECTED for the viper backend (MicroPython): unrolled int8 dot products per unit.

Per batch row the input is widened into an int32 vector of (x + in_offset), in chunks of at most
CHUNK values so the scratch stays small (micro_speech has depth 4000); each weight row chunk is a
contiguous dot product with it, weight bytes read as ``b ^ 128`` = w + 128 and the extra
(128 - w_offset) times the input sum subtracted once per output. The model's bias is added in the
requantization (``_vq.requant``). 16x8 models use the reference op. Bit-exact with
``edgepoi.infer.ops.fully_connected``.

``eval_rows`` computes a slice of the output units from just their weight rows: the Interpreter streams
a large layer's weights from the model file in row chunks (``stream_weights``).

Usage (the Interpreter does this for backend "viper")::

    from edgepoi.infer.fast_viper import fully_connected
    fully_connected.eval(params, bufs)
"""
import micropython

from edgepoi.infer.fast_viper import _vq
from edgepoi.infer.ops import fully_connected as _ref

CHUNK = 128


def _build(p):
    if p.get("int16"):
        return None
    q = _vq.op_state(p)
    if q is None:
        return None
    # [..., first unit, unit count, depth from, depth to, weight row stride, 1: zero the sums first,
    # 2: requantize after]
    geo = _vq.ints([_vq.WRAP, p["batches"], p["depth"], p["units"], p["in_offset"] - 128,
                    p["w_offset"] - 128, CHUNK, 0, p["units"], 0, p["depth"], p["depth"], 3])
    return geo, q, p["depth"], p["units"]


def setup(p):
    """The state once (and its need of the shared scratch); the params eval needs from then on."""
    st = _vq.cached(p, _build)
    if st is None:
        return p
    _vq.need(min(st[2], CHUNK), st[3])
    return {"_viper": st}


def eval(p, bufs):
    st = _vq.cached(p, _build)
    if st is None:
        _ref.eval(p, bufs)
        return
    eval_rows(p, bufs, 0, st[3])


def eval_rows(p, bufs, u0, u1):
    """Units u0..u1-1 only, bufs[1] holding just their weight rows (streamed weights)."""
    st = _vq.cached(p, _build)
    if st is None:
        _ref.eval_rows(p, bufs, u0, u1)
        return
    geo, q, depth, units = st
    pat, acc = _vq.scratch(min(depth, CHUNK), units)
    geo[7], geo[8] = u0, u1 - u0  # first unit and unit count (requant reads the state from u0)
    geo[9], geo[10], geo[11], geo[12] = 0, depth, depth, 3
    _fc(bufs[0], bufs[1], bufs[-1], geo, (pat, acc, q))


def eval_seg(p, bufs, u, d0, d1, acc):
    """Unit u over depth d0..d1-1 only, batch 1, bufs[1] holding just w[u, d0:d1] (see the reference
    op's eval_seg); the partial sum stays in the shared accumulator between the segments of a row
    (acc, the caller's, is the reference op's)."""
    st = _vq.cached(p, _build)
    if st is None:
        _ref.eval_seg(p, bufs, u, d0, d1, acc)
        return
    geo, q, depth, units = st
    pat, sums = _vq.scratch(min(depth, CHUNK), units)
    geo[7], geo[8] = u, 1
    geo[9], geo[10], geo[11] = d0, d1, d1 - d0
    geo[12] = (1 if d0 == 0 else 0) | (2 if d1 == depth else 0)
    _fc(bufs[0], bufs[1], bufs[-1], geo, (pat, sums, q))


@micropython.viper
def _fc(x, w, y, geo, ctx) -> int:
    g = ptr32(geo)
    wrap = int(g[0])
    batches = int(g[1])
    depth = int(g[2])
    units = int(g[3])
    xadd = (int(g[4]) << wrap) >> wrap
    wadd = (int(g[5]) << wrap) >> wrap
    chunk = int(g[6])
    u0 = int(g[7])
    nu = int(g[8])
    d0 = int(g[9])
    d1 = int(g[10])
    ws = int(g[11])
    flags = int(g[12])
    accb = ctx[1]
    q = ctx[2]
    pat = ptr32(ctx[0])
    patp = int(pat)
    acc = ptr32(accb)
    px = ptr8(x)
    wbase = int(ptr8(w))
    for b in range(batches):
        if flags & 1:
            for u in range(nu):
                acc[u] = 0
        c0 = d0
        while c0 < d1:
            k = d1 - c0
            if k > chunk:
                k = chunk
            k8 = k & ~7
            xo = b * depth + c0
            ssum = 0
            for i in range(k):
                v = int(px[xo + i] ^ 128) + xadd
                pat[i] = v
                ssum += v
            corr = wadd * ssum
            for u in range(nu):
                r = ptr8(wbase + u * ws + c0 - d0)
                pp = ptr32(patp)
                a = 0
                i = 0
                while i < k8:
                    a += (int(pp[0]) * int(r[0] ^ 128) + int(pp[1]) * int(r[1] ^ 128)
                          + int(pp[2]) * int(r[2] ^ 128) + int(pp[3]) * int(r[3] ^ 128)
                          + int(pp[4]) * int(r[4] ^ 128) + int(pp[5]) * int(r[5] ^ 128)
                          + int(pp[6]) * int(r[6] ^ 128) + int(pp[7]) * int(r[7] ^ 128))
                    pp = ptr32(int(pp) + 32)
                    r = ptr8(int(r) + 8)
                    i += 8
                while i < k:
                    a += int(pp[0]) * int(r[0] ^ 128)
                    pp = ptr32(int(pp) + 4)
                    r = ptr8(int(r) + 1)
                    i += 1
                acc[u] = int(acc[u]) + a + corr
            c0 += k
        if flags & 2:
            _vq.requant(accb, y, b * units + u0, q, u0, nu)
    return 0
