"""Quantization arithmetic shared by the int8 ops, bit-exact with TFLM (portable, integer-only).

TFLM derives fixed-point multipliers from float32 scales with double-precision math (QuantizeMultiplier
in quantization_util.cc: frexp, then round(q * 2**31)). On an ESP32 MicroPython floats are single
precision, so doing the same with Python floats would give different multipliers. Instead every
scale is taken from its float32 *bit pattern* (exact as mantissa * 2**exp), products of two float32
values are exact integers, and each double rounding TFLM performs (a division, the float32 product in
GetQuantizedConvolutionMultipler, the final round to 31 bits) is emulated with integer arithmetic:
round-half-even to 53 (or 24) significant bits, then half-away-from-zero to 31 bits. The result is
identical on every platform; tests check it against the double-precision path (``quantize_multiplier_float``).

A value here is a pair ``(m, e)`` meaning ``m * 2**e`` with m a non-negative int.

Usage::

    m, s = conv_multiplier(in_bits, w_bits, out_bits)    # per-channel conv / FC multiplier
    y = multiply_by_quantized_multiplier(acc, m, s)      # gemmlowp double rounding
"""
import struct

from edgepoi.infer.flatbuf import ModelError

INT32_MIN = -2147483648
INT32_MAX = 2147483647


def f32(bits):
    """Exact (m, e) of a positive float32 given by its uint32 bit pattern (sign ignored: scales >= 0)."""
    exp = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    if exp == 0:
        return frac, -149
    if exp == 0xFF:
        raise ModelError("a scale (or beta) is inf/nan")
    return frac | 0x800000, exp - 150


def bits_of(x):
    """uint32 bit pattern of a Python float rounded to float32."""
    return struct.unpack("<I", struct.pack("<f", x))[0]


def mul(a, b):
    return a[0] * b[0], a[1] + b[1]


def _nbits(m):
    n = 0
    while m >> n:
        n += 1
    return n


def round_ratio(num, den, bits, half_even=True):
    """(num/den) with num, den = (m, e) values, rounded to ``bits`` significant bits (RNE)."""
    if num[0] == 0:
        return 0, 0
    if den[0] == 0:
        raise ModelError("division by a zero scale")
    n, d = num[0], den[0]
    e = num[1] - den[1]
    # want q = n * 2**k // d with 2**(bits-1) <= q < 2**bits
    k = bits - (_nbits(n) - _nbits(d)) + 1
    while True:
        if k >= 0:
            q, r = divmod(n << k, d)
            dd = d
        else:
            dd = d << -k
            q, r = divmod(n, dd)
        if q >> bits:
            k -= 1
        elif not q >> (bits - 1):
            k += 1
        else:
            break
    twice = 2 * r
    if twice > dd or (twice == dd and (not half_even or q & 1)):
        q += 1
        if q >> bits:
            q >>= 1
            k -= 1
    return q, e - k


def to_double(x):
    return round_ratio(x, (1, 0), 53)


def to_float32(x):
    return round_ratio(x, (1, 0), 24)


def quantize_multiplier(x):
    """TFLM QuantizeMultiplier of the double x = (m, e): returns (multiplier, shift)."""
    m, e = to_double(x)
    if m == 0:
        return 0, 0
    # frexp: x = (m / 2**53) * 2**(e + 53), fraction in [0.5, 1)
    shift = e + 53
    # round(fraction * 2**31) half away from zero = round(m / 2**22)
    q = (m + (1 << 21)) >> 22
    if q == 1 << 31:
        q >>= 1
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def frexp_multiplier(x):
    """TFLM logistic/tanh prepare: frexp then round(q * 2**31) with no renormalisation (int32 wrap)."""
    m, e = to_double(x)
    if m == 0:
        return 0, 0
    q = (m + (1 << 21)) >> 22
    return (q - (1 << 32) if q >= 1 << 31 else q), e + 53


def quantize_multiplier_float(d):
    """The same with host floats (exact only where floats are IEEE doubles); for cross-checks."""
    import math
    if d == 0:
        return 0, 0
    q, shift = math.frexp(d)
    qf = int(math.floor(q * 2147483648.0 + 0.5))
    if qf == 1 << 31:
        qf //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return qf, shift


def conv_multiplier(in_bits, w_bits, out_bits):
    """double(in) * double(w) / double(out) (TFLM PopulateConvolutionQuantizationParams)."""
    return quantize_multiplier(round_ratio(mul(f32(in_bits), f32(w_bits)), f32(out_bits), 53))


def fc_multiplier(in_bits, w_bits, out_bits):
    """double(float32(in * w)) / double(out) (TFLM GetQuantizedConvolutionMultipler, per-tensor FC)."""
    prod = to_float32(mul(f32(in_bits), f32(w_bits)))
    return quantize_multiplier(round_ratio(prod, f32(out_bits), 53))


def ratio_multiplier(a_bits, b_bits):
    """double(a) / double(b), e.g. requantization input_scale / output_scale."""
    return quantize_multiplier(round_ratio(f32(a_bits), f32(b_bits), 53))


def quantize_value(f_num, scale_bits, zero_point):
    """TFLM Quantize(): zero_point + round_away(float32(f / scale)); f a small int (0, 6, -1, 1)."""
    if f_num == 0:
        return zero_point
    m, e = round_ratio((abs(f_num), 0), f32(scale_bits), 24)
    # round half away from zero of m * 2**e
    if e >= 0:
        r = m << e
    else:
        r = (m + (1 << (-e - 1))) >> -e
    return zero_point + (r if f_num > 0 else -r)


def activation_range(act, out_bits, zp, qmin, qmax):
    """Clamp range of a fused activation (TFLM CalculateActivationRangeQuantized)."""
    if act == 0:
        return qmin, qmax
    if act == 1:
        return max(qmin, quantize_value(0, out_bits, zp)), qmax
    if act == 3:
        return (max(qmin, quantize_value(0, out_bits, zp)),
                min(qmax, quantize_value(6, out_bits, zp)))
    if act == 2:
        return (max(qmin, quantize_value(-1, out_bits, zp)),
                min(qmax, quantize_value(1, out_bits, zp)))
    raise ValueError("unsupported fused activation %d" % act)


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    if ab >= 0:
        return (ab + 1073741824) >> 31
    return -((-(ab + 1 - 1073741824)) >> 31)


def rdbp(x, exponent):
    """gemmlowp RoundingDivideByPOT."""
    if exponent == 0:
        return x
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def wrap32(x):
    x &= 0xFFFFFFFF
    return x - 0x100000000 if x & 0x80000000 else x


def multiply_by_quantized_multiplier(x, m, shift):
    """TFLM MultiplyByQuantizedMultiplier (int32 x, double rounding)."""
    if shift > 0:
        return rdbp(srdhm(wrap32(x << shift), m), 0)
    return rdbp(srdhm(x, m), -shift)


def multiply_by_quantized_multiplier64(x, m, shift):
    """TFLM MultiplyByQuantizedMultiplier for int64 x (int16 kernels)."""
    reduced = (m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF
    total = 15 - shift
    return (x * reduced + (1 << (total - 1))) >> total
