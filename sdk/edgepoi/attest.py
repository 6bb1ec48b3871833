"""Proof-of-Intelligence attestations, device side: the claims profile and the Attester that signs.

Device side::

    from edgepoi import attest
    from edgepoi.counter import FileCounter
    from edgepoi.keys import open_key
    a = attest.Attester(open_key("file:key.pem"), "dev-1", FileCounter("seq"), attest.FileStore("last"))
    msg = a.attest(model_digest, input_digest, output_bytes, work_units=12345, backend="mpy-ref",
                   bit_exact=True, epoch=7, nonce=beacon_nonce)     # COSE_Sign1 bytes, chained

Checking attestations (registry, chain state, freshness beacons, Rejection reasons) and reading claims
by name are edgepoi.attest_verify, which a device that only signs never loads.

Claim keys (docs/ATTESTATION.md): RFC 9711 ueid 256, eat_nonce 10, iat 6; edgepoi private-use keys
(CWT private range, below -65536) DEVICE_ID .. BIT_EXACT = -65537 .. -65546. The payload is the
claims map in deterministic CBOR; the message is a COSE_Sign1 (edgepoi.cose) whose kid is the key id.
"""
import hashlib

from edgepoi import cbor
from edgepoi.cose import sign1

UEID, EAT_NONCE, IAT = 256, 10, 6
DEVICE_ID, SEQ, PREV, EPOCH, MODEL, INPUT, OUTPUT, WORK, BACKEND, BIT_EXACT = (
    -65537, -65538, -65539, -65540, -65541, -65542, -65543, -65544, -65545, -65546)
NAMES = {UEID: "ueid", EAT_NONCE: "eat_nonce", IAT: "iat", DEVICE_ID: "device_id", SEQ: "seq",
         PREV: "prev", EPOCH: "epoch", MODEL: "model_digest", INPUT: "input_digest",
         OUTPUT: "output", WORK: "work_units", BACKEND: "backend", BIT_EXACT: "bit_exact"}
_TYPES = {UEID: bytes, EAT_NONCE: bytes, IAT: int, DEVICE_ID: str, SEQ: int, PREV: bytes,
          EPOCH: int, MODEL: bytes, INPUT: bytes, OUTPUT: bytes, WORK: int, BACKEND: str,
          BIT_EXACT: bool}
ZERO_HASH = b"\x00" * 32


class ClaimsError(ValueError):
    """make_claims / check_claims got a value outside the profile."""


def ueid_for(device_id):
    """Default UEID: type 0x01 (RAND) + the first 16 bytes of SHA-256("edgepoi-ueid:" + device id)."""
    return b"\x01" + hashlib.sha256(b"edgepoi-ueid:" + device_id.encode()).digest()[:16]


def check_claims(claims):
    """Raise ClaimsError unless claims is a complete profile map with the right types and sizes."""
    if not isinstance(claims, dict):
        raise ClaimsError("claims must be a map")
    for key, typ in _TYPES.items():
        if key not in claims:
            raise ClaimsError("missing claim %s (%d)" % (NAMES[key], key))
        v = claims[key]
        if typ is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ClaimsError("claim %s must be a non-negative int" % NAMES[key])
        if typ is not int and not isinstance(v, typ):
            raise ClaimsError("claim %s must be %s" % (NAMES[key], typ.__name__))
    for key in (PREV, MODEL, INPUT):
        if len(claims[key]) != 32:
            raise ClaimsError("claim %s must be a 32-byte SHA-256 digest" % NAMES[key])
    if len(claims[UEID]) != 17 or claims[UEID][0] != 1:
        raise ClaimsError("ueid must be 0x01 followed by 16 bytes")
    if not 8 <= len(claims[EAT_NONCE]) <= 64:
        raise ClaimsError("eat_nonce must be 8..64 bytes")
    if not claims[DEVICE_ID]:
        raise ClaimsError("device_id must not be empty")
    return claims


def make_claims(device_id, seq, prev, epoch, nonce, model_digest, input_digest, output, work_units,
                backend, bit_exact, iat, ueid=None):
    """The claims map (int keys) for one unit of work; validated. Raises ClaimsError."""
    claims = {UEID: ueid if ueid is not None else ueid_for(device_id), EAT_NONCE: bytes(nonce),
              IAT: int(iat), DEVICE_ID: device_id, SEQ: seq, PREV: bytes(prev), EPOCH: epoch,
              MODEL: bytes(model_digest), INPUT: bytes(input_digest), OUTPUT: bytes(output),
              WORK: work_units, BACKEND: backend, BIT_EXACT: bit_exact}
    return check_claims(claims)


def digest(data):
    """SHA-256 of bytes (model file, input tensor, a whole attestation)."""
    return hashlib.sha256(data).digest()


class MemoryStore:
    """Keeps the last attestation in memory (tests, hosts that persist elsewhere)."""

    def __init__(self, message=None):
        self.message = message

    def load(self):
        return self.message

    def save(self, message):
        self.message = message


class FileStore:
    """Keeps the last attestation in a file (tmp write + rename), so the chain survives a reboot and
    the last message can be republished (an exact duplicate is idempotent at the edge node).
    Only a well-formed COSE_Sign1 is ever returned; a complete PATH.tmp stands in for a PATH that
    a FAT-style rename (remove target, then rename) lost to a crash in between."""

    def __init__(self, path):
        self.path = path

    def _read(self, path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        from edgepoi import cose_verify     # loaded only when there is a message to check
        try:
            cose_verify.decode1(data)
        except cose_verify.CoseError:
            return None
        return data

    def load(self):
        data = self._read(self.path)
        if data is None:
            import os
            try:
                os.stat(self.path)
            except OSError:
                return self._read(self.path + ".tmp")
        return data

    def save(self, message):
        import os
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(message)
            if hasattr(os, "fsync"):
                f.flush()
                os.fsync(f.fileno())
        try:
            os.rename(tmp, self.path)
        except OSError:               # VFS whose rename does not replace (FAT)
            os.remove(self.path)
            os.rename(tmp, self.path)


class Attester:
    """Signs successive attestations of one device, chaining each to the previous one.

    Args:
        signer: a key from edgepoi.keys.open_key.
        device_id: text id of the device.
        counter: monotonic counter with next() (edgepoi.counter or a hardware counter).
        state_store: object with load() -> last message or None and save(message).
        ueid: 17-byte UEID (default ueid_for(device_id)).
        clock: function returning seconds since the epoch (iat); default time.time.
    """

    def __init__(self, signer, device_id, counter, state_store, ueid=None, clock=None):
        self.signer = signer
        self.device_id = device_id
        self.counter = counter
        self.store = state_store
        self.ueid = ueid if ueid is not None else ueid_for(device_id)
        if clock is None:
            import time
            clock = time.time
        self.clock = clock
        last = state_store.load()
        self.prev = digest(last) if last else ZERO_HASH

    def attest(self, model_digest, input_digest, output, work_units, backend, bit_exact, epoch,
               nonce):
        """Sign one unit of work -> COSE_Sign1 bytes; the message is saved before it is returned."""
        seq = self.counter.next()
        claims = make_claims(self.device_id, seq, self.prev, epoch, nonce, model_digest,
                             input_digest, output, work_units, backend, bit_exact,
                             int(self.clock()), self.ueid)
        msg = sign1(cbor.dumps(claims), self.signer)
        self.store.save(msg)
        self.prev = digest(msg)
        return msg

    def last(self):
        """The last attestation signed (to republish after a reboot), or None."""
        return self.store.load()
