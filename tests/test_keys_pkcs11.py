"""PKCS#11 key backend against a real SoftHSM2 token (python-pkcs11, CKM_ECDSA over SHA-256 digests)."""
import hashlib
import os
import statistics
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from edgepoi.keys import KeyBackendError, open_key
from harness.softhsm import MODULE, shared_softhsm

import pkcs11  # noqa: E402 - required: pip install python-pkcs11


@pytest.fixture(scope="module")
def hsm():
    if not os.path.exists(MODULE):
        pytest.fail("SoftHSM2 is missing: apt-get install softhsm2")
    return shared_softhsm()


def verify(pub65, digest, sig):
    pk = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub65)
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    pk.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))

def pycose_verifies(msg, pub):
    from pycose.keys import EC2Key
    from pycose.keys.curves import P256
    from pycose.messages import CoseMessage
    decoded = CoseMessage.decode(msg)
    decoded.key = EC2Key(crv=P256, x=pub[1:33], y=pub[33:65])
    return decoded.verify_signature()


def test_key_is_generated_then_reused_on_reopen(hsm):
    k1 = open_key(hsm.uri("reuse-key"))
    pub = k1.public_key()
    assert len(pub) == 65 and pub[0] == 4
    assert k1.key_id == hashlib.sha256(pub).digest()[:16]
    assert (k1.alg, k1.backend) == (-7, "pkcs11")
    k1.close()
    k2 = open_key(hsm.uri("reuse-key"), create=False)
    assert k2.public_key() == pub
    d = hashlib.sha256(b"reopen").digest()
    verify(pub, d, k2.sign_digest(d))
    k2.close()
    # A different object name is a different key.
    k3 = open_key(hsm.uri("other-key"))
    assert k3.public_key() != pub
    k3.close()


def test_signatures_verify_with_cryptography_and_tampering_fails(hsm):
    key = open_key(hsm.uri("sig-key"))
    pub = key.public_key()
    for i in range(20):
        d = hashlib.sha256(b"message %d" % i).digest()
        sig = key.sign_digest(d)
        assert len(sig) == 64
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 order
        assert 0 < r < n and 0 < s < n
        verify(pub, d, sig)
        with pytest.raises(InvalidSignature):
            verify(pub, hashlib.sha256(b"other %d" % i).digest(), sig)
    key.close()


def test_private_value_cannot_be_extracted(hsm):
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.exceptions import AttributeSensitive
    open_key(hsm.uri("locked-key")).close()
    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label=hsm.label).open(user_pin=hsm.pin) as s:
        priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label="locked-key")
        assert priv[Attribute.EXTRACTABLE] is False
        assert priv[Attribute.SENSITIVE] is True
        assert priv[Attribute.NEVER_EXTRACTABLE] is True
        with pytest.raises(AttributeSensitive):
            priv[Attribute.VALUE]


def test_exportable_key_on_token_is_refused(hsm):
    from pkcs11 import Attribute, KeyType
    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label=hsm.label).open(user_pin=hsm.pin, rw=True) as s:
        params = s.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"}, local=True)
        params.generate_keypair(store=True, label="soft-key",
                                private_template={Attribute.EXTRACTABLE: True,
                                                  Attribute.SENSITIVE: False})
    with pytest.raises(KeyBackendError) as ei:
        open_key(hsm.uri("soft-key"))
    assert ei.value.reason == "insecure_key"


def test_missing_key_without_create_and_bad_inputs(hsm):
    with pytest.raises(KeyBackendError) as ei:
        open_key(hsm.uri("never-made"), create=False)
    assert ei.value.reason == "not_found"
    with pytest.raises(KeyBackendError) as ei:
        open_key("pkcs11:token=%s;object=x?module-path=%s&pin-value=0000" % (hsm.label, MODULE))
    assert ei.value.reason == "login_failed"
    with pytest.raises(KeyBackendError) as ei:
        open_key("pkcs11:token=no-such-token;object=x?module-path=%s&pin-value=1" % MODULE)
    assert ei.value.reason == "not_found"
    with pytest.raises(KeyBackendError):
        open_key("pkcs11:token=edgepoi;object?module-path=%s" % MODULE)
    key = open_key(hsm.uri("sig-key"))
    with pytest.raises(KeyBackendError):
        key.sign_digest(b"short")
    key.close()
    with pytest.raises(KeyBackendError):
        key.sign_digest(bytes(32))


def test_uri_percent_encoding_and_id(hsm):
    k = open_key("pkcs11:token=%s;object=my%%20key;id=%%01%%02?module-path=%s&pin-value=%s"
                 % (hsm.label, MODULE, hsm.pin))
    k.close()
    from pkcs11 import Attribute, KeyType, ObjectClass
    with pkcs11.lib(MODULE).get_token(token_label=hsm.label).open(user_pin=hsm.pin) as s:
        priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, id=b"\x01\x02")
        assert priv[Attribute.LABEL] == "my key"


def test_two_keys_on_one_token_open_at_once(hsm):
    a = open_key(hsm.uri("key-a"))
    b = open_key(hsm.uri("key-b"))
    d = hashlib.sha256(b"both").digest()
    a.close()                       # must not log b's session out
    verify(b.public_key(), d, b.sign_digest(d))
    b.close()


def test_pycose_verifies_cose_sign1_made_with_the_hsm_key(hsm):
    from edgepoi import cose, cose_verify
    key = open_key(hsm.uri("sig-key"))
    msg = cose.sign1(b"claims from the hsm", key)
    assert pycose_verifies(msg, key.public_key())
    assert cose_verify.verify1(msg, key.public_key()) == b"claims from the hsm"
    key.close()


def test_sign_latency_median(hsm):
    key = open_key(hsm.uri("sig-key"))
    d = hashlib.sha256(b"bench").digest()
    times = []
    for _ in range(50):
        t = time.perf_counter()
        key.sign_digest(d)
        times.append(time.perf_counter() - t)
    key.close()
    med = statistics.median(times) * 1000
    print("pkcs11/SoftHSM2 sign_digest median: %.3f ms" % med)
    assert med < 100
