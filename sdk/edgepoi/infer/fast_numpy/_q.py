"""Vectorised, exact integer requantization for the numpy fast path (CPython only).

TFLM's ``MultiplyByQuantizedMultiplier`` (gemmlowp double rounding) over int64 arrays, fused:

- ``SaturatingRoundingDoublingHighMul(a, m)`` equals ``floor((a*m + 2**30) / 2**31)`` for every int32
  ``a`` and every ``m`` except ``a == m == INT32_MIN`` (impossible: multipliers are >= 0).
  For ab < 0 the C code computes trunc((ab + 1 - 2**30) / 2**31); writing ab + 2**30 = q*2**31 + r
  with 0 <= r < 2**31 gives ceil(q - 1 + (r+1)/2**31) = q.
- ``RoundingDivideByPOT(h, e)`` rounds half away from zero: ``floor((h + 2**(e-1) - [h < 0]) / 2**e)``
  for e > 0. Nested floors by powers of two compose, and [h < 0] may be replaced by [a < 0] (when
  a < 0 but h == 0 the -1 cannot change the result), so the whole requantization is ONE floor shift:
  ``(a*m + 2**30 + 2**(30+e) - 2**31*[a < 0 and e > 0] + zp*2**(31+e)) >> (31+e)``.

Small outputs use thresholds instead: the clamped requantized value is a non-decreasing step function
of the accumulator (when there is no left shift), so ``y = lo + searchsorted(thresholds, acc)``; the
thresholds are found once per layer by binary search with the exact formula. Per-channel tables are
concatenated with a per-channel offset and a sentinel, so one searchsorted and one table lookup do all
channels.

Direct tables (``Requant.direct``) drop the binary search, whose data-dependent branches dominate
small layers on changing inputs: with t_1..t_span those thresholds, every accumulator at or below
t_1 - 1 gives ``lo`` and every one at or above t_span gives ``hi`` (monotone), so a table of the exact
outputs for t_1 - 1 .. t_span, indexed by the accumulator clamped into that range, is exact for every
accumulator. Per channel the tables are concatenated; the offsets ride in the matmul's bias row.

    from edgepoi.infer.fast_numpy._q import Requant, mbqm
    rq = Requant(mults, shifts, bias, out_offset, act_min, act_max)   # per channel (last axis)
    rq.apply(acc, y_out)            # acc: float/int accumulators without bias; writes into y_out
"""
import numpy as np

_WRAP = 1 << 31
_MASK32 = (1 << 32) - 1
SMALL = 1024          # outputs up to this many elements use thresholds (measured crossover)
DIRECT_MAX = 1 << 18  # entries (all channels) of a direct table; larger ones fall back to thresholds
_SPACING = 2.0 ** 35  # per-channel offset that keeps the flattened thresholds sorted


def _vec(v, n):
    a = np.asarray(v, dtype=np.int64).reshape(-1)
    if a.size == 1 and n > 1:
        a = np.full(n, int(a[0]), np.int64)
    return a


def mbqm(acc, multiplier, shift):
    """MultiplyByQuantizedMultiplier over an int64 array (channels on the last axis); exact."""
    x = np.asarray(acc, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if (m < 0).any() or (m >= (1 << 31)).any() or (s > 31).any() or (s < -31).any():
        raise ValueError("multiplier/shift out of range")
    left = np.maximum(s, 0)
    e = np.maximum(-s, 0)
    if left.any():                       # C: int32 x * (1 << shift) wraps
        x = (((x << left) + _WRAP) & _MASK32) - _WRAP
    neg = (x >> 63) & np.where(e > 0, np.int64(1 << 31), np.int64(0))
    z = x * m + ((np.int64(1) << 30) + ((np.int64(1) << (30 + e)) * (e > 0))) - neg
    return z >> (31 + e)


class Requant(object):
    """Requantize int32 accumulators to clamped outputs; channels on the last axis.

    ``mults``/``shifts``/``bias`` are lists (per channel) or scalars; ``n`` output channels.
    """

    def __init__(self, mults, shifts, bias, out_offset, lo, hi, n=None):
        n = n or max(np.size(mults), np.size(shifts), np.size(bias) if bias is not None else 1)
        self.n = n
        self.m = _vec(mults, n)
        self.s = _vec(shifts, n)
        self.bias = _vec(bias if bias is not None else 0, n)
        self.zp, self.lo, self.hi = int(out_offset), int(lo), int(hi)
        if (self.m < 0).any() or (self.m >= (1 << 31)).any() or (self.s > 31).any() or (self.s < -31).any():
            raise ValueError("multiplier/shift out of range")
        # a left shift wraps in int32 (not monotone); int16 outputs would need 65535 thresholds
        self.monotone = not (self.s > 0).any() and self.hi - self.lo <= 255
        self.fused = not (self.s > 0).any()
        self.uniform = n == 1 or (len(set(self.m.tolist())) == 1 and len(set(self.s.tolist())) == 1)
        e = -self.s
        emax = int(e.max()) if n else 0
        # the zero point rides in the constant when zp * 2**(31+e) fits, else it is added after
        self.zp_in_c = (2 * abs(self.zp) + 2) * (1 << (31 + max(emax, 0))) < (1 << 62)
        self.bias_f = self.bias.astype(np.float64)
        if self.fused:
            self.shift = 31 + e
            self.negk = np.where(e > 0, np.int64(1 << 31), np.int64(0))
            self.c = ((np.int64(1) << 30) + ((np.int64(1) << np.maximum(30 + e, 0)) * (e > 0))
                      + np.int64(self.zp if self.zp_in_c else 0) * (np.int64(1) << self.shift))
            self.m1 = None
            if self.uniform:
                self.m1, self.sh1, self.c1, self.k1 = (int(self.m[0]), int(self.shift[0]),
                                                       int(self.c[0]), int(self.negk[0]))
        self._ready = False
        self._tiles = {}
        self._luts = {}

    def exact(self, acc):
        """Clamped output for int64 accumulators ``acc`` (bias included) by the plain formula."""
        v = mbqm(acc, self.m, self.s) + self.zp
        return np.clip(v, self.lo, self.hi)

    def _search(self, m, s):
        """[len(m), hi-lo] int64: least int32 acc (bias included) whose output is >= lo + k."""
        k = np.arange(1, self.hi - self.lo + 1, dtype=np.int64)[:, None]
        a = np.full((k.shape[0], len(m)), -(1 << 31) - 1, np.int64)   # output < target here
        b = np.full((k.shape[0], len(m)), 1 << 31, np.int64)          # output >= target here
        for _ in range(34):
            mid = (a + b) >> 1
            ok = mbqm(np.clip(mid, -(1 << 31), (1 << 31) - 1), m, s) + self.zp >= self.lo + k
            b = np.where(ok, mid, b)
            a = np.where(ok, a, mid)
        return b.T

    def _tables(self):
        span = self.hi - self.lo
        if self.uniform:
            self._t1 = self._search(self.m[:1], self.s[:1])[0].astype(np.float64)
            self._t1_32 = np.clip(self._t1, -(1 << 24), 1 << 24).astype(np.float32)
            self._lut = np.arange(self.lo, self.hi + 1, dtype=np.int64)
        else:
            t = self._search(self.m, self.s).astype(np.float64)
            off = np.arange(self.n) * _SPACING
            # each channel: its thresholds + off, then a sentinel halfway to the next channel, so
            # searchsorted gives c * (span + 1) + count with count in [0, span]: one lookup decodes it
            t = np.concatenate([t + off[:, None], (off + _SPACING / 2)[:, None]], axis=1)
            self._flat = t.reshape(-1)
            self._off = off
            self._off_b = off + self.bias_f
            self._lut = np.tile(np.arange(self.lo, self.hi + 1, dtype=np.int64), self.n)
        self._ready = True

    def direct(self, limit=DIRECT_MAX):
        """Direct table (off, lut, lo, hi), or None (not monotone, or more than ``limit`` entries):
        for an accumulator ``a`` of channel c (bias included) the output is
        ``lut[clip(a + off[c], lo[c], hi[c])]``, exactly, for every int32 ``a``. off, lo, hi: int64
        [n]; lut: int64. A uniform requantizer has one table: lo and hi are then the same for every
        channel (0 and len(lut) - 1), so clamping the index (``take(mode="clip")``) is enough."""
        if not self.monotone or self.n == 0:
            return None
        m, s = (self.m[:1], self.s[:1]) if self.uniform else (self.m, self.s)
        if self.hi > self.lo:
            t = self._search(m, s)                      # [c, span]: least acc reaching lo + k
            start, end = t[:, 0] - 1, t[:, -1]          # output lo at start, hi from end on
        else:
            start = end = np.zeros(len(m), np.int64)    # a constant output
        size = end - start + 1
        if int(size.sum()) > limit:
            return None
        base = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
        pos = np.arange(int(size.sum()), dtype=np.int64)
        ch = np.repeat(np.arange(len(m)), size)
        acc = np.clip(pos - base[ch] + start[ch], -(1 << 31), (1 << 31) - 1)
        lut = np.clip(mbqm(acc, m[ch], s[ch]) + self.zp, self.lo, self.hi)
        off, lo, hi = base - start, base, base + size - 1
        if self.uniform:
            off, lo, hi = (np.full(self.n, int(v[0]), np.int64) for v in (off, lo, hi))
        return off, lut, lo, hi

    def lut(self, dtype):
        """Lookup table from searchsorted positions to output values, in the output dtype."""
        if not self._ready:
            self._tables()
        t = self._luts.get(dtype)
        if t is None:
            t = self._luts[dtype] = self._lut.astype(dtype)
        return t

    def table(self, dtype=np.float64):
        """The sorted thresholds (bias included) of a uniform requantizer in ``dtype``, or None when
        thresholds do not apply. float32 tables are clamped to +-2**24: only valid for accumulators
        whose magnitude is provably below 2**24 (the float32 matmul path)."""
        if not (self.uniform and self.monotone):
            return None
        if not self._ready:
            self._tables()
        return self._t1_32 if dtype == np.float32 else self._t1

    def apply(self, acc, out, biased=False):
        """Write requantized ``acc`` (float or int array, channels last) into ``out`` (any shape of the
        same size). ``biased``: the bias is already in ``acc`` (else it is added here)."""
        if acc.size <= SMALL and self.monotone:
            lut = self.lut(out.dtype)
            if self.uniform:
                # biased float32 accumulators come from the float32 matmul path: |acc| < 2**24
                a = acc if biased else acc + self.bias_f    # float64 array add: exact
                t = self._t1_32 if a.dtype == np.float32 else self._t1
                out.reshape(acc.shape)[...] = lut[t.searchsorted(a, side="right")]
                return out
            a = acc + (self._off if biased else self._off_b)
            out.reshape(acc.shape)[...] = lut[self._flat.searchsorted(a, side="right")]
            return out
        if biased:
            x = acc.astype(np.int64)
        elif acc.dtype.kind == "f":
            x = (acc + self.bias_f).astype(np.int64)
        else:
            x = acc + self.bias
        if not self.fused:
            out.reshape(x.shape)[...] = self.exact(x)
            return out
        if self.m1 is not None:
            t = x >> 63
            t &= self.k1
            x *= self.m1
            x += self.c1
            x -= t
            x >>= self.sh1
        else:
            shape = x.shape
            negk, m, c, sh = self._tiled(x.size)
            x = x.reshape(-1, m.shape[0])
            t = x >> 63
            t &= negk
            x *= m
            x += c
            x -= t
            x >>= sh
            x = x.reshape(shape)
        if not self.zp_in_c:
            x += self.zp
        np.clip(x, self.lo, self.hi, out=out.reshape(x.shape), casting="unsafe")
        return out

    def _tiled(self, size):
        """Per-channel constants repeated r times so numpy's inner loops are long (r*n >= ~512)."""
        rows = size // self.n
        r = max(1, 512 // self.n)
        while rows % r:
            r -= 1
        t = self._tiles.get(r)
        if t is None:
            t = self._tiles[r] = tuple(np.tile(a, r) for a in (self.negk, self.m, self.c, self.shift))
        return t
