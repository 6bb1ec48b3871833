# heapsize: 64K
# Pure-Python P-256 / ECDSA / RFC 6979, under CPython and the real MicroPython. Expected values are the
# RFC 6979 appendix A.2.5 vectors (P-256, SHA-256) and RFC 4231 test case 2, copied from the RFCs.
# (Importing p256.py as source needs ~56K of heap for the compiler; signing itself fits a 32K heap
# once p256 is shipped as .mpy: tests/test_keys_file.py checks that.)
import hashlib

import checks
from edgepoi import p256
from edgepoi import p256_verify

X = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
UX = "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6"
UY = "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299"
VECTORS = (  # message, k, r, s  (RFC 6979 A.2.5, "With SHA-256")
    (b"sample", "A6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60",
     "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
     "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"),
    (b"test", "D16B6AE827F17175E040871A1C7EC3500192C4C92677336EC2537ACAEE0008E0",
     "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
     "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083"),
)


def h(m):
    return hashlib.sha256(m).digest()


def test_public_key_matches_rfc6979():
    pub = p256.public_key(X)
    assert len(pub) == 65 and pub[0] == 4
    assert pub[1:33].hex().upper() == UX
    assert pub[33:].hex().upper() == UY


def test_rfc6979_nonces_match():
    for msg, k, _, _ in VECTORS:
        gen = p256.rfc6979_nonces(X, h(msg))
        assert "%064X" % next(gen) == k


def test_signatures_match_rfc6979_byte_for_byte():
    for msg, _, r, s in VECTORS:
        sig = p256.sign_digest(X, h(msg))
        assert sig.hex().upper() == r + s


def test_rfc6979_signatures_verify():
    pub = p256.public_key(X)
    for msg, _, r, s in VECTORS:
        sig = bytes.fromhex(r + s)
        assert p256_verify.verify_digest(pub, h(msg), sig)
        assert not p256_verify.verify_digest(pub, h(msg + b"!"), sig)


def test_hmac_sha256_matches_rfc4231_case_2():
    mac = p256.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_hmac_sha256_long_key_is_hashed_first():
    key = b"\xaa" * 131   # RFC 4231 test case 6
    mac = p256.hmac_sha256(key, b"Test Using Larger Than Block-Size Key - Hash Key First")
    assert mac.hex() == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_every_byte_of_a_signature_matters():
    d = p256.keygen()
    pub = p256.public_key(d)
    dg = h(b"work unit")
    sig = p256.sign_digest(d, dg)
    assert p256_verify.verify_digest(pub, dg, sig)
    for i in (0, 7, 31, 32, 50, 63):
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert not p256_verify.verify_digest(pub, dg, bytes(bad))


def test_out_of_range_signature_values_fail():
    pub = p256.public_key(X)
    dg = h(b"sample")
    zero = b"\x00" * 32
    n = p256.N.to_bytes(32, "big")
    for sig in (zero + zero, zero + b"\x01" * 32, b"\x01" * 32 + zero, n + b"\x01" * 32,
                b"\x01" * 32 + n, b"\x01" * 63):
        assert not p256_verify.verify_digest(pub, dg, sig)


def test_decode_point_refuses_bad_keys():
    pub = p256.public_key(X)
    off = bytearray(pub)
    off[64] ^= 1
    e = checks.raises(p256.P256Error, p256_verify.decode_point, bytes(off))
    assert e.reason == "bad_key"
    for bad in (pub[:64], b"\x02" + pub[1:], b"\x04" + b"\x00" * 64, b"\x04" + b"\xff" * 64):
        assert checks.raises(p256.P256Error, p256_verify.decode_point, bad).reason == "bad_key"
    # x >= p with y of a valid point: coordinates must be below p even if x - p would fit
    big = b"\x04" + (p256.P + 1).to_bytes(32, "big") + pub[33:]
    assert checks.raises(p256.P256Error, p256_verify.decode_point, big).reason == "bad_key"
    assert checks.raises(p256.P256Error, p256_verify.verify_digest, bytes(off), h(b""), b"\x01" * 64)


def test_scalar_range_is_enforced():
    for d in (0, p256.N, p256.N + 5, -1):
        checks.raises(p256.P256Error, p256.public_key, d)
        checks.raises(p256.P256Error, p256.sign_digest, d, h(b"x"))
    for _ in range(5):
        d = p256.keygen()
        assert 0 < d < p256.N


def test_comb_and_window_multiplication_agree():
    # k*G from the comb table against the generic 4-bit window over G, and (n-1)*G == -G
    for k in (1, 2, 3, 63, 64, 2 ** 43, 2 ** 255 + 12345, p256.N - 1, p256.keygen()):
        a = p256._affine(*p256._mul_g(k))
        b = p256._affine(*p256_verify._mul(k, p256.GX, p256.GY))
        assert a == b
    x, y = p256._affine(*p256._mul_g(p256.N - 1))
    assert x == p256.GX and y == p256.P - p256.GY


def test_bad_digest_is_refused():
    checks.raises(p256.P256Error, p256.sign_digest, X, b"short")
    checks.raises(p256.P256Error, p256_verify.verify_digest, p256.public_key(X), b"short", b"\x01" * 64)
