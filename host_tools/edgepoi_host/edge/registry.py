"""The edge node's device registry: which device holds which P-256 key, and who is flagged for fraud.

Usage::

    from edgepoi_host.edge import db, registry
    reg = registry.Registry(db.connect("edge.db"))
    pub = registry.load_public_key(open("dev-1.pub.pem", "rb").read())   # PEM, DER, hex or raw -> 65 bytes
    dev = reg.register("dev-1", pub, kind="tpm2")        # idempotent for the same key
    reg.register("dev-1", other_pub, rotate=True)        # a new key needs rotate=True
    reg.lookup(kid)            # (device_id, pub65, None) like edgepoi.attest_verify.MemoryRegistry, or None
    reg.flag("dev-1", "audit: output mismatch at seq 42")

Tables (component "registry", see docs/EDGE.md): ``registry_devices`` (one row per device, the current
key) and ``registry_key_history`` (keys retired by rotation, kept so old attestations stay checkable).
A key id is the first 16 bytes of SHA-256 over the 65-byte uncompressed point (edgepoi.keys.key_id_of).
"""
import binascii
import hashlib
import re
import time

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RESERVED_IDS = ("edge",)          # edgepoi/v1/edge/... belongs to the edge node (beacon)
_HEX_CHARS = frozenset(b"0123456789abcdefABCDEF: \t\r\n")
KINDS = ("file", "tpm2", "pkcs11", "atecc608", "unknown")

MIGRATIONS = [
    """
    CREATE TABLE registry_devices (
        device_id TEXT PRIMARY KEY,
        public_key BLOB NOT NULL,
        key_id BLOB NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        registered_at REAL NOT NULL,
        rotated_at REAL,
        flagged INTEGER NOT NULL DEFAULT 0,
        flagged_at REAL,
        flag_reason TEXT,
        broker_username TEXT NOT NULL UNIQUE
    );
    CREATE TABLE registry_key_history (
        device_id TEXT NOT NULL,
        public_key BLOB NOT NULL,
        key_id BLOB NOT NULL,
        registered_at REAL NOT NULL,
        retired_at REAL NOT NULL
    );
    CREATE INDEX registry_key_history_kid ON registry_key_history (key_id)
    """,
]

_COLS = ("device_id", "public_key", "key_id", "kind", "registered_at", "rotated_at", "flagged",
         "flagged_at", "flag_reason", "broker_username")


class RegistryError(ValueError):
    """Refused registration or bad key; ``reason``: bad_device_id, bad_key, key_mismatch, key_in_use,
    unknown_device, bad_kind."""

    def __init__(self, reason, detail):
        ValueError.__init__(self, "%s: %s" % (reason, detail))
        self.reason = reason
        self.detail = detail


def key_id_of(pub65):
    return hashlib.sha256(pub65).digest()[:16]


def check_device_id(device_id):
    if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
        raise RegistryError("bad_device_id", "a device id is 1-64 of A-Z a-z 0-9 _ . - (got %r)"
                            % (device_id,))
    if device_id in RESERVED_IDS:
        raise RegistryError("bad_device_id", "%r is reserved for the edge node" % device_id)
    return device_id


def check_point(pub65):
    """Return pub65 if it is an uncompressed point on P-256 (checked with ``cryptography``)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    pub65 = bytes(pub65)
    if len(pub65) != 65 or pub65[0] != 4:
        raise RegistryError("bad_key", "expected a 65-byte uncompressed P-256 point (04 || X || Y), "
                            "got %d bytes" % len(pub65))
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub65)
    except ValueError as e:
        raise RegistryError("bad_key", "not a point on P-256: %s" % e)
    return pub65


def load_public_key(data):
    """A P-256 public key from PEM (public key or certificate), DER, hex text or raw bytes -> 65 bytes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    if isinstance(data, str):
        data = data.encode()
    data = bytes(data)
    text = data.strip()
    if text and not text.startswith(b"-----") and all(c in _HEX_CHARS for c in text):
        try:
            return check_point(binascii.unhexlify(b"".join(text.split()).replace(b":", b"")))
        except (binascii.Error, ValueError) as e:
            if isinstance(e, RegistryError):
                raise
            raise RegistryError("bad_key", "hex text that does not decode: %s" % e)
    if len(data) == 65 and data[0] == 4:
        return check_point(data)
    try:
        if text.startswith(b"-----BEGIN CERTIFICATE"):
            key = x509.load_pem_x509_certificate(text).public_key()
        elif text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            key = serialization.load_der_public_key(data)
    except ValueError as e:
        raise RegistryError("bad_key", "not PEM, DER, hex or a raw 65-byte point (%s)" % e)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise RegistryError("bad_key", "the key is not a P-256 (secp256r1) EC key")
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


class Registry:
    """Registered devices in the ledger database (an edgepoi_host.edge.db.Database)."""

    def __init__(self, database):
        self.db = database
        self.db.migrate("registry", MIGRATIONS)

    def register(self, device_id, public_key, kind="unknown", rotate=False, broker_username=None,
                 now=None):
        """Register device_id with public_key (65 bytes, checked on the curve).

        Returns:
            (device dict, action) with action "created", "unchanged" or "rotated".
        Raises:
            RegistryError: bad id/key/kind; key_mismatch (a different key without rotate);
            key_in_use (the key belongs to another device).
        """
        check_device_id(device_id)
        pub = check_point(public_key)
        if kind not in KINDS:
            raise RegistryError("bad_kind", "kind must be one of %s" % ", ".join(KINDS))
        kid = key_id_of(pub)
        now = time.time() if now is None else now
        with self.db.transaction():
            other = self.db.query_one("SELECT device_id FROM registry_devices WHERE key_id = ?", (kid,))
            if other and other[0] != device_id:
                raise RegistryError("key_in_use", "key %s is registered to %r" % (kid.hex(), other[0]))
            cur = self.get(device_id)
            if cur is None:
                self.db.execute(
                    "INSERT INTO registry_devices (device_id, public_key, key_id, kind, registered_at, "
                    "broker_username) VALUES (?, ?, ?, ?, ?, ?)",
                    (device_id, pub, kid, kind, now, broker_username or device_id))
                return self.get(device_id), "created"
            if cur["public_key"] == pub:
                return cur, "unchanged"
            if not rotate:
                raise RegistryError("key_mismatch", "%r is registered with key %s; pass --rotate to "
                                    "replace it" % (device_id, cur["key_id"].hex()))
            self.db.execute("INSERT INTO registry_key_history (device_id, public_key, key_id, "
                            "registered_at, retired_at) VALUES (?, ?, ?, ?, ?)",
                            (device_id, cur["public_key"], cur["key_id"], cur["registered_at"], now))
            self.db.execute("UPDATE registry_devices SET public_key = ?, key_id = ?, kind = ?, "
                            "rotated_at = ? WHERE device_id = ?", (pub, kid, kind, now, device_id))
            return self.get(device_id), "rotated"

    def get(self, device_id):
        row = self.db.query_one("SELECT %s FROM registry_devices WHERE device_id = ?" % ", ".join(_COLS),
                                (device_id,))
        return _row(row)

    def devices(self):
        return [_row(r) for r in self.db.query("SELECT %s FROM registry_devices ORDER BY device_id"
                                               % ", ".join(_COLS))]

    def lookup(self, kid):
        """The attestation verifier's view: kid -> (device_id, public_key65, None) or None."""
        row = self.db.query_one("SELECT device_id, public_key FROM registry_devices WHERE key_id = ?",
                                (bytes(kid),))
        return (row[0], row[1], None) if row else None

    def flag(self, device_id, reason, now=None):
        """Mark a device as caught lying: its unsettled work is left out of settlement batches."""
        now = time.time() if now is None else now
        with self.db.transaction():
            n = self.db.execute("UPDATE registry_devices SET flagged = 1, flagged_at = ?, flag_reason = ? "
                                "WHERE device_id = ? AND flagged = 0", (now, reason, device_id))
            if not n and self.get(device_id) is None:
                raise RegistryError("unknown_device", "no registered device %r" % device_id)

    def flagged(self):
        return set(r[0] for r in self.db.query("SELECT device_id FROM registry_devices WHERE flagged = 1"))


def _row(row):
    if row is None:
        return None
    d = dict(zip(_COLS, row))
    d["flagged"] = bool(d["flagged"])
    return d
