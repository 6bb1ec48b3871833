"""Public keys the console checks attestation signatures with: a registry and/or a folder of key files.

Usage::

    from edgepoi_host.console.keys import KeyRing
    from edgepoi_host.edge import db, registry
    ring = KeyRing(registry.Registry(db.connect("edge.db")))     # the edge node's registry
    ring = KeyRing.from_dir("keys/")                             # sim-01.pub.pem, sim-02.hex, ...
    ring.lookup(kid)          # -> (device_id or None, public_key65) or None
"""
import os
import time

from edgepoi import attest

class KeyRing:
    """Public keys by kid, from a registry (``lookup(kid)``) and/or a folder of key files.

    ``lookup(kid)`` -> (device_id or None, public_key65) or None. A registry names the device a key
    belongs to (the console then flags an attestation claiming another device as ``wrong device``);
    folder keys are trusted for any device. A folder holds one P-256 key per file (PEM public key or
    certificate, DER, hex, or a PEM private key whose public half is used); ``names`` maps each kid to
    its file name. Registry answers are cached for ``ttl`` seconds (keys rotate).
    """

    def __init__(self, registry=None, keys=None, names=None, ttl=30.0):
        self.registry = registry
        self.keys = dict(keys or {})     # kid -> (device_id or None, pub65)
        self.names = dict(names or {})
        self.ttl = ttl
        self._cache = {}                 # kid -> (time, entry)

    @classmethod
    def from_dir(cls, path, registry=None):
        """Load every readable key file in path; files that hold no P-256 key are skipped."""
        keys, names = {}, {}
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            pub = load_key_file(full) if os.path.isfile(full) else None
            if pub is not None:
                kid = attest.digest(pub)[:16]
                keys[kid], names[kid] = (None, pub), name
        return cls(registry, keys, names)

    def __bool__(self):
        return self.registry is not None or bool(self.keys)

    def lookup(self, kid):
        kid = bytes(kid)
        hit = self.keys.get(kid)
        if hit is not None or self.registry is None:
            return hit
        now = time.monotonic()
        cached = self._cache.get(kid)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        entry = self.registry.lookup(kid)
        if entry is not None:
            entry = (entry[0], bytes(entry[1]))
            self._cache[kid] = (now, entry)             # unknown kids are asked again next time
        return entry


def load_key_file(path):
    """A P-256 public key (65 bytes) from a key file, or None if it holds none."""
    from edgepoi_host.edge.registry import RegistryError, load_public_key
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
        if b"PRIVATE KEY-----" in data:
            from cryptography.hazmat.primitives import serialization
            key = serialization.load_pem_private_key(data, password=None)
            return key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
        return load_public_key(data)
    except (OSError, ValueError, TypeError, RegistryError):
        return None
