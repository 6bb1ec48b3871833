"""COSE_Sign1 (RFC 9052) with ES256, verifier side: verify and decode, sans-I/O, portable.

    from edgepoi import cose_verify
    payload = cose_verify.verify1(msg, public_key65)          # CoseError(.reason) on any failure
    protected, unprotected, payload, sig = cose_verify.decode1(msg)   # no verification (read the kid)
    kid = cose_verify.kid_of(msg)

The profile, the reasons and CoseError are edgepoi.cose's (signing); this module is what an edge node,
a console or a device checking a signed model update (edgepoi.ota) loads on top. On CPython
verification uses `cryptography` (parsed public keys are cached); elsewhere edgepoi.p256_verify.
"""
import hashlib

from edgepoi import cbor
from edgepoi.cose import ALG_ES256, H_ALG, H_KID, MAX_MESSAGE, TAG_SIGN1, CoseError, sig_structure


def _bstr_at(m, pos):
    """(start, end) of a minimally encoded definite byte string at pos, or None."""
    if pos >= len(m):
        return None
    b = m[pos]
    if b >> 5 != 2:
        return None
    ai = b & 31
    if ai < 24:
        n, pos = ai, pos + 1
    elif ai == 24 and pos + 2 <= len(m) and m[pos + 1] >= 24:
        n, pos = m[pos + 1], pos + 2
    elif ai == 25 and pos + 3 <= len(m) and m[pos + 1]:
        n, pos = (m[pos + 1] << 8) | m[pos + 2], pos + 3
    else:
        return None
    return (pos, pos + n) if pos + n <= len(m) else None


def _decode_fast(m):
    """The exact layout sign1 writes, parsed without the general decoder; None for anything else
    (which then goes through the general path and gets its precise reason)."""
    if m[:2] != b"\xd2\x84":
        return None
    p = _bstr_at(m, 2)
    if p is None or p[1] - p[0] < 6 or m[p[0]:p[0] + 4] != b"\xa2\x01\x26\x04":
        return None
    kid = _bstr_at(m, p[0] + 4)
    if kid is None or kid[1] != p[1] or kid[1] == kid[0] or p[1] >= len(m) or m[p[1]] != 0xA0:
        return None
    pl = _bstr_at(m, p[1] + 1)
    if pl is None:
        return None
    sg = _bstr_at(m, pl[1])
    if sg is None or sg[1] != len(m):
        return None
    prot_raw = m[p[0]:p[1]]
    return (prot_raw, {H_ALG: ALG_ES256, H_KID: m[kid[0]:kid[1]]}, {}, m[pl[0]:pl[1]],
            m[sg[0]:sg[1]])


def decode1(message):
    """Parse a tagged COSE_Sign1 without verifying -> (protected map, unprotected map, payload, sig).

    Checks the structure, the alg (ES256) and that the protected header carries a kid; not the
    signature. Raises CoseError.
    """
    return _decode(message)[1:]


def _decode(message):
    if not isinstance(message, (bytes, bytearray, memoryview)):
        raise CoseError("not_cose", "message must be bytes")
    if len(message) > MAX_MESSAGE:
        raise CoseError("not_cose", "message longer than %d bytes" % MAX_MESSAGE)
    if isinstance(message, bytes):
        fast = _decode_fast(message)
        if fast is not None:
            return fast
    try:
        item = cbor.loads(message, max_depth=8, max_items=256)
    except cbor.CBORError as e:
        raise CoseError("not_cose", "not CBOR: %s" % e)
    if not isinstance(item, cbor.CBORTag) or item.tag != TAG_SIGN1:
        raise CoseError("not_tagged", "expected a COSE_Sign1 tag (18)")
    v = item.value
    if not isinstance(v, list) or len(v) != 4:
        raise CoseError("bad_structure", "COSE_Sign1 is an array of 4 items")
    prot_raw, unprot, payload, sig = v
    if not isinstance(prot_raw, bytes) or not isinstance(unprot, dict):
        raise CoseError("bad_structure", "protected header must be bytes, unprotected a map")
    if not isinstance(payload, bytes):
        raise CoseError("bad_structure", "payload must be bytes (detached payloads unsupported)")
    if not isinstance(sig, bytes):
        raise CoseError("bad_structure", "signature must be bytes")
    if prot_raw:
        try:
            prot = cbor.loads(prot_raw, max_depth=4, max_items=64)
        except cbor.CBORError as e:
            raise CoseError("bad_structure", "protected header is not CBOR: %s" % e)
        if not isinstance(prot, dict) or not prot:
            raise CoseError("bad_structure", "protected header must be a non-empty map")
    else:
        prot = {}
    for label in unprot:
        if label in prot:
            raise CoseError("bad_structure", "header label %r both protected and unprotected" % label)
    alg = prot.get(H_ALG)
    if not isinstance(alg, int) or isinstance(alg, bool) or alg != ALG_ES256:   # not -7.0, not true
        raise CoseError("wrong_alg", "protected alg must be ES256 (-7), got %r" % (alg,))
    kid = prot.get(H_KID)
    if not isinstance(kid, bytes) or not kid:
        raise CoseError("missing_kid", "protected header has no kid (label 4, bytes)")
    return prot_raw, prot, unprot, payload, sig


def kid_of(message):
    """The kid (bytes) of a COSE_Sign1 message, unverified."""
    return _decode(message)[1][H_KID]


_key_cache = {}  # type: dict  # public key bytes -> cryptography key (CPython only)


def _crypto_key(public_key):
    key = _key_cache.get(public_key)
    if key is None:
        from cryptography.hazmat.primitives.asymmetric import ec
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
        except ValueError as e:
            raise CoseError("bad_key", "public key not on P-256: %s" % e)
        if len(_key_cache) >= 1024:
            _key_cache.clear()
        _key_cache[public_key] = key
    return key


def _fast():
    """(InvalidSignature, ECDSA-prehashed-SHA256, encode_dss_signature) from cryptography, or False."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils
    except ImportError:
        return False
    return InvalidSignature, ec.ECDSA(utils.Prehashed(hashes.SHA256())), utils.encode_dss_signature


_HAVE_FAST = None


def verify1(message, public_key, external_aad=b"", pure=False):
    """Verify a tagged COSE_Sign1 ES256 message against a 65-byte public key -> payload bytes.

    Args:
        message: the COSE_Sign1 bytes.
        public_key: 65-byte uncompressed SEC1 P-256 point.
        external_aad: the same bytes the signer bound in (default empty).
        pure: force the pure-Python verifier (benchmarks, tests).
    Raises:
        CoseError: reason in REASONS.
    """
    global _HAVE_FAST
    if not isinstance(public_key, (bytes, bytearray)) or len(public_key) != 65 or public_key[0] != 4:
        raise CoseError("bad_key", "public key must be a 65-byte uncompressed SEC1 point")
    public_key = bytes(public_key)
    prot_raw, _, _, payload, sig = _decode(message)
    if len(sig) != 64:
        raise CoseError("bad_signature_length", "ES256 signature is 64 bytes, got %d" % len(sig))
    digest = hashlib.sha256(sig_structure(prot_raw, payload, bytes(external_aad))).digest()
    if _HAVE_FAST is None:
        _HAVE_FAST = _fast()
    if _HAVE_FAST and not pure:
        ok = _verify_fast(public_key, digest, sig)
    else:
        from edgepoi import p256_verify
        try:
            ok = p256_verify.verify_digest(public_key, digest, sig)
        except p256_verify.P256Error as e:
            raise CoseError("bad_key", str(e))
    if not ok:
        raise CoseError("bad_signature", "signature does not verify")
    return payload


def _verify_fast(public_key, digest, sig):
    invalid, alg, encode = _HAVE_FAST
    key = _crypto_key(public_key)
    der = encode(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, digest, alg)
    except invalid:
        return False
    return True
