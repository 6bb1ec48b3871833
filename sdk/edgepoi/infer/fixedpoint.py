"""gemmlowp-style int32 fixed-point functions used by TFLM's int8 softmax / logistic / tanh.

Values are raw int32 ints; "Qk" below means k integer bits (31 - k fractional bits). Products use
SaturatingRoundingDoublingHighMul, sums wrap like int32, exactly as gemmlowp/fixedpoint does.

Usage::

    from edgepoi.infer import fixedpoint as fp
    e = fp.exp_on_negative_values(raw_q5, 5)     # exp(x) for x <= 0, result Q0
"""
from edgepoi.infer.quant import srdhm, rdbp, wrap32

INT32_MAX = 2147483647
INT32_MIN = -2147483648


def sat_shl(x, exponent):
    """SaturatingRoundingMultiplyByPOT with a positive exponent (saturating left shift)."""
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return x << exponent


def rescale(x, src_bits, dst_bits):
    e = src_bits - dst_bits
    if e > 0:
        return sat_shl(x, e)
    if e < 0:
        return rdbp(x, -e)
    return x


def _exp_quarter(a):
    """exp on [-1/4, 0) for a Q0 raw value; result Q0."""
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbp(x4, 2)
    t = rdbp(wrap32(srdhm(wrap32(x4_over_4 + x3), 715827883) + x2), 1)
    return wrap32(1895147668 + srdhm(1895147668, wrap32(x + t)))


_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
           (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, int_bits):
    """gemmlowp exp_on_negative_values for a raw value with ``int_bits`` integer bits; result Q0."""
    frac_bits = 31 - int_bits
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod = wrap32((a & mask) - one_quarter)
    result = _exp_quarter(rescale(a_mod, int_bits, 0))
    remainder = wrap32(a_mod - a)
    for exponent, mult in _BARREL:
        if int_bits > exponent:
            if remainder & (1 << (frac_bits + exponent)):
                result = srdhm(result, mult)
    if int_bits > 5:
        clamp = -(1 << (36 - int_bits))
        if a < clamp:
            result = 0
    if a == 0:
        result = INT32_MAX
    return result


def _newton_half_den(a):
    """Newton-Raphson 1/(1+a) shared by gemmlowp's two divisions: returns x (Q2) ~ 2/(1+a)... """
    s = a + INT32_MAX
    half_den = (s + 1) // 2 if s >= 0 else -((1 - s) // 2)  # RoundingHalfSum
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))  # Q2
    one_q2 = 1 << 29
    for _ in range(3):
        hdx = srdhm(half_den, x)  # Q2
        omh = wrap32(one_q2 - hdx)  # Q2
        x = wrap32(x + rescale(srdhm(x, omh), 4, 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0 in, Q0 out."""
    return rescale(_newton_half_den(a), 1, 0)  # ExactMulByPot<-1>: Q2 -> Q1 raw, then Rescale<0>


def one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp one_minus_x_over_one_plus_x_for_x_in_0_1: Q0 in, Q0 out."""
    return rescale(wrap32(_newton_half_den(a) - (1 << 29)), 2, 0)


def logistic(a, int_bits):
    """gemmlowp logistic of a raw value with ``int_bits`` integer bits; Q0 result."""
    if a == 0:
        return 1 << 30
    pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-a if a > 0 else a, int_bits))
    return pos if a > 0 else wrap32(INT32_MAX - pos)


def tanh(a, int_bits):
    """gemmlowp tanh of a raw value with ``int_bits`` integer bits; Q0 result."""
    if a == 0:
        return 0
    n = a if a < 0 else -a
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, int_bits + 1))
    return wrap32(-t) if a < 0 else t


def count_leading_zeros32(x):
    n = 0
    x &= 0xFFFFFFFF
    if x == 0:
        return 32
    while not x & 0x80000000:
        x <<= 1
        n += 1
    return n


def get_reciprocal(x, x_int_bits):
    """TFLM GetReciprocal: returns (Q0 raw of 1/x scaled, num_bits_over_unit)."""
    hp1 = count_leading_zeros32(x)
    nbou = x_int_bits - hp1
    shifted_minus_one = wrap32(((x << hp1) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_minus_one), nbou

