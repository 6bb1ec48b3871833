"""Pure-Python NIST P-256 ECDSA verification and public-key validation (MicroPython-safe).

The verifier side of edgepoi.p256: the portable fallback where no crypto library exists (a device
checking a signed model update, edgepoi.ota) and the reference for the `cryptography` fast path on
CPython. A device that only signs never imports it.

    from edgepoi import p256_verify
    x, y = p256_verify.decode_point(pub65)                 # P256Error(bad_key) unless on the curve
    p256_verify.verify_digest(pub65, digest32, sig64)      # True / False; P256Error on a bad key
"""
from edgepoi.p256 import N, P, P256Error, _dbl, _madd, _mul_g, digest_int, inv

B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def decode_point(pub):
    """Parse and validate a 65-byte uncompressed SEC1 point -> (x, y). Raises P256Error."""
    if not isinstance(pub, (bytes, bytearray)) or len(pub) != 65 or pub[0] != 4:
        raise P256Error("bad_key", "expected a 65-byte uncompressed SEC1 point (0x04 || X || Y)")
    x = int.from_bytes(pub[1:33], "big")
    y = int.from_bytes(pub[33:65], "big")
    if x >= P or y >= P:
        raise P256Error("bad_key", "coordinate not below p")
    if (y * y - x * x * x + 3 * x - B) % P:
        raise P256Error("bad_key", "point is not on the P-256 curve")
    return x, y


def _add(X1, Y1, Z1, X2, Y2, Z2):
    """Full Jacobian addition."""
    p = P
    if not Z1:
        return X2, Y2, Z2
    if not Z2:
        return X1, Y1, Z1
    z1z1 = Z1 * Z1 % p
    z2z2 = Z2 * Z2 % p
    u1 = X1 * z2z2 % p
    s1 = Y1 * Z2 * z2z2 % p
    h = (X2 * z1z1 - u1) % p
    r = (Y2 * Z1 * z1z1 - s1) % p
    if not h:
        return _dbl(X1, Y1, Z1) if not r else (0, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    return X3, (r * (v - X3) - s1 * hhh) % p, Z1 * Z2 * h % p


def _mul(k, x, y):
    """k*(x, y) for an arbitrary affine point: fixed 4-bit window, Jacobian table."""
    tab = [(0, 1, 0), (x, y, 1)]
    for i in range(2, 16):
        tab.append(_madd(tab[-1][0], tab[-1][1], tab[-1][2], x, y))
    X, Y, Z = 0, 1, 0
    for s in range(252, -1, -4):
        if Z:
            for _ in range(4):
                X, Y, Z = _dbl(X, Y, Z)
        w = (k >> s) & 15
        if w:
            X, Y, Z = _add(X, Y, Z, tab[w][0], tab[w][1], tab[w][2])
    return X, Y, Z


def verify_digest(pub, digest, sig):
    """True when sig (64-byte r||s) is a valid signature of digest by pub (65-byte point).

    Raises P256Error for a malformed key (bad_key) or digest; a malformed signature returns False.
    """
    x, y = decode_point(pub)
    e = digest_int(digest)
    if not isinstance(sig, (bytes, bytearray)) or len(sig) != 64:
        return False
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if not (0 < r < N and 0 < s < N):
        return False
    w = inv(s, N)
    u1 = e * w % N
    X1, Y1, Z1 = _mul_g(u1) if u1 else (0, 1, 0)
    X2, Y2, Z2 = _mul(r * w % N, x, y)
    X, _, Z = _add(X1, Y1, Z1, X2, Y2, Z2)
    if not Z:
        return False
    # compare x(R) mod n with r without an inversion: X == (r or r+n) * Z^2
    zz = Z * Z % P
    c = r
    while c < P:
        if (c * zz - X) % P == 0:
            return True
        c += N
    return False
