"""Pure-Python NIST P-256 ECDSA signing with RFC 6979 deterministic nonces (MicroPython-safe).

The portable signer where no crypto library exists (MicroPython) and the independent reference for the
fast paths on CPython. Not constant-time: Python big integers leak timing, so a software key is a
development key; production keys live in hardware (edgepoi.keys). Verification is edgepoi.p256_verify,
which a device that only signs never loads.

    from edgepoi import p256
    d = p256.keygen()
    pub = p256.public_key(d)                      # 65-byte uncompressed SEC1 point
    sig = p256.sign_digest(d, digest32)           # 64-byte r||s, deterministic (RFC 6979)

Speed: Jacobian coordinates and a comb table for the generator (_COMB teeth: 2**_COMB-1 affine points,
precomputed in edgepoi.p256_comb as one constant bytes object, which MicroPython leaves in flash when the
package runs from ROMFS or is frozen) with mixed additions, so a signature is _COLS doublings and at most
_COLS additions plus two inversions.
"""
import hashlib
import os

from edgepoi.p256_comb import TABLE

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
_COMB = const(6)              # comb teeth; p256_comb.TABLE holds 2**_COMB - 1 points (4 KB)
_COLS = const(43)             # (256 + _COMB - 1) // _COMB columns per multiplication
_MASK = const(0x7FFFFFFFFFF)  # (1 << _COLS) - 1


class P256Error(ValueError):
    """A key, point, scalar or signature is malformed (`reason` says which)."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason


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


def _affine(X, Y, Z):
    if not Z:
        raise P256Error("infinity", "point at infinity")
    zi = inv(Z, P)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 * zi % P


def _mul_g(k):
    """k*G in Jacobian coordinates (0 < k < N) with the comb table: entry i (1..2**_COMB-1) is the sum
    of 2**(_COLS*j) * G over the set bits j of i, x||y at offset 64 * (i - 1) of TABLE."""
    t = TABLE
    rows = []
    for j in range(_COMB):
        rows.append((k >> (_COLS * j)) & _MASK)
    X, Y, Z = 0, 1, 0
    for c in range(_COLS - 1, -1, -1):
        X, Y, Z = _dbl(X, Y, Z)
        i = 0
        for j in range(_COMB - 1, -1, -1):
            i = (i << 1) | ((rows[j] >> c) & 1)
        if i:
            o = 64 * i - 64
            X, Y, Z = _madd(X, Y, Z, int.from_bytes(t[o:o + 32], "big"),
                            int.from_bytes(t[o + 32:o + 64], "big"))
    return X, Y, Z


# -- keys -----------------------------------------------------------------------------------------

def check_scalar(d):
    if not 0 < d < N:
        raise P256Error("bad_scalar", "private scalar out of range [1, n-1]")
    return d


def keygen():
    """A fresh private scalar in [1, n-1] from os.urandom (rejection sampling, no modular bias)."""
    while True:
        d = int.from_bytes(os.urandom(32), "big")
        if 0 < d < N:
            return d


def public_key(d):
    """The 65-byte uncompressed public point (0x04 || x || y) of private scalar d."""
    x, y = _affine(*_mul_g(check_scalar(d)))
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


# -- RFC 6979 -------------------------------------------------------------------------------------

def hmac_sha256(key, msg):
    """HMAC-SHA256 over hashlib (MicroPython has no hmac module)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    ipad = bytearray(64)
    opad = bytearray(64)
    for i in range(64):
        b = key[i] if i < len(key) else 0
        ipad[i] = b ^ 0x36
        opad[i] = b ^ 0x5C
    inner = hashlib.sha256(ipad)
    inner.update(msg)
    outer = hashlib.sha256(opad)
    outer.update(inner.digest())
    return outer.digest()


def rfc6979_nonces(d, digest):
    """Yield the RFC 6979 (section 3.2, HMAC-SHA256) candidate nonces for key d and a 32-byte digest."""
    x = d.to_bytes(32, "big")
    h = (int.from_bytes(digest, "big") % N).to_bytes(32, "big")
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = hmac_sha256(k, v + b"\x00" + x + h)
    v = hmac_sha256(k, v)
    k = hmac_sha256(k, v + b"\x01" + x + h)
    v = hmac_sha256(k, v)
    while True:
        v = hmac_sha256(k, v)
        t = int.from_bytes(v, "big")
        if 0 < t < N:
            yield t
        k = hmac_sha256(k, v + b"\x00")
        v = hmac_sha256(k, v)


def digest_int(digest):
    """A 32-byte digest as an integer; P256Error(bad_digest) for anything else."""
    if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
        raise P256Error("bad_digest", "expected a 32-byte SHA-256 digest")
    return int.from_bytes(digest, "big")


def sign_digest(d, digest):
    """ECDSA signature of a 32-byte digest with private scalar d -> 64-byte r||s (RFC 6979 nonce)."""
    check_scalar(d)
    e = digest_int(digest)
    for k in rfc6979_nonces(d, digest):
        X, _, Z = _mul_g(k)
        zi = inv(Z, P)
        r = X * zi * zi % P % N
        if not r:
            continue
        s = inv(k, N) * (e + r * d) % N
        if s:
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
