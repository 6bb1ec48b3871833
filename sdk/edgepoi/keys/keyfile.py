"""Reading and creating the key file of a ``file:`` key (set-up code; see edgepoi.keys.file).

edgepoi.keys.file.open() loads this module, and on MicroPython forgets it (and edgepoi.keys.pkcs8) once
the key is open, so a running board keeps only the signer. Safety: a new key is written to a temporary
file opened O_CREAT|O_EXCL with mode 0600, fsynced and published with an atomic link/rename that never
replaces an existing key; on CPython a key file that group or others may access is refused.
"""
import os

import binascii
import builtins

from edgepoi import p256
from edgepoi.keys import KeyBackendError, pkcs8
from edgepoi.keys.file import _CPYTHON, FileKey


def _bad(detail):
    return KeyBackendError("bad_key_file", detail)


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
    d, pub = pkcs8.der_decode_private(pkcs8.pem_decode(text))
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
    data = pkcs8.pem_encode(pkcs8.der_encode_private(d, key.public_key()))
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


def open_uri(uri, create=True, pure=False):
    """The key at file:PATH, created when missing and create is set -> FileKey."""
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

