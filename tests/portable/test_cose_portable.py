# heapsize: 96K
# COSE_Sign1 ES256 sign / verify / decode under CPython and the real MicroPython (pure-Python P-256 there).
# Expected bytes come from RFC 9052 (structure) and RFC 8949 (deterministic CBOR heads).
import hashlib

import checks
from edgepoi import cbor
from edgepoi import cose
from edgepoi import cose_verify
from edgepoi import p256

D = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721


class Signer:
    """A minimal in-memory signer with the edgepoi.keys interface."""
    alg = -7
    backend = "test"

    def __init__(self, d=D):
        self.d = d
        self.pub = p256.public_key(d)
        self.key_id = hashlib.sha256(self.pub).digest()[:16]

    def public_key(self):
        return self.pub

    def sign_digest(self, digest):
        return p256.sign_digest(self.d, digest)


S = Signer()


def reason(fn, *args):
    return checks.raises(cose.CoseError, fn, *args).reason


def test_sign1_layout_is_tagged_sign1_with_deterministic_protected_header():
    msg = cose.sign1(b"payload", S)
    # d2 = tag 18, 84 = array(4), 55 = bstr(21): protected {1: -7, 4: h'..16 bytes..'}
    assert msg[:3] == b"\xd2\x84\x55"
    assert msg[3:8] == b"\xa2\x01\x26\x04\x50" and msg[8:24] == S.key_id
    assert msg[24:25] == b"\xa0"                     # empty unprotected map
    assert msg[25:33] == b"\x47payload"
    assert msg[33:35] == b"\x58\x40" and len(msg) == 35 + 64


def test_signature_is_over_the_rfc9052_sig_structure():
    msg = cose.sign1(b"abc", S, external_aad=b"aad")
    prot = cbor.dumps({1: -7, 4: S.key_id})
    tbs = cbor.dumps(["Signature1", prot, b"aad", b"abc"])
    assert msg[-64:] == p256.sign_digest(D, hashlib.sha256(tbs).digest())


def test_round_trip_and_decode():
    msg = cose.sign1(b"\x00\x01claims", S)
    assert cose_verify.verify1(msg, S.pub) == b"\x00\x01claims"
    prot, unprot, payload, sig = cose_verify.decode1(msg)
    assert prot == {1: -7, 4: S.key_id} and unprot == {} and payload == b"\x00\x01claims"
    assert len(sig) == 64 and cose_verify.kid_of(msg) == S.key_id
    kid = b"device-7"
    assert cose_verify.decode1(cose.sign1(b"x", S, kid=kid))[0][4] == kid


def test_external_aad_is_bound():
    msg = cose.sign1(b"x", S, external_aad=b"topic/a")
    assert cose_verify.verify1(msg, S.pub, b"topic/a") == b"x"
    assert reason(cose_verify.verify1, msg, S.pub, b"topic/b") == "bad_signature"


def test_wrong_key_is_bad_signature():
    msg = cose.sign1(b"x", S)
    other = Signer(D + 1)
    assert reason(cose_verify.verify1, msg, other.pub) == "bad_signature"


def _msg(prot, unprot=None, payload=b"p", sig=b"\x01" * 64, tag=18):
    item = [cbor.dumps(prot) if isinstance(prot, dict) else prot,
            {} if unprot is None else unprot, payload, sig]
    return cbor.dumps(cbor.CBORTag(tag, item) if tag is not None else item)


def test_every_failure_has_its_reason():
    ok = {1: -7, 4: b"kid"}
    assert reason(cose_verify.verify1, b"\xff\x00", S.pub) == "not_cose"
    assert reason(cose_verify.verify1, "text", S.pub) == "not_cose"
    assert reason(cose_verify.verify1, _msg(ok, tag=None), S.pub) == "not_tagged"
    assert reason(cose_verify.verify1, _msg(ok, tag=98), S.pub) == "not_tagged"
    assert reason(cose_verify.verify1, cbor.dumps(cbor.CBORTag(18, [b"", {}, b""])), S.pub) == "bad_structure"
    assert reason(cose_verify.verify1, _msg(ok, payload=None), S.pub) == "bad_structure"
    assert reason(cose_verify.verify1, _msg(b"\xa1\x01"), S.pub) == "bad_structure"
    assert reason(cose_verify.verify1, _msg(ok, unprot={4: b"kid"}), S.pub) == "bad_structure"
    assert reason(cose_verify.verify1, _msg({1: -35, 4: b"k"}), S.pub) == "wrong_alg"
    assert reason(cose_verify.verify1, _msg({4: b"k"}), S.pub) == "wrong_alg"
    assert reason(cose_verify.verify1, _msg({1: -7.0, 4: b"k"}), S.pub) == "wrong_alg"
    assert reason(cose_verify.verify1, _msg({1: "ES256", 4: b"k"}), S.pub) == "wrong_alg"
    assert reason(cose_verify.verify1, _msg(b"", unprot={1: -7, 4: b"k"}), S.pub) == "wrong_alg"
    assert reason(cose_verify.verify1, _msg({1: -7}), S.pub) == "missing_kid"
    assert reason(cose_verify.verify1, _msg({1: -7, 4: "text"}), S.pub) == "missing_kid"
    assert reason(cose_verify.verify1, _msg(ok, sig=b"\x01" * 63), S.pub) == "bad_signature_length"
    assert reason(cose_verify.verify1, _msg(ok, sig=b"\x01" * 72), S.pub) == "bad_signature_length"
    assert reason(cose_verify.verify1, _msg(ok), S.pub) == "bad_signature"


def test_off_curve_or_malformed_key_is_bad_key():
    msg = cose.sign1(b"x", S)
    off = bytearray(S.pub)
    off[40] ^= 0x10
    assert reason(cose_verify.verify1, msg, bytes(off)) == "bad_key"
    assert reason(cose_verify.verify1, msg, S.pub[:33]) == "bad_key"
    assert reason(cose_verify.verify1, msg, b"\x04" + b"\x00" * 64) == "bad_key"


def test_flipped_bytes_fail_with_a_reason():
    # every 7th position here (the CPython test flips every byte of a message)
    msg = cose.sign1(b"claims", S)
    for i in range(0, len(msg), 7):
        bad = bytearray(msg)
        bad[i] ^= 0x01
        assert reason(cose_verify.verify1, bytes(bad), S.pub) in cose.REASONS
