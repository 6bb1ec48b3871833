"""Shared numpy kernels of the fast path: weight folding, exact BLAS matmul, im2col, pooling windows.

Exactness: int8-valued operands are multiplied in float64; every partial sum of a realistic int8
layer stays far below 2**53, so BLAS results are the exact integers TFLM's int32 accumulators hold.
``check_exact_k`` refuses reduction lengths where that could fail. Where the weights bound every
partial sum below 2**24 (128 * sum |w| per output channel) float32 is exact too and twice as fast.

Zero-point handling: TFLM computes sum((x + in_off) * (w + w_off)) + bias and skips out-of-image taps.
We compute x @ w' with w' = w + w_off, fold ``in_off * sum(w')`` into the bias, and pad with
x = -in_off (the input zero point) so padded taps contribute exactly 0.

    from edgepoi.infer.fast_numpy import _kern
    w64, b64 = _kern.fold_weights(w_kkc_oc, w_off, bias, in_off)
    acc = _kern.conv_acc(x_nhwc, w64.astype(np.float64), kh, kw, sh, sw, dh, dw, pad_t, pad_l, oh, ow,
                         in_zp) + b64
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

_EXACT = EXACT = float(1 << 53)
_EXACT32 = float(1 << 24)


def check_exact_k(k, bias_max=0, xmax=255, wmax=255):
    if k * xmax * wmax + bias_max >= _EXACT:
        raise ValueError("reduction of %d terms could exceed float64's exact range" % k)


def fold_weights(w, w_off, bias, in_off, xmax=128):
    """w: int array [K, OC] (reduction first); returns (int64 w' = w + w_off, int64 bias').

    ``w_off`` (weight offset, i.e. -weight zero point) is a scalar or per-OC array;
    bias' = bias + in_off * sum_k w'[k]. Raises ValueError if float64 could not be exact.
    """
    w64 = np.asarray(w, dtype=np.int64) + np.asarray(w_off, dtype=np.int64)
    b = np.zeros(w64.shape[1], np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    b = b + int(in_off) * w64.sum(axis=0)
    check_exact_k(w64.shape[0], int(np.abs(b).max()) if b.size else 0, xmax,
                  int(np.abs(w64).max()) if w64.size else 0)
    return w64, b


def exact_float(w64, b, xmax=128):
    """float32 when every partial sum of [x, 1] @ [w; b] provably stays below 2**24 in magnitude
    (|x| <= xmax), else float64 (exact below 2**53, checked by fold_weights)."""
    bound = xmax * np.abs(w64).sum(axis=0) + np.abs(b)
    return np.float32 if bound.size and int(bound.max()) < _EXACT32 else np.float64


def pad_nhwc(x, pt, pb, pl, pr, value):
    if not (pt or pb or pl or pr):
        return x
    n, h, w, c = x.shape
    out = np.empty((n, h + pt + pb, w + pl + pr, c), x.dtype)
    out[...] = value
    out[:, pt:pt + h, pl:pl + w, :] = x
    return out


def padded_for(x, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, value):
    """Pad ``x`` [N,H,W,C] so every tap of an (oh, ow) output grid is in range."""
    n, h, w, c = x.shape
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    pb = max(0, need_h - pt - h)
    pr = max(0, need_w - pl - w)
    # negative padding never happens with TFLM's padding rules, but crop defensively
    xp = pad_nhwc(x, max(pt, 0), pb, max(pl, 0), pr, value)
    return xp


def windows(xp, kh, kw, sh, sw, dh, dw, oh, ow):
    """A read-only view [N, OH, OW, KH, KW, C] of the padded input (no copy)."""
    n, _, _, c = xp.shape
    s = xp.strides
    return as_strided(xp, shape=(n, oh, ow, kh, kw, c),
                      strides=(s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]),
                      writeable=False)


def conv_acc(x, w2, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, in_zp):
    """Accumulators without bias [N*OH*OW, OC] (w2.dtype) of a conv with folded weights w2
    [KH*KW*C, OC]; exact integers."""
    n, h, w, c = x.shape
    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and oh == h and ow == w:
        cols = x.reshape(n * h * w, c).astype(w2.dtype)
    else:
        xp = padded_for(x, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, in_zp)
        win = windows(xp, kh, kw, sh, sw, dh, dw, oh, ow)
        cols = np.empty((n, oh, ow, kh, kw, c), w2.dtype)
        cols[...] = win
        cols = cols.reshape(n * oh * ow, kh * kw * c)
    return np.dot(cols, w2)


def pool_windows(x, kh, kw, sh, sw, pt, pl, oh, ow, fill):
    """[N, OH, OW, KH, KW, C] view of x padded with ``fill`` (for max: the dtype min; avg: 0)."""
    xp = padded_for(x, kh, kw, sh, sw, 1, 1, pt, pl, oh, ow, fill)
    return windows(xp, kh, kw, sh, sw, 1, 1, oh, ow)


def valid_counts(h, w, kh, kw, sh, sw, pt, pl, oh, ow):
    """Number of in-image taps per output position [OH, OW] (TFLM divides by this, not kh*kw)."""
    ys = np.arange(oh) * sh - pt
    xs = np.arange(ow) * sw - pl
    ch = np.minimum(ys + kh, h) - np.maximum(ys, 0)
    cw = np.minimum(xs + kw, w) - np.maximum(xs, 0)
    return np.maximum(ch, 0)[:, None] * np.maximum(cw, 0)[None, :]


def div_round_away(s, n):
    """C's (s > 0 ? s + n/2 : s - n/2) / n with truncating division, over int64 arrays."""
    a = np.abs(s)
    q = (a + n // 2) // n
    return np.where(s >= 0, q, -q)
