"""Proof-of-Intelligence attestations: the claims profile, the device-side Attester, the verifier.

Device side::

    from edgepoi import attest
    from edgepoi.counter import FileCounter
    from edgepoi.keys import open_key
    a = attest.Attester(open_key("file:key.pem"), "dev-1", FileCounter("seq"), attest.FileStore("last"))
    msg = a.attest(model_digest, input_digest, output_bytes, work_units=12345, backend="mpy-ref",
                   bit_exact=True, epoch=7, nonce=beacon_nonce)     # COSE_Sign1 bytes, chained

Verifier side (the edge node backs ``state`` with its database)::

    reg = attest.MemoryRegistry(); reg.add("dev-1", pub65)
    beacons = attest.BeaconWindow(keep=2); beacons.add(7, beacon_nonce)   # as they are published
    claims = attest.verify_attestation(msg, reg, attest.MemoryState(), beacons)
    # -> dict of claims (int keys), or raises attest.Rejection(reason, detail)

Claim keys (docs/ATTESTATION.md): RFC 9711 ueid 256, eat_nonce 10, iat 6; edgepoi private-use keys
(CWT private range, below -65536) DEVICE_ID .. BIT_EXACT = -65537 .. -65546. The payload is the
claims map in deterministic CBOR; the message is a COSE_Sign1 (edgepoi.cose) whose kid is the key id.
"""
import hashlib

from edgepoi import cbor
from edgepoi import cose

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
REASONS = ("malformed", "bad_signature", "unknown_key", "unknown_device", "stale_nonce", "replayed",
           "sequence_gap", "chain_broken", "wrong_model")


class ClaimsError(ValueError):
    """make_claims / check_claims got a value outside the profile."""


class Rejection(Exception):
    """The verifier refused an attestation; ``reason`` is one of REASONS, ``detail`` says why."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


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


def named(claims):
    """Claims with names instead of keys (for JSON, logs, the CLI); unknown keys kept as numbers."""
    return dict((NAMES.get(k, k), v) for k, v in claims.items())


def from_named(d):
    """Inverse of named(): names (or numeric strings) -> int keys."""
    keys = dict((v, k) for k, v in NAMES.items())
    out = {}
    for k, v in d.items():
        if k in keys:
            out[keys[k]] = v
        else:
            try:
                out[int(k)] = v
            except ValueError:
                raise ClaimsError("unknown claim name %r" % (k,))
    return out


def digest(data):
    """SHA-256 of bytes (model file, input tensor, a whole attestation)."""
    return hashlib.sha256(data).digest()


# -- device side ---------------------------------------------------------------------------------

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
            cose.decode1(data)
            return data
        except (OSError, cose.CoseError):
            return None

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
        msg = cose.sign1(cbor.dumps(claims), self.signer)
        self.store.save(msg)
        self.prev = digest(msg)
        return msg

    def last(self):
        """The last attestation signed (to republish after a reboot), or None."""
        return self.store.load()


# -- verifier side -------------------------------------------------------------------------------

class MemoryRegistry:
    """Known keys: key id -> (device id, public key, allowed model digests or None)."""

    def __init__(self):
        self.keys = {}

    def add(self, device_id, public_key, models=None):
        from edgepoi import p256
        from edgepoi.keys import key_id_of
        p256.decode_point(bytes(public_key))      # P256Error(bad_key) unless a valid P-256 point
        kid = key_id_of(public_key)
        self.keys[kid] = (device_id, bytes(public_key), set(models) if models else None)
        return kid

    def lookup(self, kid):
        """-> (device_id, public_key65, models or None), or None when the key is unknown."""
        return self.keys.get(bytes(kid))


class MemoryState:
    """Per-device verifier state: the protocol the edge node backs with its database."""

    def __init__(self):
        self.rows = {}

    def get_state(self, device_id):
        """-> (last accepted seq, SHA-256 of that message), or None for a device never seen."""
        return self.rows.get(device_id)

    def commit(self, device_id, seq, msg_hash):
        self.rows[device_id] = (seq, msg_hash)


class BeaconWindow:
    """The freshness beacons the edge node published; an attestation must carry one of the last
    ``keep`` (epoch, nonce) pairs, else it is rejected as stale_nonce."""

    def __init__(self, keep=2):
        self.keep = keep
        self.beacons = []

    def add(self, epoch, nonce):
        self.beacons.append((epoch, bytes(nonce)))
        del self.beacons[:-self.keep]

    def accepts(self, epoch, nonce):
        return (epoch, nonce) in self.beacons


def verify_attestation(msg, registry, state, beacon_policy=None, models=None, commit=True,
                       require_genesis=False):
    """Check one attestation end to end and (with commit) advance the device's chain state.

    Args:
        msg: COSE_Sign1 bytes.
        registry: lookup(kid) -> (device_id, public_key, models or None) or None.
        state: get_state(device_id) / commit(device_id, seq, hash).
        beacon_policy: accepts(epoch, nonce) -> bool, or None to skip the freshness check.
        models: allowed model digests (any container), or None; the registry's set also applies.
        require_genesis: a device's first accepted message must have prev == 32 zero bytes.
    Returns:
        the claims map (int keys).
    Raises:
        Rejection: reason in REASONS. Chain rules, with (last_seq, last_hash) the device's state:
        seq <= last_seq -> replayed (chain_broken when seq == last_seq but the message differs);
        seq > last_seq with prev == last_hash -> accepted (a counter may skip after a crash);
        seq == last_seq + 1 with another prev -> chain_broken; a larger seq -> sequence_gap.
    """
    try:
        kid = cose.kid_of(msg)
    except cose.CoseError as e:
        raise Rejection("malformed", str(e))
    entry = registry.lookup(kid)
    if entry is None:
        raise Rejection("unknown_key", "no registered key with id %s" % kid.hex())
    device_id, public_key, allowed = entry[0], entry[1], entry[2]
    try:
        payload = cose.verify1(msg, public_key)
    except cose.CoseError as e:
        raise Rejection("bad_signature" if e.reason == "bad_signature" else "malformed", str(e))
    try:
        claims = check_claims(cbor.loads(payload, max_depth=4, max_items=64, canonical=True))
    except (cbor.CBORError, ClaimsError) as e:
        raise Rejection("malformed", "claims: %s" % e)
    if claims[DEVICE_ID] != device_id:
        raise Rejection("unknown_device", "key %s belongs to %r, claims say %r"
                        % (kid.hex(), device_id, claims[DEVICE_ID]))
    if beacon_policy is not None and not beacon_policy.accepts(claims[EPOCH], claims[EAT_NONCE]):
        raise Rejection("stale_nonce", "epoch %d with a nonce that is not a current beacon"
                        % claims[EPOCH])
    for allow in (models, allowed):
        if allow is not None and claims[MODEL] not in allow:
            raise Rejection("wrong_model", "model %s is not allowed" % claims[MODEL].hex())
    h = digest(msg)
    seq, prev = claims[SEQ], claims[PREV]
    last = state.get_state(device_id)
    if last is None:
        if require_genesis and prev != ZERO_HASH:
            raise Rejection("chain_broken", "first message of %r does not start a chain" % device_id)
    else:
        last_seq, last_hash = last
        if seq <= last_seq:
            if seq == last_seq and h != last_hash:
                raise Rejection("chain_broken", "a second, different message with seq %d" % seq)
            raise Rejection("replayed", "seq %d already accepted (last %d)" % (seq, last_seq))
        if prev != last_hash:
            if seq == last_seq + 1:
                raise Rejection("chain_broken", "seq %d does not chain to seq %d" % (seq, last_seq))
            raise Rejection("sequence_gap", "seq %d after %d: messages in between are missing"
                            % (seq, last_seq))
    if commit:
        state.commit(device_id, seq, h)
    return claims


class Verifier:
    """verify_attestation bound to one registry, state, beacon policy and model allow-list."""

    def __init__(self, registry, state, beacon_policy=None, models=None, require_genesis=False):
        self.registry = registry
        self.state = state
        self.beacon_policy = beacon_policy
        self.models = models
        self.require_genesis = require_genesis

    def verify(self, msg, commit=True):
        return verify_attestation(msg, self.registry, self.state, self.beacon_policy, self.models,
                                  commit, self.require_genesis)
