"""CONV_2D for the viper backend (MicroPython): im2col per output pixel, unrolled int8 dot products.

Per output pixel the receptive field is gathered once into an int32 patch of (x + in_offset) values (0
for taps outside the image, which is what TFLM's skipped taps contribute); every filter row [fh*fw*c]
is then a contiguous dot product with it. A weight byte b is read as ``b ^ 128`` = w + 128, and the
extra 128 (minus the weight offset) times the patch sum is subtracted once per output. Grouped
convolutions and 16x8 models use the reference op. Bit-exact with ``edgepoi.infer.ops.conv_2d``.

Usage (the Interpreter does this for backend "viper")::

    from edgepoi.infer.fast_viper import conv_2d
    conv_2d.eval(params, bufs)      # params from edgepoi.infer.ops.conv_2d.prepare
"""
import micropython

from edgepoi.infer.fast_viper import _vq
from edgepoi.infer.ops import conv_2d as _ref


def _build(p):
    n, h, wd, ch = p["in_shape"]
    _, oh, ow, oc = p["out_shape"]
    _, fh, fw, fc = p["filter_shape"]
    if fc != ch or p.get("int16"):
        return None
    q = _vq.op_state(p)
    if q is None:
        return None
    geo = _vq.ints([_vq.WRAP, n, h, wd, ch, oh, ow, oc, fh, fw, p["stride_h"], p["stride_w"],
                    p["dil_h"], p["dil_w"], p["pad_h"], p["pad_w"], p["in_offset"] - 128,
                    p["w_offset"] - 128])
    return geo, q, fh * fw * ch, oc


def setup(p):
    """The state once (and its need of the shared scratch); the params eval needs from then on."""
    st = _vq.cached(p, _build)
    if st is None:
        return p
    _vq.need(st[2], st[3])
    return {"_viper": st}


def eval(p, bufs):
    st = _vq.cached(p, _build)
    if st is None:
        _ref.eval(p, bufs)
        return
    geo, q, k, oc = st
    pat, acc = _vq.scratch(k, oc)
    _conv(bufs[0], bufs[1], bufs[-1], geo, (pat, acc, q))


@micropython.viper
def _conv(x, w, y, geo, ctx) -> int:
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
    xadd = (int(g[16]) << wrap) >> wrap  # in_offset - 128: (b ^ 128) + xadd = x + in_offset
    wadd = (int(g[17]) << wrap) >> wrap  # w_offset - 128
    patb = ctx[0]
    accb = ctx[1]
    q = ctx[2]
    pat = ptr32(patb)
    acc = ptr32(accb)
    px = ptr8(x)
    py = ptr8(y)
    wbase = int(ptr8(w))
    k = fh * fw * ch
    k8 = k & ~7
    patp = int(pat)
    yi = 0
    for b in range(n):
        for oy in range(oh):
            iy0 = oy * sh - ph
            for ox in range(ow):
                ix0 = ox * sw - pw_
                j = 0
                ssum = 0
                for ky in range(fh):
                    iy = iy0 + ky * dh
                    for kx in range(fw):
                        ix = ix0 + kx * dw
                        if iy >= 0 and iy < h and ix >= 0 and ix < wd:
                            xo = ((b * h + iy) * wd + ix) * ch
                            for c in range(ch):
                                v = int(px[xo + c] ^ 128) + xadd
                                pat[j] = v
                                ssum += v
                                j += 1
                        else:
                            for c in range(ch):
                                pat[j] = 0
                                j += 1
                corr = wadd * ssum
                for o in range(oc):
                    r = ptr8(wbase + o * k)
                    pp = ptr32(patp)
                    a = 0
                    i = 0
                    while i < k8:  # constant offsets from bumped pointers: the fastest viper loop
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
                    acc[o] = a + corr
                _vq.requant(accb, y, yi, q, 0, oc)
                yi += oc
    return 0
