"""``file:PATH`` software signing key: P-256 in an unencrypted PKCS#8 PEM file (development only).

    from edgepoi.keys import open_key
    key = open_key("file:/var/lib/edgepoi/device.pem")     # created (mode 0600) when missing
    sig = key.sign_digest(hashlib.sha256(b"...").digest())

The file is "-----BEGIN PRIVATE KEY-----" (PKCS#8 PrivateKeyInfo, id-ecPublicKey, prime256v1, with
the public key), the same bytes `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`
and `cryptography` write, so one file serves CPython and MicroPython alike (this module carries its
own small DER reader/writer for that one structure). Signatures are deterministic (RFC 6979): on
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
_OID_EC = b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01"          # 1.2.840.10045.2.1 id-ecPublicKey
_OID_P256 = b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"    # 1.2.840.10045.3.1.7 prime256v1
_BEGIN = "-----BEGIN PRIVATE KEY-----"
_END = "-----END PRIVATE KEY-----"


def _bad(detail):
    return KeyBackendError("bad_key_file", detail)


# -- DER (just what PKCS#8 EC P-256 needs) ----------------------------------------------------------

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
            b"\x04\x20" + p256._i2b(d) + b"\xa1\x44\x03\x42\x00" + bytes(pub))


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
    d, pub = der_decode_private(pem_decode(text))
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
    data = pem_encode(der_encode_private(d, key.public_key()))
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

