"""PKCS#8 PrivateKeyInfo for one key type, EC P-256 (id-ecPublicKey, prime256v1): DER and PEM, both ways.

The format of ``file:`` keys (edgepoi.keys.file): the bytes `openssl genpkey -algorithm EC -pkeyopt
ec_paramgen_curve:P-256` and `cryptography` write. Only what that one structure needs; anything else
(another curve, an encrypted key, a SEC1 "EC PRIVATE KEY", non-minimal DER) is refused with
KeyBackendError("bad_key_file", why). Portable; imported only while a key file is read or written.

    d, pub = der_decode_private(pem_decode(text))      # pub: the stored 65-byte point, or None
    text = pem_encode(der_encode_private(d, pub))
"""
import binascii

from edgepoi import p256
from edgepoi.keys import KeyBackendError

_OID_EC = b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01"          # 1.2.840.10045.2.1 id-ecPublicKey
_OID_P256 = b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"    # 1.2.840.10045.3.1.7 prime256v1
_BEGIN = "-----BEGIN PRIVATE KEY-----"
_END = "-----END PRIVATE KEY-----"


def _bad(detail):
    return KeyBackendError("bad_key_file", detail)


def _tlv(buf, pos, end):
    """Read one DER item at pos -> (tag, value_start, value_end)."""
    if pos + 2 > end:
        raise _bad("truncated DER")
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k < 1 or k > 2 or pos + k > end:
            raise _bad("unsupported DER length")
        n = int.from_bytes(buf[pos:pos + k], "big")
        if n < 0x80 or (k == 2 and n < 0x100):
            raise _bad("non-minimal DER length")
        pos += k
    if pos + n > end:
        raise _bad("DER item runs past its container")
    return tag, pos, pos + n


def _expect(buf, pos, end, tag, what):
    t, s, e = _tlv(buf, pos, end)
    if t != tag:
        raise _bad("expected %s" % what)
    return s, e


def _small_int(buf, s, e):
    if e - s != 1:
        raise _bad("unexpected version")
    return buf[s]


def der_decode_private(der):
    """PKCS#8 PrivateKeyInfo (EC, P-256) DER -> (d, public_key_or_None). Raises KeyBackendError."""
    der = bytes(der)
    s, e = _expect(der, 0, len(der), 0x30, "PrivateKeyInfo SEQUENCE")
    if e != len(der):
        raise _bad("trailing bytes after PrivateKeyInfo")
    vs, ve = _expect(der, s, e, 0x02, "version INTEGER")
    if _small_int(der, vs, ve) not in (0, 1):
        raise _bad("unsupported PKCS#8 version")
    a_s, a_e = _expect(der, ve, e, 0x30, "AlgorithmIdentifier")
    if der[a_s:a_e] != _OID_EC + _OID_P256:
        raise _bad("not an EC P-256 key (only prime256v1 / ES256 is supported)")
    os_, oe = _expect(der, a_e, e, 0x04, "privateKey OCTET STRING")
    # ECPrivateKey ::= SEQUENCE { 1, OCTET STRING d, [0] params OPTIONAL, [1] BIT STRING pub OPTIONAL }
    qs, qe = _expect(der, os_, oe, 0x30, "ECPrivateKey SEQUENCE")
    if qe != oe:
        raise _bad("trailing bytes in ECPrivateKey")
    vs, ve = _expect(der, qs, qe, 0x02, "ECPrivateKey version")
    if _small_int(der, vs, ve) != 1:
        raise _bad("unsupported ECPrivateKey version")
    ds, de = _expect(der, ve, qe, 0x04, "private key OCTET STRING")
    if de - ds != 32:
        raise _bad("private key must be 32 bytes")
    d = int.from_bytes(der[ds:de], "big")
    pub = None
    pos = de
    while pos < qe:
        t, s2, e2 = _tlv(der, pos, qe)
        if t == 0xA0 and der[s2:e2] != _OID_P256:
            raise _bad("ECPrivateKey parameters name another curve")
        if t == 0xA1:
            bs, be = _expect(der, s2, e2, 0x03, "publicKey BIT STRING")
            if be - bs != 66 or der[bs] != 0:
                raise _bad("public key must be an uncompressed P-256 point")
            pub = der[bs + 1:be]
        pos = e2
    if not 0 < d < p256.N:
        raise _bad("private scalar out of range")
    return d, pub


def der_encode_private(d, pub):
    """PKCS#8 DER for scalar d with its 65-byte public point (the layout OpenSSL writes)."""
    return (b"\x30\x81\x87\x02\x01\x00\x30\x13" + _OID_EC + _OID_P256 + b"\x04\x6d\x30\x6b\x02\x01\x01"
            b"\x04\x20" + d.to_bytes(32, "big") + b"\xa1\x44\x03\x42\x00" + bytes(pub))


def pem_encode(der):
    b64 = binascii.b2a_base64(der).strip().decode()
    lines = [_BEGIN] + [b64[i:i + 64] for i in range(0, len(b64), 64)] + [_END, ""]
    return "\n".join(lines).encode()


def pem_decode(text):
    """The DER inside a "PRIVATE KEY" PEM block (bytes or str)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except UnicodeError:
            raise _bad("not a PEM text file")
    if "ENCRYPTED PRIVATE KEY" in text:
        raise _bad("encrypted PKCS#8 keys are not supported")
    if "BEGIN EC PRIVATE KEY" in text:
        raise _bad("SEC1 'EC PRIVATE KEY' found; convert: openssl pkcs8 -topk8 -nocrypt")
    i = text.find(_BEGIN)
    j = text.find(_END)
    if i < 0 or j < i:
        raise _bad("no '%s' block" % _BEGIN)
    body = "".join(text[i + len(_BEGIN):j].split())
    try:
        return binascii.a2b_base64(body)
    except Exception:  # binascii.Error on CPython, ValueError on MicroPython
        raise _bad("bad base64 in PEM body")
