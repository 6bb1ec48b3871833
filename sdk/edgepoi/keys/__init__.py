"""Signing keys behind one interface, opened from a URI (portable core).

    from edgepoi.keys import open_key
    key = open_key("file:device.pem")           # creates the key on first use (create=True)
    pub = key.public_key()                      # 65-byte uncompressed SEC1 point (0x04 || X || Y)
    sig = key.sign_digest(sha256_digest)        # 64-byte raw r || s (ES256)
    key.key_id, key.alg, key.backend            # 16 bytes, -7, "file"
    key.close()

URI schemes and their backend modules (imported only when used, so a board carries only its own):

    file:PATH        edgepoi.keys.file      software key, PKCS#8 PEM, development only
    tpm2:...         edgepoi.keys.tpm2      TPM 2.0 through tpm2-pytss (CPython)
    pkcs11:...       edgepoi.keys.pkcs11    RFC 7512 PKCS#11 URI through python-pkcs11 (CPython)
    atecc608:...     edgepoi.keys.atecc608  Microchip ATECC608 secure element over I2C

Every backend module exposes ``open(uri, create)`` returning a signer with ``public_key()``,
``key_id`` (``key_id_of(public_key())``), ``sign_digest(digest32)``, ``alg`` (-7), ``backend`` and
``close()``. Failures raise ``KeyBackendError`` (``reason`` is a short code). A signer never shows key
material in its repr, its errors or a log line.
"""
import hashlib

ES256 = -7
SCHEMES = ("file", "tpm2", "pkcs11", "atecc608")


class KeyBackendError(Exception):
    """A key could not be opened, created or used. ``reason``: short code (unknown_scheme, bad_uri,
    not_found, insecure_permissions, bad_key_file, backend_unavailable, device_error, ...)."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


def key_id_of(pub65):
    """Key id: the first 16 bytes of SHA-256 over the 65-byte uncompressed public point."""
    if not isinstance(pub65, (bytes, bytearray)) or len(pub65) != 65 or pub65[0] != 4:
        raise KeyBackendError("bad_public_key", "expected a 65-byte uncompressed SEC1 point")
    return hashlib.sha256(bytes(pub65)).digest()[:16]


def open_key(uri, create=True):
    """Open (and, with create, make on first use) the signing key named by uri.

    Args:
        uri: "file:PATH", "tpm2:...", "pkcs11:..." or "atecc608:...".
        create: make the key when it does not exist yet (default True).
    Returns:
        a signer (see the module docstring).
    Raises:
        KeyBackendError: unknown scheme, malformed URI, missing key (create=False), backend failure
        (backend_unavailable: its module or a dependency cannot be imported).
    """
    if not isinstance(uri, str) or ":" not in uri:
        raise KeyBackendError("bad_uri", "a key URI looks like SCHEME:..., e.g. file:key.pem")
    scheme = uri.split(":", 1)[0].lower()
    if scheme not in SCHEMES:
        raise KeyBackendError("unknown_scheme", "unknown key URI scheme %r (known: %s)"
                              % (scheme, ", ".join(SCHEMES)))
    try:   # the backend module, imported only now (a board carries only its own)
        pkg = __import__("edgepoi.keys." + scheme)
    except ImportError as e:
        raise KeyBackendError("backend_unavailable", "key backend %r cannot be imported: %s"
                              % (scheme, e))
    return getattr(pkg.keys, scheme).open(uri, create)
