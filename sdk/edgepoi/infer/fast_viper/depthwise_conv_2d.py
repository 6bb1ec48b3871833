"""DEPTHWISE_CONV_2D for the viper backend (MicroPython): per output pixel the in-image taps are listed
once, then each channel (four at a time in registers when the depth multiplier is 1) sums over them;
one requantization pass per pixel.

Any depth multiplier, stride, dilation and SAME/VALID padding; 16x8 models use the reference op.
Bit-exact with ``edgepoi.infer.ops.depthwise_conv_2d``.

Usage (the Interpreter does this for backend "viper")::

    from edgepoi.infer.fast_viper import depthwise_conv_2d
    depthwise_conv_2d.eval(params, bufs)
"""
import micropython

from edgepoi.infer.fast_viper import _vq
from edgepoi.infer.ops import depthwise_conv_2d as _ref


def _build(p):
    if p.get("int16"):
        return None
    q = _vq.op_state(p)
    if q is None:
        return None
    n, h, wd, ch = p["in_shape"]
    _, oh, ow, oc = p["out_shape"]
    geo = _vq.ints([_vq.WRAP, n, h, wd, ch, oh, ow, oc, p["filter_h"], p["filter_w"], p["stride_h"],
                    p["stride_w"], p["dil_h"], p["dil_w"], p["pad_h"], p["pad_w"], p["in_offset"] - 128,
                    p["w_offset"] - 128, p["depth_multiplier"]])
    return geo, q, oc, 2 * p["filter_h"] * p["filter_w"]


def setup(p):
    """The state once (and its need of the shared scratch); the params eval needs from then on."""
    st = _vq.cached(p, _build)
    if st is None:
        return p
    _vq.need(st[3], st[2])
    return {"_viper": st}


def eval(p, bufs):
    st = _vq.cached(p, _build)
    if st is None:
        _ref.eval(p, bufs)
        return
    geo, q, oc, ntaps = st
    taps, acc = _vq.scratch(ntaps, oc)
    _dw(bufs[0], bufs[1], bufs[-1], geo, (acc, q, taps))


@micropython.viper
def _dw(x, w, y, geo, ctx) -> int:
    g = ptr32(geo)
    wrap = int(g[0])
    n = int(g[1])
    h = int(g[2])
    wd = int(g[3])
    ch = int(g[4])
    oh = int(g[5])
    ow = int(g[6])
    oc = int(g[7])
    fh = int(g[8])
    fw = int(g[9])
    sh = int(g[10])
    sw = int(g[11])
    dh = int(g[12])
    dw = int(g[13])
    ph = int(g[14])
    pw_ = int(g[15])
    xadd = (int(g[16]) << wrap) >> wrap
    wadd = (int(g[17]) << wrap) >> wrap
    dm = int(g[18])
    accb = ctx[0]
    q = ctx[1]
    acc = ptr32(accb)
    px = ptr8(x)
    pw = ptr8(w)
    taps = ptr32(ctx[2])
    xaddr = int(px)
    waddr = int(pw)
    ch4 = ch & ~3
    yi = 0
    for b in range(n):
        for oy in range(oh):
            iy0 = oy * sh - ph
            for ox in range(ow):
                ix0 = ox * sw - pw_
                nt = 0  # in-image taps of this pixel: (input offset, filter offset) pairs
                for ky in range(fh):
                    iy = iy0 + ky * dh
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(fw):
                        ix = ix0 + kx * dw
                        if ix < 0 or ix >= wd:
                            continue
                        taps[nt] = ((b * h + iy) * wd + ix) * ch
                        taps[nt + 1] = (ky * fw + kx) * oc
                        nt += 2
                if dm == 1:
                    c = 0
                    while c < ch4:  # four channels in registers, summed over the taps
                        a0 = 0
                        a1 = 0
                        a2 = 0
                        a3 = 0
                        t = 0
                        while t < nt:
                            qx = ptr8(xaddr + int(taps[t]) + c)
                            qw = ptr8(waddr + int(taps[t + 1]) + c)
                            a0 += (int(qx[0] ^ 128) + xadd) * (int(qw[0] ^ 128) + wadd)
                            a1 += (int(qx[1] ^ 128) + xadd) * (int(qw[1] ^ 128) + wadd)
                            a2 += (int(qx[2] ^ 128) + xadd) * (int(qw[2] ^ 128) + wadd)
                            a3 += (int(qx[3] ^ 128) + xadd) * (int(qw[3] ^ 128) + wadd)
                            t += 2
                        acc[c] = a0
                        acc[c + 1] = a1
                        acc[c + 2] = a2
                        acc[c + 3] = a3
                        c += 4
                    while c < ch:
                        a0 = 0
                        t = 0
                        while t < nt:
                            a0 += ((int(px[int(taps[t]) + c] ^ 128) + xadd)
                                   * (int(pw[int(taps[t + 1]) + c] ^ 128) + wadd))
                            t += 2
                        acc[c] = a0
                        c += 1
                elif dm & 3 == 0:  # four outputs of one input channel in registers
                    o = 0
                    for c in range(ch):
                        for m in range(0, dm, 4):
                            a0 = 0
                            a1 = 0
                            a2 = 0
                            a3 = 0
                            t = 0
                            while t < nt:
                                xv = int(px[int(taps[t]) + c] ^ 128) + xadd
                                qw = ptr8(waddr + int(taps[t + 1]) + o)
                                a0 += xv * (int(qw[0] ^ 128) + wadd)
                                a1 += xv * (int(qw[1] ^ 128) + wadd)
                                a2 += xv * (int(qw[2] ^ 128) + wadd)
                                a3 += xv * (int(qw[3] ^ 128) + wadd)
                                t += 2
                            acc[o] = a0
                            acc[o + 1] = a1
                            acc[o + 2] = a2
                            acc[o + 3] = a3
                            o += 4
                else:
                    o = 0
                    for c in range(ch):
                        for m in range(dm):
                            a0 = 0
                            t = 0
                            while t < nt:
                                a0 += ((int(px[int(taps[t]) + c] ^ 128) + xadd)
                                       * (int(pw[int(taps[t + 1]) + o] ^ 128) + wadd))
                                t += 2
                            acc[o] = a0
                            o += 1
                _vq.requant(accb, y, yi, q, 0, oc)
                yi += oc
    return 0
