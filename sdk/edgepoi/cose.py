"""COSE_Sign1 (RFC 9052) with ES256, signing side: sans-I/O, portable.

    from edgepoi import cose
    msg = cose.sign1(payload, signer)                  # tagged (18); kid defaults to signer.key_id

Verifying and decoding are edgepoi.cose_verify (verify1, decode1, kid_of), which a device that only
signs never loads.

Profile: protected header = deterministic CBOR {1: -7, 4: kid} (alg ES256, kid bytes), unprotected
header = {} (on input: any map without labels that repeat protected ones), payload = bytes (no detached
payloads), signature = 64-byte raw r||s over SHA-256(Sig_structure), Sig_structure =
["Signature1", protected bytes, external_aad, payload].

Every failure is a CoseError whose ``reason`` is one of: not_cose (not CBOR / not bytes), not_tagged
(no tag 18), bad_structure, wrong_alg, missing_kid, bad_signature_length, bad_signature, bad_key
(public key malformed or not on the curve).
"""
import hashlib

TAG_SIGN1 = 18
ALG_ES256 = -7
H_ALG = 1
H_KID = 4
REASONS = ("not_cose", "not_tagged", "bad_structure", "wrong_alg", "missing_kid",
           "bad_signature_length", "bad_signature", "bad_key")
MAX_MESSAGE = 1 << 20     # bytes; the CBOR decoder's default limit too


class CoseError(ValueError):
    """A COSE_Sign1 message or key was refused; ``reason`` is one of REASONS."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


def _bhead(n):
    """Deterministic CBOR head of a byte string of length n."""
    if n < 24:
        return bytes((0x40 | n,))
    if n < 0x100:
        return bytes((0x58, n))
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    return b"\x5a" + n.to_bytes(4, "big")


def sig_structure(protected, payload, external_aad=b""):
    """The bytes that are hashed and signed (RFC 9052 section 4.4): deterministic CBOR of
    ["Signature1", protected, external_aad, payload], written directly (sign1 hashes the same bytes
    piece by piece)."""
    return b"".join((b"\x84\x6aSignature1", _bhead(len(protected)), protected,
                     _bhead(len(external_aad)), external_aad, _bhead(len(payload)), payload))


def sign1(payload, signer, kid=None, external_aad=b""):
    """Sign payload (bytes) with signer -> tagged COSE_Sign1 bytes.

    Args:
        payload: the bytes to protect (e.g. a deterministic-CBOR claims map); bytes-like.
        signer: object with sign_digest(d32) -> 64-byte r||s and key_id (see edgepoi.keys).
        kid: key id for the protected header; default signer.key_id.
        external_aad: bytes bound into the signature but not carried.
    Raises:
        CoseError(bad_structure) for a non-bytes payload/kid; whatever the signer raises.
    """
    if kid is None:
        kid = signer.key_id
    if not isinstance(payload, (bytes, bytearray, memoryview)) or not isinstance(kid, (bytes, bytearray)):
        raise CoseError("bad_structure", "payload and kid must be bytes")
    if len(payload) > MAX_MESSAGE - 200:
        raise CoseError("bad_structure", "payload longer than %d bytes" % (MAX_MESSAGE - 200))
    # deterministic CBOR, written directly: {1: -7, 4: kid}, and tag 18 of
    # [protected, {}, payload, signature]
    protected = b"\xa2\x01\x26\x04" + _bhead(len(kid)) + bytes(kid)
    # SHA-256 of the Sig_structure (see sig_structure), hashed piece by piece: no copy of the payload
    h = hashlib.sha256(b"\x84\x6aSignature1")
    for part in (_bhead(len(protected)), protected, _bhead(len(external_aad)), external_aad,
                 _bhead(len(payload)), payload):
        h.update(part)
    sig = signer.sign_digest(h.digest())
    if len(sig) != 64:
        raise CoseError("bad_signature_length", "signer returned %d bytes, not 64" % len(sig))
    return b"".join((b"\xd2\x84", _bhead(len(protected)), protected, b"\xa0", _bhead(len(payload)),
                     bytes(payload), b"\x58\x40", bytes(sig)))
