"""``file:PATH`` software signing key: P-256 in an unencrypted PKCS#8 PEM file (development only).

    from edgepoi.keys import open_key
    key = open_key("file:/var/lib/edgepoi/device.pem")     # created (mode 0600) when missing
    sig = key.sign_digest(hashlib.sha256(b"...").digest())

The file is "-----BEGIN PRIVATE KEY-----" (PKCS#8 PrivateKeyInfo, id-ecPublicKey, prime256v1, with
the public key), the same bytes `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`
and `cryptography` write, so one file serves CPython and MicroPython alike (edgepoi.keys.pkcs8 is
the small DER/PEM reader and writer for that one structure; it is loaded to read or write the file and
forgotten again on MicroPython, so a running board does not keep it in its heap). Signatures are deterministic (RFC 6979): on
CPython through `cryptography` (fast path, deterministic_signing), on MicroPython through
edgepoi.p256; both give byte-identical signatures for the same key and digest.

Safety: a new key is written to a temporary file opened O_CREAT|O_EXCL with mode 0600, fsynced and
published with an atomic link/rename that never replaces an existing key. On CPython a key file
readable or writable by group or others is refused (KeyBackendError reason insecure_permissions).
MicroPython's flash file systems (FAT, littlefs) have no permission bits, so there the check is
skipped: protect the board instead. The private scalar never appears in a repr, an error or a log.
"""
import os
import sys

import binascii
import builtins

from edgepoi import p256
from edgepoi.keys import ES256, KeyBackendError, key_id_of

_CPYTHON = sys.implementation.name == "cpython"


def _bad(detail):
    return KeyBackendError("bad_key_file", detail)


def _pkcs8():
    from edgepoi.keys import pkcs8
    return pkcs8


def _done_with_pkcs8():
    if not _CPYTHON:
        import edgepoi
        edgepoi.unload("edgepoi.keys.pkcs8")


# -- the signer -----------------------------------------------------------------------------------

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


# -- files ----------------------------------------------------------------------------------------

def path_of(uri):
    """file:PATH (also file:///abs/path) -> PATH."""
    if not uri.startswith("file:"):
        raise KeyBackendError("bad_uri", "not a file: key URI")
    path = uri[5:]
    if path.startswith("//"):
        path = path[2:]
        if not path.startswith("/"):
            raise KeyBackendError("bad_uri", "file:// URIs need an absolute path (file:///...)")
    if not path:
        raise KeyBackendError("bad_uri", "file: URI without a path")
    return path


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def check_permissions(path):
    """Refuse a key file that group or others may read or write (CPython; see module docstring)."""
    if not _CPYTHON:
        return
    mode = os.stat(path)[0]
    if mode & 0o077:
        raise KeyBackendError("insecure_permissions", "key file %s has mode %s: group/others may "
                              "access it; run: chmod 600 %s" % (path, oct(mode & 0o777), path))


def load(path, pure=False):
    """Open an existing key file -> FileKey."""
    try:
        check_permissions(path)
        size = os.stat(path)[6]
        if size > 4096:
            raise _bad("%s is %d bytes: too big for a P-256 key file" % (path, size))
        with builtins.open(path, "rb") as f:
            text = f.read(size)     # a read(n) buffer is allocated up front on MicroPython
    except OSError as e:
        raise KeyBackendError("not_found" if not _exists(path) else "io_error",
                              "cannot read key file %s: %s" % (path, e))
    codec = _pkcs8()
    try:
        d, pub = codec.der_decode_private(codec.pem_decode(text))
    finally:
        codec = None
        _done_with_pkcs8()
    key = FileKey(path, d, pure=pure)
    if pub is not None and bytes(pub) != key.public_key():
        key.close()
        raise _bad("the public key stored in %s does not match its private key" % path)
    return key


def _publish(tmp, path):
    """Move tmp to path without ever replacing an existing file."""
    try:
        os.link(tmp, path)                  # atomic and never replaces (CPython)
        linked = True
    except (AttributeError, OSError):       # MicroPython has no link(); some file systems neither
        linked = False
    if linked:
        os.remove(tmp)
        return
    if _exists(path):
        raise KeyBackendError("exists", "key file %s already exists" % path)
    os.rename(tmp, path)


def new_key(path, pure=False, d=None):
    """Generate a fresh key (or store scalar d) at path (mode 0600) -> FileKey. Never overwrites."""
    if d is None:
        d = p256.keygen()
    key = FileKey(path, d, created=True, pure=pure)
    codec = _pkcs8()
    data = codec.pem_encode(codec.der_encode_private(d, key.public_key()))
    codec = None
    _done_with_pkcs8()
    tmp = "%s.tmp-%s" % (path, binascii.hexlify(os.urandom(4)).decode())
    try:
        if _CPYTHON:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            with builtins.open(tmp, "wb") as f:
                f.write(data)
        _publish(tmp, path)
    except OSError as e:
        key.close()
        raise KeyBackendError("io_error", "cannot create key file %s: %s" % (path, e))
    finally:
        if _exists(tmp):
            os.remove(tmp)
    if _CPYTHON:
        _fsync_dir(path)
    return key


def _fsync_dir(path):
    d = os.path.dirname(os.path.abspath(path))
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open(uri, create=True, pure=False):  # noqa: A001 - the backend entry point edgepoi.keys expects
    """Backend entry point: the key at file:PATH, created when missing and create is set."""
    path = path_of(uri)
    if _exists(path):
        return load(path, pure)
    if not create:
        raise KeyBackendError("not_found", "no key file at %s (create=False)" % path)
    try:
        return new_key(path, pure)
    except KeyBackendError as e:
        if e.reason == "exists":          # lost a race with another creator: use its key
            return load(path, pure)
        raise

