"""TPM 2.0 key backend against a real swtpm (tpm2-pytss ESAPI, no resource manager)."""
import hashlib
import statistics
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from edgepoi.keys import KeyBackendError, open_key
from harness.swtpm import SwTPM

import tpm2_pytss  # noqa: F401,E402 - required: pip install tpm2-pytss (Debian libtss2-dev)
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order


@pytest.fixture
def tpm(tmp_path):
    t = SwTPM(str(tmp_path / "tpmstate")).start()
    try:
        yield t
    finally:
        t.close()


def verify(pub65, digest, sig):
    pk = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub65)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    assert 0 < r < N and 0 < s < N
    pk.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))

def pycose_verifies(msg, pub):
    from pycose.keys import EC2Key
    from pycose.keys.curves import P256
    from pycose.messages import CoseMessage
    decoded = CoseMessage.decode(msg)
    decoded.key = EC2Key(crv=P256, x=pub[1:33], y=pub[33:65])
    return decoded.verify_signature()


def transient_handles(tcti):
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import TPM2_CAP, TPM2_HR, TPM2_HT
    with ESAPI(tcti) as e:
        _, data = e.get_capability(TPM2_CAP.HANDLES, TPM2_HT.TRANSIENT << TPM2_HR.SHIFT, 64)
        return list(data.data.handles)


def test_key_created_persistent_and_survives_tpm_restart(tpm):
    uri = "tpm2:handle=0x81010001;tcti=" + tpm.tcti
    key = open_key(uri)
    assert (key.alg, key.backend) == (-7, "tpm2")
    pub = key.public_key()
    assert len(pub) == 65 and pub[0] == 4
    assert key.key_id == hashlib.sha256(pub).digest()[:16]
    d = hashlib.sha256(b"before restart").digest()
    verify(pub, d, key.sign_digest(d))
    key.close()
    assert transient_handles(tpm.tcti) == []          # every transient handle was flushed
    tpm.restart()                                      # power cycle on the same state dir
    again = open_key(uri, create=False)
    assert again.public_key() == pub
    d2 = hashlib.sha256(b"after restart").digest()
    verify(pub, d2, again.sign_digest(d2))
    again.close()


def test_open_key_reconnects_after_restart_while_open(tpm):
    key = open_key("tpm2:handle=0x81010002;tcti=" + tpm.tcti)
    pub = key.public_key()
    tpm.restart()
    d = hashlib.sha256(b"reconnect").digest()
    verify(pub, d, key.sign_digest(d))
    key.close()


def test_signatures_verify_and_other_digests_do_not(tpm):
    key = open_key("tpm2:tcti=" + tpm.tcti)          # default handle 0x81010001
    pub = key.public_key()
    for i in range(10):
        d = hashlib.sha256(b"msg %d" % i).digest()
        sig = key.sign_digest(d)
        verify(pub, d, sig)
        with pytest.raises(InvalidSignature):
            verify(pub, hashlib.sha256(b"other").digest(), sig)
    key.close()


def test_distinct_handles_hold_distinct_keys_and_private_part_stays_in_tpm(tpm):
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import TPMA_OBJECT
    a = open_key("tpm2:handle=0x81010010;tcti=" + tpm.tcti)
    b = open_key("tpm2:handle=0x81010011;tcti=" + tpm.tcti)
    assert a.public_key() != b.public_key()
    a.close()
    b.close()
    with ESAPI(tpm.tcti) as e:
        tr = e.tr_from_tpmpublic(0x81010010)
        attrs = e.read_public(tr)[0].publicArea.objectAttributes
        assert attrs & TPMA_OBJECT.FIXEDTPM and attrs & TPMA_OBJECT.FIXEDPARENT
        assert attrs & TPMA_OBJECT.SENSITIVEDATAORIGIN and attrs & TPMA_OBJECT.SIGN_ENCRYPT
        assert not attrs & TPMA_OBJECT.RESTRICTED


def test_missing_key_without_create_and_bad_uris(tpm):
    with pytest.raises(KeyBackendError) as ei:
        open_key("tpm2:handle=0x81010099;tcti=" + tpm.tcti, create=False)
    assert ei.value.reason == "not_found"
    for bad in ("tpm2:handle=0x12;tcti=" + tpm.tcti, "tpm2:handle=zz", "tpm2:colour=red",
                "tpm2:handle"):
        with pytest.raises(KeyBackendError) as ei:
            open_key(bad)
        assert ei.value.reason == "bad_uri"
    with pytest.raises(KeyBackendError) as ei:
        open_key("tpm2:tcti=swtpm:host=127.0.0.1,port=1")
    assert ei.value.reason == "device_error"
    key = open_key("tpm2:tcti=" + tpm.tcti)
    with pytest.raises(KeyBackendError):
        key.sign_digest(b"\x00" * 31)
    key.close()
    with pytest.raises(KeyBackendError):
        key.sign_digest(b"\x00" * 32)


def test_restricted_srk_at_handle_is_refused(tpm):
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import ESYS_TR, TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE
    with ESAPI(tpm.tcti) as e:
        t = TPM2B_PUBLIC.parse("ecc256:aes128cfb",
                               objectAttributes=TPMA_OBJECT.DEFAULT_TPM2_TOOLS_CREATEPRIMARY_ATTRS)
        prim = e.create_primary(TPM2B_SENSITIVE_CREATE(), t, ESYS_TR.OWNER)[0]
        e.evict_control(ESYS_TR.OWNER, prim, 0x81000001)
        e.flush_context(prim)
    with pytest.raises(KeyBackendError) as ei:
        open_key("tpm2:handle=0x81000001;tcti=" + tpm.tcti)
    assert ei.value.reason == "wrong_key"
    # ... but it serves as an explicit parent for a signing key.
    key = open_key("tpm2:handle=0x81010003;parent=0x81000001;tcti=" + tpm.tcti)
    d = hashlib.sha256(b"child").digest()
    verify(key.public_key(), d, key.sign_digest(d))
    key.close()


def test_nv_counter_is_monotonic_across_restart(tpm):
    from edgepoi.keys.tpm2 import open_counter
    uri = "tpm2:nv=0x01500016;tcti=" + tpm.tcti
    c = open_counter(uri)
    assert c.peek() == 0
    seen = [c.next() for _ in range(5)]
    assert seen == sorted(set(seen)) and seen[1:] == [v + 1 for v in seen[:-1]]
    assert c.peek() == seen[-1]
    c.close()
    tpm.restart()
    c = open_counter(uri, create=False)
    assert c.peek() == seen[-1]
    assert c.next() == seen[-1] + 1
    c.close()
    with pytest.raises(KeyBackendError):
        open_counter("tpm2:nv=0x01500017;tcti=" + tpm.tcti, create=False)


def test_pycose_verifies_cose_sign1_made_with_the_tpm_key(tpm):
    from edgepoi import cose, cose_verify
    key = open_key("tpm2:tcti=" + tpm.tcti)
    msg = cose.sign1(b"claims from the tpm", key)
    assert pycose_verifies(msg, key.public_key())
    assert cose_verify.verify1(msg, key.public_key()) == b"claims from the tpm"
    assert cose_verify.kid_of(msg) == key.key_id
    key.close()


def test_sign_latency_median(tpm):
    key = open_key("tpm2:tcti=" + tpm.tcti)
    d = hashlib.sha256(b"bench").digest()
    times = []
    for _ in range(30):
        t = time.perf_counter()
        key.sign_digest(d)
        times.append(time.perf_counter() - t)
    key.close()
    med = statistics.median(times) * 1000
    print("tpm2/swtpm sign_digest median: %.3f ms" % med)
    assert med < 500
