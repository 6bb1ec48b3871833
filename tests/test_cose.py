"""COSE_Sign1 interop and tamper tests on CPython: pycose (third-party COSE, cbor2<6) verifies what we sign
(on CPython and under the real MicroPython) and we verify what pycose signs; every single-byte flip of a
message is refused with a reason; public keys off the curve are refused."""
import hashlib
import os

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives.asymmetric import ec
from pycose.algorithms import Es256
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import CoseMessage, Sign1Message

from edgepoi import cose, cose_verify, p256
from edgepoi.keys import file as filekey
from edgepoi.keys import open_key


def pycose_key(pub, d=None):
    kw = dict(crv=P256, x=pub[1:33], y=pub[33:65])
    if d is not None:
        kw["d"] = d.to_bytes(32, "big")
    return EC2Key(**kw)


def pycose_verifies(msg, pub):
    decoded = CoseMessage.decode(msg)
    assert isinstance(decoded, Sign1Message)
    decoded.key = pycose_key(pub)
    return decoded.verify_signature()


@pytest.fixture
def key(tmp_path):
    k = open_key("file:%s" % (tmp_path / "k.pem"))
    yield k
    k.close()


def test_pycose_verifies_messages_signed_with_cryptography_fast_path(key):
    for n in (0, 1, 23, 24, 300, 70000):
        payload = os.urandom(n)
        msg = cose.sign1(payload, key)
        assert pycose_verifies(msg, key.public_key())
        assert CoseMessage.decode(msg).payload == payload
        assert CoseMessage.decode(msg).phdr[KID] == key.key_id


def test_pycose_verifies_messages_signed_with_pure_python(tmp_path):
    k = filekey.open("file:%s" % (tmp_path / "p.pem"), True, pure=True)
    assert k._fast is None
    msg = cose.sign1(b"pure python", k, external_aad=b"")
    assert pycose_verifies(msg, k.public_key())


def test_pycose_verifies_messages_signed_under_micropython(micropython, tmp_path, key):
    # the key file made here by CPython is loaded by MicroPython's DER parser and signs there
    code = ("from edgepoi.keys import open_key\nfrom edgepoi import cose\n"
            "k = open_key('file:%s', False)\n"
            "print(cose.sign1(b'made on micropython', k).hex())\n" % key.path)
    res = micropython(heapsize="512K").run_code(code)   # .py sources; devices ship .mpy
    msg = bytes.fromhex(res.stdout.strip())
    assert pycose_verifies(msg, key.public_key())
    assert cose_verify.verify1(msg, key.public_key()) == b"made on micropython"
    # RFC 6979 is deterministic: CPython's cryptography signs the very same bytes
    assert msg == cose.sign1(b"made on micropython", key)


@pytest.mark.parametrize("kid_in_protected", [True, False])
def test_we_verify_what_pycose_signs(kid_in_protected):
    d = p256.keygen()
    pub = p256.public_key(d)
    kid = hashlib.sha256(pub).digest()[:16]
    if kid_in_protected:
        m = Sign1Message(phdr={Algorithm: Es256, KID: kid}, payload=b"from pycose")
    else:  # kid only unprotected: outside our profile -> missing_kid, never accepted silently
        m = Sign1Message(phdr={Algorithm: Es256}, uhdr={KID: kid}, payload=b"from pycose")
    m.key = pycose_key(pub, d)
    msg = m.encode()
    if kid_in_protected:
        assert cose_verify.verify1(msg, pub) == b"from pycose"
        assert cose_verify.verify1(msg, pub, pure=True) == b"from pycose"
        assert cose_verify.kid_of(msg) == kid
    else:
        with pytest.raises(cose.CoseError) as e:
            cose_verify.verify1(msg, pub)
        assert e.value.reason == "missing_kid"


def test_every_single_byte_flip_is_refused_with_a_reason(key):
    msg = cose.sign1(b"\xa3\x01\x02\x03\x04\x05\x06" + b"claims" * 8, key)
    seen = set()
    for i in range(len(msg)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(msg)
            bad[i] ^= mask
            with pytest.raises(cose.CoseError) as e:
                cose_verify.verify1(bytes(bad), key.public_key())
            assert e.value.reason in cose.REASONS
            seen.add(e.value.reason)
    assert {"not_cose", "not_tagged", "bad_signature"} <= seen, seen


def test_flips_also_fail_on_the_pure_python_verifier(key):
    msg = cose.sign1(b"claims", key)
    for i in range(0, len(msg), 3):
        bad = bytearray(msg)
        bad[i] ^= 0x04
        with pytest.raises(cose.CoseError):
            cose_verify.verify1(bytes(bad), key.public_key(), pure=True)


def test_off_curve_public_key_is_refused_on_both_paths(key):
    msg = cose.sign1(b"x", key)
    pub = bytearray(key.public_key())
    pub[64] ^= 1
    for pure in (False, True):
        with pytest.raises(cose.CoseError) as e:
            cose_verify.verify1(msg, bytes(pub), pure=pure)
        assert e.value.reason == "bad_key"
    # cryptography agrees that the point is not on the curve
    with pytest.raises(ValueError):
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(pub))


FUZZ_KEY = p256.keygen()
FUZZ_PUB = p256.public_key(FUZZ_KEY)


class _Signer:
    key_id = hashlib.sha256(FUZZ_PUB).digest()[:16]

    def sign_digest(self, d):
        return p256.sign_digest(FUZZ_KEY, d)


FUZZ_MSG = cose.sign1(b"\xa1\x01\x02fuzz", _Signer())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_cose_error(data):
    with pytest.raises(cose.CoseError) as e:
        cose_verify.verify1(data, FUZZ_PUB)
    assert e.value.reason in cose.REASONS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(FUZZ_MSG) - 1), st.integers(1, 255)), min_size=1,
                max_size=6), st.integers(0, 8))
def test_mutated_messages_are_refused(edits, cut):
    bad = bytearray(FUZZ_MSG)
    for pos, mask in edits:
        bad[pos] ^= mask
    bad = bytes(bad[:len(bad) - cut])
    assume(bad != FUZZ_MSG)            # edits at one position may cancel out
    with pytest.raises(cose.CoseError) as e:
        cose_verify.verify1(bad, FUZZ_PUB)
    assert e.value.reason in cose.REASONS


class _Recording:
    """A real key that remembers the digest it was asked to sign."""

    def __init__(self, key):
        self.key, self.key_id, self.digests = key, key.key_id, []

    def sign_digest(self, d):
        self.digests.append(d)
        return self.key.sign_digest(d)


def test_sign1_hashes_the_sig_structure_piece_by_piece(key):
    rec = _Recording(key)
    for n, aad in ((0, b""), (23, b"x"), (24, b""), (255, b"aad"), (256, b""), (70000, b"")):
        payload = os.urandom(n)
        msg = cose.sign1(memoryview(payload), rec, external_aad=aad)
        protected = b"\xa2\x01\x26\x04" + cose._bhead(len(key.key_id)) + key.key_id
        assert rec.digests[-1] == hashlib.sha256(cose.sig_structure(protected, payload, aad)).digest()
        assert pycose_verifies(msg, key.public_key()) == (aad == b"")
        assert cose_verify.verify1(msg, key.public_key(), external_aad=aad) == payload
