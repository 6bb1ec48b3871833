"""Shared parts of the viper backend: state arrays, scratch buffers and bit-exact requantization.

Viper ints are machine words (64-bit on the unix port, 32-bit on an ESP32) and ``ptr32`` loads are
zero-extended on 64-bit ports, so every value is treated modulo 2**32: sums of products wrap harmlessly
(the true int32 result comes back when the final value is sign-extended with ``(v << WRAP) >> WRAP``;
WRAP is 32 on 64-bit ports, 0 on 32-bit ones). MultiplyByQuantizedMultiplier needs a 64-bit product:
on 64-bit ports it is one multiply, on 32-bit ports (``SPLIT``) it is built from 16-bit limbs with every
intermediate below 2**31. Both paths are tested on the unix port against ``edgepoi.infer.quant``.

Requant state ``q`` = (header, bias, multipliers, shifts), int32 values in bytearrays; header =
[WRAP, split, n, out_offset, act_min, act_max, 2**30, 0]. (2**30, the rounding nudge, is read from the
header: as a literal it would not be a small int on 32-bit ports, which viper cannot use as a word.)

Usage::

    from edgepoi.infer.fast_viper import _vq
    qh, qb, qm, qs = _vq.op_state(p)      # (p's bias/mults/shifts become views of qb/qm/qs)
    pat, acc = _vq.scratch(k, n)          # shared int32 scratch (ops run one at a time)
    _vq.requant(acc, y, y_offset, qh, qb, qm, qs)
    # y[y_offset + o] = clamp(MBQM(acc[o] + bias[o], m[o], s[o]) + zp) for o < n
"""
import array
import sys

import micropython

WRAP = 32 if sys.maxsize > 0x7FFFFFFF else 0
SPLIT = 0 if WRAP else 1
Q_HDR = 8

_pat = bytearray(0)
_acc = bytearray(0)


def ints(values):
    """array('i') of values (each must fit int32)."""
    return array.array("i", values)


def _i32(buf, first, n):
    """Indexable signed int32 view of n values of buf from value index first (uctypes, no copy)."""
    import uctypes
    layout = {"v": (uctypes.ARRAY | 0, uctypes.INT32 | n)}
    return uctypes.struct(uctypes.addressof(buf) + 4 * first, layout).v


def _fill(values, n):
    """A bytearray holding the n int32 values."""
    b = bytearray(4 * n)
    v = _i32(b, 0, n)
    for i in range(n):
        v[i] = values[i]
    return b


def rq_state(bias, mults, shifts, out_offset, lo, hi):
    """Requant state (header, bias, multipliers, shifts) for n = len(mults) channels, four separate
    exact bytearrays (no temporaries, no growth, small blocks: a small heap is fragmented by then);
    the module's SPLIT (tests set it) picks the product form."""
    n = len(mults)
    head = _fill((WRAP, SPLIT, n, out_offset, lo, hi, 1 << 30, 0), Q_HDR)
    return head, _fill(bias, n), _fill(mults, n), _fill(shifts, n)


def op_state(p):
    """Requant state of a conv/FC params dict. Its bias/mults/shifts lists are then replaced by int32
    views of the state's arrays (same values, indexable like the lists, so the reference op still
    reads them; the arrays stay alive in p["_viper"]): the heap holds them once, in 12 bytes per
    channel instead of ~24 for three lists."""
    n = len(p["mults"])
    if all(_is_i32(p[k]) for k in ("bias", "mults", "shifts")):  # prepare's array('i'): used as they are
        head = _fill((WRAP, SPLIT, n, p["out_offset"], p["act_min"], p["act_max"], 1 << 30, 0), Q_HDR)
        return head, p["bias"], p["mults"], p["shifts"]
    q = rq_state(p["bias"], p["mults"], p["shifts"], p["out_offset"], p["act_min"], p["act_max"])
    p["bias"] = _i32(q[1], 0, n)
    p["mults"] = _i32(q[2], 0, n)
    p["shifts"] = _i32(q[3], 0, n)
    return q


def _is_i32(a):
    """An array of 4-byte items (MicroPython arrays have no typecode: measure one item)."""
    return isinstance(a, array.array) and len(a) > 0 and len(bytes(a[:1])) == 4


def scratch(npat, nacc):
    """Two shared int32 scratch buffers of at least npat and nacc values (grown, never shrunk)."""
    global _pat, _acc
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
def requant(accb, y, yoff: int, qh, qb, qm, qs) -> int:
    """y[yoff + o] = clamp(MultiplyByQuantizedMultiplier(acc[o] + bias[o], m[o], s[o]) + zp), o < n."""
    pq = ptr32(qh)
    pa = ptr32(accb)
    py = ptr8(int(ptr8(y)) + yoff)
    wrap = int(pq[0])
    split = int(pq[1])
    n = int(pq[2])
    ooff = (int(pq[3]) << wrap) >> wrap
    lo = (int(pq[4]) << wrap) >> wrap
    hi = (int(pq[5]) << wrap) >> wrap
    half = int(pq[6])
    pb = ptr32(qb)
    pm = ptr32(qm)
    ps = ptr32(qs)
    for o in range(n):
        v = int(pa[o]) + int(pb[o])
        v = (v << wrap) >> wrap
        sh = (int(ps[o]) << wrap) >> wrap
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
