"""Proof-of-Intelligence attestations, verifier side: registry, chain state, beacons, verify_attestation.

What an edge node, a console or a test loads to check what edgepoi.attest (the claims profile and the
device's Attester) signed; a device that only signs never imports it. The edge node backs ``state``
with its database::

    from edgepoi import attest_verify
    reg = attest_verify.MemoryRegistry(); reg.add("dev-1", pub65)
    beacons = attest_verify.BeaconWindow(keep=2); beacons.add(7, beacon_nonce)   # as they are published
    claims = attest_verify.verify_attestation(msg, reg, attest_verify.MemoryState(), beacons)
    # -> dict of claims (int keys), or raises attest_verify.Rejection(reason, detail)
    attest_verify.named(claims)        # {"ueid": ..., "seq": ...} for JSON, logs and the CLI
"""
from edgepoi import cbor
from edgepoi import cose_verify
from edgepoi.attest import (DEVICE_ID, EAT_NONCE, EPOCH, MODEL, NAMES, PREV, SEQ, ZERO_HASH, ClaimsError,
                            check_claims, digest)

REASONS = ("malformed", "bad_signature", "unknown_key", "unknown_device", "stale_nonce", "replayed",
           "sequence_gap", "chain_broken", "wrong_model")


class Rejection(Exception):
    """The verifier refused an attestation; ``reason`` is one of REASONS, ``detail`` says why."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


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


class MemoryRegistry:
    """Known keys: key id -> (device id, public key, allowed model digests or None)."""

    def __init__(self):
        self.keys = {}

    def add(self, device_id, public_key, models=None):
        from edgepoi import p256_verify
        from edgepoi.keys import key_id_of
        p256_verify.decode_point(bytes(public_key))      # P256Error(bad_key) unless a valid P-256 point
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
        kid = cose_verify.kid_of(msg)
    except cose_verify.CoseError as e:
        raise Rejection("malformed", str(e))
    entry = registry.lookup(kid)
    if entry is None:
        raise Rejection("unknown_key", "no registered key with id %s" % kid.hex())
    device_id, public_key, allowed = entry[0], entry[1], entry[2]
    try:
        payload = cose_verify.verify1(msg, public_key)
    except cose_verify.CoseError as e:
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
