"""Compute the comb table of the P-256 generator that edgepoi.p256 signs with and write
``sdk/edgepoi/p256_comb.py``.

Entry i (1 .. 2**COMB - 1) is the affine point s_i * G with s_i the sum of 2**(COLS * j) over the set bits
j of i (COLS = ceil(256 / COMB)), stored as x || y (32 bytes each, big-endian) at offset 64 * (i - 1).
The points are computed here with plain affine double-and-add (CPython's pow(a, -1, p)), independently of
edgepoi.p256; tests/test_p256_comb.py checks every entry against `cryptography` as well.

    python scripts/derive_p256_comb.py           # write sdk/edgepoi/p256_comb.py
    python scripts/derive_p256_comb.py --check   # exit 1 if the file differs from a fresh computation
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "sdk", "edgepoi", "p256_comb.py")
COMB = 6                                  # must equal edgepoi.p256._COMB
COLS = (256 + COMB - 1) // COMB

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def _add(a, b):
    """Affine point addition on y^2 = x^3 - 3x + b (None is the point at infinity)."""
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0]:
        if (a[1] + b[1]) % P == 0:
            return None
        lam = (3 * a[0] * a[0] - 3) * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def scalar_mul(k, pt=G):
    out = None
    while k:
        if k & 1:
            out = _add(out, pt)
        pt = _add(pt, pt)
        k >>= 1
    return out


def scalars(comb=COMB):
    """s_i for i = 1 .. 2**comb - 1."""
    cols = (256 + comb - 1) // comb
    return [sum(1 << (cols * j) for j in range(comb) if i >> j & 1) for i in range(1, 1 << comb)]


def table(comb=COMB):
    """The table as bytes: 64 per entry."""
    out = b""
    for s in scalars(comb):
        x, y = scalar_mul(s % N)
        out += x.to_bytes(32, "big") + y.to_bytes(32, "big")
    return out


def render(raw, comb=COMB):
    cols = (256 + comb - 1) // comb
    lines = ['    b"%s"' % "".join("\\x%02x" % c for c in raw[k:k + 16]) for k in range(0, len(raw), 16)]
    head = ("The comb table of the P-256 generator G for edgepoi.p256 (%d teeth, %d columns). Generated file.\n\n"
            "Entry i (1 .. %d) is the affine point s_i * G, s_i = the sum of 2**(%d * j) over the set bits j of\n"
            "i, as x || y (32 bytes each, big-endian) at offset 64 * (i - 1): %d bytes. One constant bytes\n"
            "object, so a board that runs the package from ROMFS (or frozen) reads it from flash: no heap.\n"
            "Regenerate with ``python scripts/derive_p256_comb.py``; tests/test_p256_comb.py checks every\n"
            "entry against `cryptography`.\n" % (comb, cols, (1 << comb) - 1, cols, len(raw)))
    return '"""%s"""\n\nTABLE = (\n%s)\n' % (head, "\n".join(lines))


def main(argv):
    text = render(table())
    if "--check" in argv:
        with open(OUT) as f:
            ok = f.read() == text
        print("%s %s a fresh computation" % (OUT, "equals" if ok else "DIFFERS FROM"))
        return 0 if ok else 1
    with open(OUT, "w") as f:
        f.write(text)
    print("wrote %s (%d entries)" % (OUT, (1 << COMB) - 1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
