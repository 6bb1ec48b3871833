"""Pure-Python NIST P-256 ECDSA with RFC 6979 deterministic nonces (MicroPython-safe).

The portable fallback for signing and verifying ES256 where no crypto library exists (MicroPython)
and the independent reference for the fast paths on CPython. Not constant-time: Python big integers
leak timing, so a software key is a development key; production keys live in hardware (edgepoi.keys).

    from edgepoi import p256
    d = p256.keygen()
    pub = p256.public_key(d)                      # 65-byte uncompressed SEC1 point
    sig = p256.sign_digest(d, digest32)           # 64-byte r||s, deterministic (RFC 6979)
    p256.verify_digest(pub, digest32, sig)        # True / False; P256Error on a bad key

Speed: Jacobian coordinates, a comb table for the generator (COMB teeth, 2**COMB-1 affine points,
built on first use in ~16 ms, kept as one 4 KB bytearray of x||y pairs to suit a 32K heap) and
mixed additions, so a signature is COLS doublings and COLS additions plus two inversions.
"""
import hashlib
import os

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
COMB = 6                      # comb teeth: table of 63 points (4 KB); COLS columns per multiplication
COLS = (256 + COMB - 1) // COMB
_MASK = (1 << COLS) - 1
_table = None                 # bytearray, 64 per point (x||y), entries 1..2**COMB-1 (entry 0 unused)


class P256Error(ValueError):
    """A key, point, scalar or signature is malformed (`reason` says which)."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason


def _b2i(b):
    return int.from_bytes(b, "big")


def _i2b(i, n=32):
    return i.to_bytes(n, "big")


try:
    _POW_INV = pow(3, -1, 7) == 5   # CPython >= 3.8; MicroPython 1.29 returns 0 here
except (ValueError, TypeError):
    _POW_INV = False


def inv(a, m):
    """Inverse of a modulo the prime m: pow(a, -1, m) where it works, else extended Euclid."""
    a %= m
    if a == 0:
        raise P256Error("bad_scalar", "zero has no inverse")
    if _POW_INV:
        return pow(a, -1, m)
    x0, x1, b = 1, 0, m
    while b:
        q = a // b
        a, b = b, a - q * b
        x0, x1 = x1, x0 - q * x1
    return x0 % m


# -- Jacobian arithmetic (a = -3); the point at infinity has Z == 0 -------------------------------

def _dbl(X, Y, Z):
    p = P
    if not Z or not Y:
        return 0, 1, 0
    d = Z * Z % p
    g = Y * Y % p
    bt = X * g % p
    a = 3 * (X - d) * (X + d) % p
    X3 = (a * a - 8 * bt) % p
    Z3 = ((Y + Z) * (Y + Z) - g - d) % p
    return X3, (a * (4 * bt - X3) - 8 * g * g) % p, Z3


def _madd(X1, Y1, Z1, x2, y2):
    """(X1:Y1:Z1) + (x2, y2) affine."""
    p = P
    if not Z1:
        return x2, y2, 1
    zz = Z1 * Z1 % p
    h = (x2 * zz - X1) % p
    r = (y2 * zz * Z1 - Y1) % p
    if not h:
        return _dbl(X1, Y1, Z1) if not r else (0, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = X1 * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    return X3, (r * (v - X3) - Y1 * hhh) % p, Z1 * h % p


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


def _affine(X, Y, Z):
    if not Z:
        raise P256Error("infinity", "point at infinity")
    zi = inv(Z, P)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 * zi % P


def _build_table():
    """Entry i (1..2**COMB-1) = sum of 2**(COLS*j) * G over the set bits j of i, affine, 64 bytes each.

    Built one entry at a time (one inversion each, ~16 ms in all on the unix port) so the only large
    allocation is the table itself: 4 KB, which fits a 32K heap.
    """
    global _table
    n = 1 << COMB
    buf = bytearray(64 * n)
    X, Y, Z = GX, GY, 1
    for j in range(COMB):
        x, y = _affine(X, Y, Z)
        o = 64 << j
        buf[o:o + 32] = _i2b(x)
        buf[o + 32:o + 64] = _i2b(y)
        for _ in range(COLS):
            X, Y, Z = _dbl(X, Y, Z)
    for i in range(3, n):
        top = 1
        while top * 2 <= i:
            top *= 2
        if i == top:
            continue
        a, b = 64 * (i - top), 64 * top
        x, y = _affine(*_madd(_b2i(buf[a:a + 32]), _b2i(buf[a + 32:a + 64]), 1,
                              _b2i(buf[b:b + 32]), _b2i(buf[b + 32:b + 64])))
        buf[64 * i:64 * i + 32] = _i2b(x)
        buf[64 * i + 32:64 * i + 64] = _i2b(y)
    _table = buf


def _mul_g(k):
    """k*G in Jacobian coordinates (0 < k < N) with the comb table."""
    if _table is None:
        _build_table()
    t = _table
    m = _MASK
    rows = [(k >> (COLS * j)) & m for j in range(COMB)]
    X, Y, Z = 0, 1, 0
    madd = _madd
    dbl = _dbl
    for c in range(COLS - 1, -1, -1):
        X, Y, Z = dbl(X, Y, Z)
        i = 0
        for j in range(COMB - 1, -1, -1):
            i = (i << 1) | ((rows[j] >> c) & 1)
        if i:
            o = 64 * i
            X, Y, Z = madd(X, Y, Z, int.from_bytes(t[o:o + 32], "big"),
                           int.from_bytes(t[o + 32:o + 64], "big"))
    return X, Y, Z


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


# -- encodings and validation ----------------------------------------------------------------------

def encode_point(x, y):
    """SEC1 uncompressed encoding: 0x04 || x || y (65 bytes)."""
    return b"\x04" + _i2b(x) + _i2b(y)


def decode_point(pub):
    """Parse and validate a 65-byte uncompressed SEC1 point -> (x, y). Raises P256Error."""
    if not isinstance(pub, (bytes, bytearray)) or len(pub) != 65 or pub[0] != 4:
        raise P256Error("bad_key", "expected a 65-byte uncompressed SEC1 point (0x04 || X || Y)")
    x = _b2i(pub[1:33])
    y = _b2i(pub[33:65])
    if x >= P or y >= P:
        raise P256Error("bad_key", "coordinate not below p")
    if (y * y - x * x * x + 3 * x - B) % P:
        raise P256Error("bad_key", "point is not on the P-256 curve")
    return x, y


def check_scalar(d):
    if not 0 < d < N:
        raise P256Error("bad_scalar", "private scalar out of range [1, n-1]")
    return d


def keygen():
    """A fresh private scalar in [1, n-1] from os.urandom (rejection sampling, no modular bias)."""
    while True:
        d = _b2i(os.urandom(32))
        if 0 < d < N:
            return d


def public_key(d):
    """The 65-byte uncompressed public point of private scalar d."""
    x, y = _affine(*_mul_g(check_scalar(d)))
    return encode_point(x, y)


# -- RFC 6979 -------------------------------------------------------------------------------------

def hmac_sha256(key, msg):
    """HMAC-SHA256 over hashlib (MicroPython has no hmac module); keys of at most 64 bytes."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def rfc6979_nonces(d, digest):
    """Yield the RFC 6979 (section 3.2, HMAC-SHA256) candidate nonces for key d and a 32-byte digest."""
    x = _i2b(d)
    h = _i2b(_b2i(digest) % N)
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = hmac_sha256(k, v + b"\x00" + x + h)
    v = hmac_sha256(k, v)
    k = hmac_sha256(k, v + b"\x01" + x + h)
    v = hmac_sha256(k, v)
    while True:
        v = hmac_sha256(k, v)
        t = _b2i(v)
        if 0 < t < N:
            yield t
        k = hmac_sha256(k, v + b"\x00")
        v = hmac_sha256(k, v)


def _digest_int(digest):
    if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
        raise P256Error("bad_digest", "expected a 32-byte SHA-256 digest")
    return _b2i(digest)


def sign_digest(d, digest):
    """ECDSA signature of a 32-byte digest with private scalar d -> 64-byte r||s (RFC 6979 nonce)."""
    check_scalar(d)
    e = _digest_int(digest)
    for k in rfc6979_nonces(d, digest):
        X, _, Z = _mul_g(k)
        zi = inv(Z, P)
        r = X * zi * zi % P % N
        if not r:
            continue
        s = inv(k, N) * (e + r * d) % N
        if s:
            return _i2b(r) + _i2b(s)


def verify_digest(pub, digest, sig):
    """True when sig (64-byte r||s) is a valid signature of digest by pub (65-byte point).

    Raises P256Error for a malformed key (bad_key) or digest; a malformed signature returns False.
    """
    x, y = decode_point(pub)
    e = _digest_int(digest)
    if not isinstance(sig, (bytes, bytearray)) or len(sig) != 64:
        return False
    r = _b2i(sig[:32])
    s = _b2i(sig[32:])
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
