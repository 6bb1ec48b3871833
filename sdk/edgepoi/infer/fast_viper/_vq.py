"""Shared parts of the viper backend: state arrays, scratch buffers and bit-exact requantization.

Viper ints are machine words (64-bit on the unix port, 32-bit on an ESP32) and ``ptr32`` loads are
zero-extended on 64-bit ports, so every value is treated modulo 2**32: sums of products wrap harmlessly
(the true int32 result comes back when the final value is sign-extended with ``(v << WRAP) >> WRAP``;
WRAP is 32 on 64-bit ports, 0 on 32-bit ones). MultiplyByQuantizedMultiplier needs a 64-bit product:
on 64-bit ports it is one multiply, on 32-bit ports (``SPLIT``) it is built from 16-bit limbs with every
intermediate below 2**31. Both paths are tested on the unix port against ``edgepoi.infer.quant``.

Requant state ``q``: one bytearray per op (one heap block, not four): a header of Q_HDR int32 =
[WRAP, split, n, out_offset, act_min, act_max, 2**30, 0], then bias[n] and multipliers[n] (int32), then
shifts[n] (int8; TFLM's shifts are within [-31, 31]). (2**30, the rounding nudge, is read from the
header: as a literal it would not be a small int on 32-bit ports, which viper cannot use as a word.)

Usage::

    from edgepoi.infer.fast_viper import _vq
    q = _vq.op_state(p)                   # (p's bias/mults/shifts become views into q), None: no int8 shifts
    pat, acc = _vq.scratch(k, n)          # shared int32 scratch (ops run one at a time)
    _vq.requant(acc, y, y_offset, q, first, count)
    # y[y_offset + o] = clamp(MBQM(acc[o] + bias[first + o], m[first + o], s[first + o]) + zp), o < count
"""
import array
import sys

import micropython

WRAP = 32 if sys.maxsize > 0x7FFFFFFF else 0
SPLIT = 0 if WRAP else 1
Q_HDR = 8

_pat = bytearray(0)
_acc = bytearray(0)
_need = [0, 0]
_pool = [None, 0]  # the block requant states are carved from while ops are set up, next offset


def ints(values):
    """array('i') of values (each must fit int32)."""
    return array.array("i", values)


def _i32(buf, first, n):
    """Indexable signed int32 view of n values of buf from value index first (uctypes, no copy)."""
    import uctypes
    layout = {"v": (uctypes.ARRAY | 0, uctypes.INT32 | n)}
    return uctypes.struct(uctypes.addressof(buf) + 4 * first, layout).v


def _i8(buf, off, n):
    """Indexable signed int8 view of n bytes of buf from byte offset off (uctypes, no copy)."""
    import uctypes
    layout = {"v": (uctypes.ARRAY | 0, uctypes.INT8 | n)}
    return uctypes.struct(uctypes.addressof(buf) + off, layout).v


def rq_state(bias, mults, shifts, out_offset, lo, hi):
    """Requant state ``q`` of n = len(mults) channels, in one exact bytearray (no temporaries, no
    growth); the module's SPLIT (tests set it) picks the product form. None when a shift does not fit
    int8 (the op then runs the reference)."""
    n = len(mults)
    for s in shifts:
        if not -128 <= s <= 127:
            return None
    q = _take(state_size(n))
    v = _i32(q, 0, Q_HDR + 2 * n)
    for i, x in enumerate((WRAP, SPLIT, n, out_offset, lo, hi, 1 << 30, 0)):
        v[i] = x
    s = 4 * (Q_HDR + 2 * n)
    for i in range(n):
        v[Q_HDR + i] = bias[i]
        v[Q_HDR + n + i] = mults[i]
        q[s + i] = shifts[i] & 0xFF
    return q


def state_size(n):
    """Bytes of the requant state of n channels."""
    return (4 * (Q_HDR + 2 * n) + n + 3) & ~3


def reserve(nbytes):
    """One block for the requant states of the ops about to be set up (each then a memoryview into
    it, in order): allocated before prepare's garbage, it needs no large free block later."""
    _pool[0] = bytearray(nbytes) if nbytes else None
    _pool[1] = 0


def _take(size):
    buf, off = _pool
    if buf is not None and off + size <= len(buf):
        _pool[1] = off + size
        return memoryview(buf)[off:off + size]
    return bytearray(size)


def op_state(p):
    """Requant state of a conv/FC params dict, a fresh copy of its bias/mults/shifts (allocated now,
    packed where the heap is free: the setup of an op runs right after a collection, and the params of
    its prepare are then dropped), or None. p's bias/mults/shifts are replaced by views into it (same
    values, indexable like before, so the reference op still reads them): the heap holds them once,
    in 9 bytes per channel."""
    n = len(p["mults"])
    q = rq_state(p["bias"], p["mults"], p["shifts"], p["out_offset"], p["act_min"], p["act_max"])
    if q is not None:
        p["bias"] = _i32(q, Q_HDR, n)
        p["mults"] = _i32(q, Q_HDR + n, n)
        p["shifts"] = _i8(q, 4 * (Q_HDR + 2 * n), n)
    return q


def need(npat, nacc):
    """Record that an op needs npat and nacc scratch values (``scratch`` allocates the largest)."""
    if npat > _need[0]:
        _need[0] = npat
    if nacc > _need[1]:
        _need[1] = nacc


def scratch(npat, nacc):
    """Two shared int32 scratch buffers of at least npat and nacc values, and of every recorded need
    (grown, never shrunk)."""
    global _pat, _acc
    npat = max(npat, _need[0])
    nacc = max(nacc, _need[1])
    if len(_pat) < 4 * npat:
        _pat = None
        _pat = bytearray(4 * npat)
    if len(_acc) < 4 * nacc:
        _acc = None
        _acc = bytearray(4 * nacc)
    return _pat, _acc


def cached(p, build):
    """The viper state of params dict p, built once by build(p) and kept in p["_viper"]."""
    if "_viper" in p:
        return p["_viper"]
    st = build(p)  # None: the op's configuration runs the reference op (remembered too)
    p["_viper"] = st
    return st


@micropython.viper
def requant(accb, y, yoff: int, q, first: int, count: int) -> int:
    """y[yoff + o] = clamp(MBQM(acc[o] + bias[first + o], m[first + o], s[first + o]) + zp), o < count."""
    pq = ptr32(q)
    pa = ptr32(accb)
    py = ptr8(int(ptr8(y)) + yoff)
    wrap = int(pq[0])
    split = int(pq[1])
    n = int(pq[2])
    ooff = (int(pq[3]) << wrap) >> wrap
    lo = (int(pq[4]) << wrap) >> wrap
    hi = (int(pq[5]) << wrap) >> wrap
    half = int(pq[6])
    base = int(pq)
    pb = ptr32(base + 4 * (8 + first))  # 8 = Q_HDR
    pm = ptr32(base + 4 * (8 + n + first))
    ps = ptr8(base + 4 * (8 + 2 * n) + first)
    for o in range(count):
        v = int(pa[o]) + int(pb[o])
        v = (v << wrap) >> wrap
        sh = int(ps[o])
        if sh > 127:
            sh -= 256
        m = int(pm[o])
        if sh > 0:
            v = ((v << sh) << wrap) >> wrap
        if split:  # srdhm32 inlined (a call per output would cost more than the arithmetic)
            neg = 0
            u = v
            if v < 0:
                neg = 1
                u = 0 - v
            c = half - neg
            u1 = (u >> 16) & 0xFFFF
            u0 = u & 0xFFFF
            m1 = m >> 16
            m0 = m & 0xFFFF
            x1 = u0 * (m0 >> 8)
            x0 = u0 * (m0 & 0xFF)
            hl = u1 * m0
            lh = u0 * m1
            s0 = ((x1 & 0xFF) << 8) + x0 + (c & 0xFFFF)
            s1 = (x1 >> 8) + (hl & 0xFFFF) + (lh & 0xFFFF) + (c >> 16) + (s0 >> 16)
            r = ((u1 * m1 + (hl >> 16) + (lh >> 16) + (s1 >> 16)) << 1) + ((s1 & 0xFFFF) >> 15)
            if neg:
                r = 0 - r
        else:
            # SaturatingRoundingDoublingHighMul: (v*m + nudge) / 2**31 truncated, nudge 2**30 or
            # 1 - 2**30 by sign, equals floor((v*m + 2**30) / 2**31) for either sign
            r = (v * m + half) >> 31
        if sh < 0:  # RoundingDivideByPOT(r, -sh): half away from zero
            e = 0 - sh
            if r < 0:
                r -= 1
            r = (r + (1 << (e - 1))) >> e
        r += ooff
        if r < lo:
            r = lo
        if r > hi:
            r = hi
        py[o] = r
    return 0


@micropython.viper
def srdhm32(v: int, m: int, half: int) -> int:
    """SaturatingRoundingDoublingHighMul(v, m) for m in [0, 2**31) with 16-bit limbs, every
    intermediate below 2**31: the form for 32-bit ports, whose viper ints cannot hold v * m."""
    neg = 0
    u = v
    if v < 0:
        neg = 1
        u = 0 - v  # -2**31 stays -2**31 on 32-bit ports; the masks below still read 2**31
    c = half - neg
    u1 = (u >> 16) & 0xFFFF
    u0 = u & 0xFFFF
    m1 = m >> 16
    m0 = m & 0xFFFF
    x1 = u0 * (m0 >> 8)
    x0 = u0 * (m0 & 0xFF)
    hl = u1 * m0
    lh = u0 * m1
    s0 = ((x1 & 0xFF) << 8) + x0 + (c & 0xFFFF)
    s1 = (x1 >> 8) + (hl & 0xFFFF) + (lh & 0xFFFF) + (c >> 16) + (s0 >> 16)
    r = ((u1 * m1 + (hl >> 16) + (lh >> 16) + (s1 >> 16)) << 1) + ((s1 & 0xFFFF) >> 15)
    if neg:
        return 0 - r
    return r


@micropython.viper
def mbqm(v: int, m: int, sh: int, qh) -> int:
    """One MultiplyByQuantizedMultiplier(v, m, sh) of an int32 v, with header qh's WRAP/split (ADD)."""
    pq = ptr32(qh)
    wrap = int(pq[0])
    half = int(pq[6])
    v = (v << wrap) >> wrap
    if sh > 0:
        v = ((v << sh) << wrap) >> wrap
    if int(pq[1]):
        r = int(srdhm32(v, m, half))
    else:
        r = (v * m + half) >> 31
    if sh < 0:
        e = 0 - sh
        if r < 0:
            r -= 1
        r = (r + (1 << (e - 1))) >> e
    return r
