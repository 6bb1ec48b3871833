"""``file:PATH`` software signing key: P-256 in an unencrypted PKCS#8 PEM file (development only).

    from edgepoi.keys import open_key
    key = open_key("file:/var/lib/edgepoi/device.pem")     # created (mode 0600) when missing
    sig = key.sign_digest(hashlib.sha256(b"...").digest())

The file is "-----BEGIN PRIVATE KEY-----" (PKCS#8 PrivateKeyInfo, id-ecPublicKey, prime256v1, with
the public key), the same bytes `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`
and `cryptography` write, so one file serves CPython and MicroPython alike. This module is the signer;
reading and creating the file is edgepoi.keys.keyfile (with edgepoi.keys.pkcs8, the small DER/PEM
reader and writer for that one structure): both are loaded by open() and forgotten again on
MicroPython, so a running board keeps only the signer in its heap. Signatures are deterministic
(RFC 6979): on CPython through `cryptography` (fast path, deterministic_signing), on MicroPython
through edgepoi.p256; both give byte-identical signatures for the same key and digest.

Safety: a new key is written to a temporary file opened O_CREAT|O_EXCL with mode 0600, fsynced and
published with an atomic link/rename that never replaces an existing key. On CPython a key file
readable or writable by group or others is refused (KeyBackendError reason insecure_permissions).
MicroPython's flash file systems (FAT, littlefs) have no permission bits, so there the check is
skipped: protect the board instead. The private scalar never appears in a repr, an error or a log.
"""
import sys

import binascii

from edgepoi import p256
from edgepoi.keys import ES256, KeyBackendError, key_id_of

_CPYTHON = sys.implementation.name == "cpython"


def _fast_key(d):
    """A cryptography private key on CPython, or None (MicroPython, or cryptography missing)."""
    if not _CPYTHON:
        return None
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        return None
    return ec.derive_private_key(d, ec.SECP256R1())


class _Secret:
    """Holds the private scalar so that vars(key), repr(key.__dict__) and friends show no digits."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "<secret>"

    __str__ = __repr__


class FileKey:
    """A P-256 signer holding its scalar in memory. Attributes: path, key_id, alg, backend, created."""

    backend = "file"
    alg = ES256

    def __init__(self, path, d, created=False, pure=False):
        p256.check_scalar(d)
        self.path = path
        self.created = created
        self._secret = _Secret(d)
        self._fast = None if pure else _fast_key(d)
        self._det = True
        if self._fast is not None:
            from cryptography.hazmat.primitives import serialization
            self._pub = self._fast.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        else:
            self._pub = p256.public_key(d)
        self.key_id = key_id_of(self._pub)

    def __repr__(self):
        return "<FileKey file:%s key_id=%s>" % (self.path, binascii.hexlify(self.key_id).decode())

    __str__ = __repr__

    def public_key(self):
        return self._pub

    def sign_digest(self, digest):
        """64-byte r||s over a 32-byte digest (RFC 6979 deterministic)."""
        if self._secret is None:
            raise KeyBackendError("closed", "key %s is closed" % self.path)
        if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
            raise KeyBackendError("bad_digest", "sign_digest needs a 32-byte SHA-256 digest")
        if self._fast is None:
            return p256.sign_digest(self._secret.value, bytes(digest))
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils
        alg = utils.Prehashed(hashes.SHA256())
        der = None
        if self._det:
            try:
                der = self._fast.sign(bytes(digest), ec.ECDSA(alg, deterministic_signing=True))
            except Exception:  # older cryptography/OpenSSL: randomized nonces
                self._det = False
        if der is None:
            der = self._fast.sign(bytes(digest), ec.ECDSA(alg))
        r, s = utils.decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def close(self):
        self._secret = None
        self._fast = None


def open(uri, create=True, pure=False):  # noqa: A001 - the backend entry point edgepoi.keys expects
    """Backend entry point: the key at file:PATH (also file:///abs/path), created when missing and
    create is set -> FileKey. Raises KeyBackendError (bad_uri, not_found, bad_key_file, ...)."""
    from edgepoi.keys import keyfile
    try:
        return keyfile.open_uri(uri, create, pure)
    finally:
        keyfile = None
        if not _CPYTHON:          # set-up code: let the collector have it
            import edgepoi
            edgepoi.unload("edgepoi.keys.keyfile")
            edgepoi.unload("edgepoi.keys.pkcs8")
