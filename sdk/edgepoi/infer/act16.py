"""int16 sigmoid / tanh as TFLM computes them (integer LOGISTIC, TANH and the LSTM gates): linear
interpolation in the 256-entry table of ``lut16`` (portable, integer-only).

TFLM first scales an int16 input x to ``v = (x * mult + round) >> shift`` (``scaled``; for the
power-of-two scales the multiplier is 3 << k and the shift 0), in units of 1/(3 * 4096): the table step
1/24 is 512 units for sigmoid (``uh = |v| >> 9``) and, since tanh(x) = 2*sigmoid(2x) - 1, 256 units for
tanh (``uh = |v| >> 8``). Results are Q0.15 int16.

``input_scaling`` reproduces the prepare step of TFLM's int16 LOGISTIC / TANH from the float32 bit
pattern of the input scale (integers only), including its approximate power-of-two test
(``checked_log2``: |log2(scale) - round| < 1e-3).

    from edgepoi.infer import act16
    mult, shift, rnd = act16.input_scaling(scale_bits, tanh_op=True)   # ModelError if unsupported
    y = act16.tanh(act16.scaled(x, mult, shift, rnd))
"""
from edgepoi.infer.flatbuf import ModelError
from edgepoi.infer.lut16 import SIGMOID_U16 as _T

# mantissa bounds (24-bit, implicit bit included) of TFLM's CheckedLog2 on float32 scales:
# frac(log2) < 1e-3 below _POT_LO, > 1 - 1e-3 from _POT_HI on; log2 rounds up above _SQRT2
# (TFLM's float log has ~1e-7 error: scales within a few units of these bounds could differ)
_POT_LO = 8394425      # ceil(2**23 * 2**0.001)
_POT_HI = 16765591     # floor(2**24 * 2**-0.001) + 1
_SQRT2 = 11863283      # floor(2**23 * sqrt(2)) (rounding boundary of log2)


def sigmoid(v):
    """TFLM's int16 Logistic of a scaled input v (units 1/12288); Q0.15 result."""
    a = -v if v < 0 else v
    uh = a >> 9
    if uh >= 255:
        r = 0x7FFF << 10
    else:
        ua = _T[uh]
        r = (ua << 9) + (a & 0x1FF) * (_T[uh + 1] - ua)
    if v >= 0:
        return (r + 512) >> 10
    return ((1 << 25) - r + 511) >> 10


def tanh(v):
    """TFLM's int16 Tanh of a scaled input v (units 1/12288); Q0.15 result."""
    a = -v if v < 0 else v
    uh = a >> 8
    if uh >= 255:
        r = 0xFFFF << 8
    else:
        ua = _T[uh]
        r = (ua << 8) + (a & 0xFF) * (_T[uh + 1] - ua)
    if v >= 0:
        return (r - (1 << 23) + (1 << 7)) >> 8
    return (-r + (1 << 23) + (1 << 7) - 1) >> 8


def scaled(x, mult, shift, rnd):
    return (x * mult + rnd) >> shift


def checked_log2(bits):
    """TFLM CheckedLog2 of a positive float32 (bit pattern): (rounded log2, is a power of two)."""
    exp = (bits >> 23) & 0xFF
    if exp == 0 or exp == 0xFF or bits >> 31:
        raise ModelError("scale is zero, subnormal, negative, inf or nan")
    m = (bits & 0x7FFFFF) | 0x800000
    e = exp - 127
    if m > _SQRT2:
        return e + 1, m >= _POT_HI
    return e, m < _POT_LO


def input_scaling(bits, tanh_op):
    """(mult, shift, round) of TFLM's int16 TANH (tanh_op) or LOGISTIC prepare for input scale bits."""
    r, pot = checked_log2(bits)
    left = 12 + r
    if pot and (left == 0 or (tanh_op and left == 1)):
        return 3 << left, 0, 0
    # multiplier = scale * 4096 * 3, doubled while <= 32767 / 2 (at most 31 times), then truncated
    m = (bits & 0x7FFFFF) | 0x800000
    e = ((bits >> 23) & 0xFF) - 150 + 12   # scale * 4096 = m * 2**e
    num = 3 * m
    shift = 0
    while shift <= 30 and _le(num, e + shift + 1, 32767):
        shift += 1
    mult = num << (e + shift) if e + shift >= 0 else num >> -(e + shift)
    if mult > 32767:
        raise ModelError("int16 input scale too large for TFLM's int16 logistic/tanh")
    return mult, shift, (1 << (shift - 1)) if shift > 0 else 0


def _le(num, e, bound):
    """num * 2**e <= bound (exact)."""
    return (num << e) <= bound if e >= 0 else num <= (bound << -e)


def eval16(p, bufs, fn):
    """Element-wise int16 LOGISTIC / TANH: params mult, shift, round, count."""
    x, y = bufs[0], bufs[-1]
    m, s, rnd = p["mult"], p["shift"], p["round"]
    for i in range(p["count"]):
        y[i] = fn((x[i] * m + rnd) >> s)
