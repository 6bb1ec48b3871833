"""Exact helpers of the numpy LSTM (CPython only): the int16 sigmoid / tanh of ``act16`` over whole
arrays, requantization as a float64 ``trunc`` and requantization thresholds.

Float requantization. TFLM's ``MultiplyByQuantizedMultiplier`` (no int32 wrap) is one floor shift
(``_q``): ``floor((x*m + c(x)) / 2**S)``, S = 31 + e, e the right shift, c(x) = 2**30 + 2**(30+e) for
x >= 0 and 2**(30+e) - 2**30 for x < 0 (for e = 0, 2**30 either way). With X = x*m / 2**S, granule
g = 2**(z-S) (z: trailing zeros of m, so X is a multiple of g) and K = c(0) / 2**S:

    MBQM(x) == trunc(Y + copysign(K, Y))   with   Y = X + g/2

For x >= 0, Y + K is positive and g/2 cannot reach the next multiple of g: trunc = floor(X + K). For
x < 0 (X <= -g), Y - K is negative: trunc = ceil(X - K + g/2) = floor(X - K + 1) = floor(X + c(x)/2**S)
because X - K is a multiple of g and 1 - K = c(-1) / 2**S. Every value is a multiple of g/2, so float64
is exact when ``(|x|*m + 2**31 + 2**(30+e)) < 2**(52+z)`` (``float_consts`` checks a bound on |x|).
A left shift s > 0 is m*2**s with e = 0, valid while |x| * 2**s < 2**31 (no int32 wrap).

The 16x8 (int16 activation) FC requantization ``(x*r + 2**(t-1)) >> t`` (``quant.
multiply_by_quantized_multiplier64``) is a plain floor: with an integer offset F making the value
positive, ``trunc((x*r + 2**(t-1)) / 2**t + F) - F``.

    from edgepoi.infer.fast_numpy import _lstm
    M, E, K = _lstm.float_consts(m, s, bound)        # per-column arrays, or None when not exact
    y = np.trunc(x * M + E + np.copysign(K, x * M + E))  # == _q.mbqm(x, m, s)
"""
import numpy as np

from edgepoi.infer.fast_numpy._q import mbqm
from edgepoi.infer.lut16 import SIGMOID_U16

_T = np.array(list(SIGMOID_U16) + [SIGMOID_U16[255]], np.int64)
_I16 = (-32768, 32767)


def sigmoid(v):
    """act16.sigmoid over an int64 array of scaled inputs."""
    v = np.asarray(v, np.int64)
    a = np.abs(v)
    uh = a >> 9
    k = np.minimum(uh, 254)
    r = (_T[k] << 9) + (a & 0x1FF) * (_T[k + 1] - _T[k])
    r = np.where(uh >= 255, 0x7FFF << 10, r)
    return np.where(v >= 0, (r + 512) >> 10, ((1 << 25) - r + 511) >> 10)


def tanh(v):
    """act16.tanh over an int64 array of scaled inputs."""
    v = np.asarray(v, np.int64)
    a = np.abs(v)
    uh = a >> 8
    k = np.minimum(uh, 254)
    r = (_T[k] << 8) + (a & 0xFF) * (_T[k + 1] - _T[k])
    r = np.where(uh >= 255, 0xFFFF << 8, r)
    return np.where(v >= 0, (r - (1 << 23) + (1 << 7)) >> 8, (-r + (1 << 23) + (1 << 7) - 1) >> 8)


def _tz(m):
    """Trailing zero bits of a positive int."""
    return (m & -m).bit_length() - 1


def float_consts(mults, shifts, bound):
    """Per-column float64 (M, E, K) with ``MBQM(x) == trunc(Y + copysign(K, Y))``, Y = x*M + E, exact
    for |x| <= bound (per column); None if some column cannot be exact (or its left shift may wrap)."""
    mults, shifts, bound = (np.broadcast_arrays(np.asarray(mults, np.int64), np.asarray(shifts, np.int64),
                                                np.asarray(bound, np.int64)))
    M, E, K = [], [], []
    for m, s, b in zip(mults.tolist(), shifts.tolist(), bound.tolist()):
        if s > 0:
            if b << s >= 1 << 31:
                return None
            m, e = m << s, 0
        else:
            e = -s
        if m < 0 or e > 31:
            return None
        S = 31 + e
        c = (1 << 30) + ((1 << (30 + e)) if e else 0)
        z = _tz(m) if m else 0
        if b * m + (1 << 31) + (1 << (30 + e)) >= 1 << (52 + z):
            return None
        M.append(m * 2.0 ** -S)
        E.append(2.0 ** (z - S - 1))
        K.append(c * 2.0 ** -S)
    return np.array(M), np.array(E), np.array(K)


def rq_exact(acc, mults, shifts, wide):
    """Exact requantization of int64 accumulators (columns last): MBQM, or the 16x8 FC formula."""
    acc = np.asarray(acc, np.int64)
    if not wide:
        return mbqm(acc, mults, shifts)
    red, tot = rq64_consts(mults, shifts)
    return (acc * red + (np.int64(1) << (tot - 1))) >> tot


def rq64_consts(mults, shifts):
    """(reduced multiplier, total shift) per column of quant.multiply_by_quantized_multiplier64."""
    m = np.asarray(mults, np.int64)
    red = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
    return red, 15 - np.asarray(shifts, np.int64)


def thresholds(m, s, zp, lo, hi):
    """float64[hi - lo]: the least int32 x whose clamp(zp + MBQM(x, m, s), lo, hi) >= lo + k, k = 1..;
    so that output = lo + searchsorted(thresholds, x, 'right'). Needs s <= 0 (monotone)."""
    k = np.arange(1, hi - lo + 1, dtype=np.int64)
    a = np.full(k.shape, -(1 << 31) - 1, np.int64)   # output < lo + k here
    b = np.full(k.shape, 1 << 31, np.int64)          # output >= lo + k here
    for _ in range(33):
        mid = (a + b) >> 1
        ok = mbqm(np.clip(mid, -(1 << 31), (1 << 31) - 1), m, s) + zp >= lo + k
        b = np.where(ok, mid, b)
        a = np.where(ok, a, mid)
    return b.astype(np.float64)


def acc_bounds(w, bias, lo, hi):
    """(min, max, partial-sum bound) of bias + x @ w per column, for x in [lo, hi]; w [K, N] int64."""
    top = np.maximum(w * hi, w * lo).sum(0) + bias
    bot = np.minimum(w * hi, w * lo).sum(0) + bias
    part = np.abs(w).sum(0) * max(-lo, hi) + np.abs(bias)
    return bot, top, part


def clamp16(v):
    return np.clip(v, _I16[0], _I16[1])
