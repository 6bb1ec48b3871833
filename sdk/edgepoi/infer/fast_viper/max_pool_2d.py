"""MAX_POOL_2D for the viper backend (MicroPython), int8: maximum over the in-image part of each
window, then the activation clamp. int16 uses the reference op.

Usage (the Interpreter does this for backend "viper")::

    from edgepoi.infer.fast_viper import max_pool_2d
    max_pool_2d.eval(params, bufs)
"""
import micropython

from edgepoi.infer.fast_viper import _pool, _vq
from edgepoi.infer.ops import max_pool_2d as _ref


def setup(p):
    """The window geometry once; the params eval needs from then on."""
    if p.get("int16"):
        return p
    return {"_viper": _vq.cached(p, _pool.geometry)}


def eval(p, bufs):
    if p.get("int16"):
        _ref.eval(p, bufs)
        return
    _max(bufs[0], bufs[-1], _vq.cached(p, _pool.geometry))


@micropython.viper
def _max(x, y, geo) -> int:
    g = ptr32(geo)
    wrap = int(g[0])
    n = int(g[1])
    h = int(g[2])
    wd = int(g[3])
    ch = int(g[4])
    oh = int(g[5])
    ow = int(g[6])
    fh = int(g[7])
    fw = int(g[8])
    sh = int(g[9])
    sw = int(g[10])
    ph = int(g[11])
    pw_ = int(g[12])
    lo = (int(g[13]) << wrap) >> wrap
    hi = (int(g[14]) << wrap) >> wrap
    px = ptr8(x)
    py = ptr8(y)
    yi = 0
    for b in range(n):
        for oy in range(oh):
            iy0 = oy * sh - ph
            y0 = 0
            if iy0 < 0:
                y0 = 0 - iy0
            y1 = fh
            if h - iy0 < fh:
                y1 = h - iy0
            for ox in range(ow):
                ix0 = ox * sw - pw_
                x0 = 0
                if ix0 < 0:
                    x0 = 0 - ix0
                x1 = fw
                if wd - ix0 < fw:
                    x1 = wd - ix0
                for c in range(ch):
                    m = -129
                    for ky in range(y0, y1):
                        xo = ((b * h + iy0 + ky) * wd + ix0) * ch + c
                        for kx in range(x0, x1):
                            v = int(px[xo + kx * ch] ^ 128) - 128
                            if v > m:
                                m = v
                    if m < lo:
                        m = lo
                    if m > hi:
                        m = hi
                    py[yi + c] = m
                yi += ch
    return 0
