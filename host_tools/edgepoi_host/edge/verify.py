"""Attestation checking for the ingest: the portable verifier plus the edge node's state and policies.

``AttestationGate.check(device_id, payload, at)`` returns a list of outcomes, each
``(kind, seq, data, payload)`` with kind "accepted" (data = row for the attestations table), "rejected"
(data = (reason, detail)), "duplicate" (a byte-identical redelivery of a stored one: nothing to do) — or nothing yet: an attestation that arrives ahead of a missing one (a QoS 1
resend after a reconnect can overtake) is held back for up to ``gap_timeout`` seconds and checked again
as soon as the missing one arrives. Only when the gap outlives the timeout is it rejected as
``sequence_gap``; the device's chain is then re-anchored on it, so one lost message costs one rejection,
not every later one.

Verifier state (per device: last accepted seq and message hash) lives in memory and is written to the
ledger's ``chain_state`` in the same transaction as the batch it belongs to (``take_chain_updates``).
"""
import time

from edgepoi import attest, attest_verify, cose_verify

# Rejections a resend cannot change; the edge acknowledges these to the device like accepted ones.
FINAL_REASONS = ("malformed", "bad_signature", "unknown_key", "unknown_device", "stale_nonce", "replayed",
                 "chain_broken", "wrong_model", "sequence_gap", "device_mismatch")


class ChainState:
    """attest's state protocol (get_state/commit) over a dict, remembering what changed."""

    def __init__(self, initial):
        self.rows = dict(initial)
        self.changed = {}
        self.undo = {}

    def get_state(self, device_id):
        return self.rows.get(device_id)

    def commit(self, device_id, seq, msg_hash):
        if device_id not in self.undo:
            self.undo[device_id] = self.rows.get(device_id)
        self.rows[device_id] = (seq, msg_hash)
        self.changed[device_id] = (seq, msg_hash)

    def rollback(self):
        for device_id, old in self.undo.items():
            if old is None:
                self.rows.pop(device_id, None)
            else:
                self.rows[device_id] = old
        self.undo = {}
        self.changed = {}


class CachedRegistry:
    """The registry's ``lookup(kid)`` with known keys cached for ``ttl`` seconds (unknown ones are not)."""

    def __init__(self, registry, ttl=10.0):
        self.registry = registry
        self.ttl = ttl
        self._cache = {}

    def lookup(self, kid):
        kid = bytes(kid)
        hit = self._cache.get(kid)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        entry = self.registry.lookup(kid)
        if entry is not None:
            self._cache[kid] = (now + self.ttl, entry)
        return entry

    def forget(self):
        self._cache.clear()


class BeaconPolicy:
    """Accepts attestations that carry one of the last ``keep`` published beacons."""

    def __init__(self, keep=2):
        self.keep = keep
        self.beacons = []

    def add(self, epoch, nonce):
        if (epoch, nonce) not in self.beacons:
            self.beacons.append((epoch, bytes(nonce)))
            self.beacons.sort()
            del self.beacons[:-self.keep]

    def accepts(self, epoch, nonce):
        return (epoch, bytes(nonce)) in self.beacons


class AttestationGate:
    def __init__(self, registry, chain_states, beacon_policy=None, gap_timeout=30.0, max_held=1000,
                 flagged=(), stored_hash=None, fresh_state=None):
        self.stored_hash = stored_hash  # function(device_id, seq) -> msg hash already accepted, or None
        # Several edge nodes on one ledger (shared subscriptions): function(device_id) -> the chain state in
        # the database, which another node may have moved. Then a device's first attestation must start its
        # chain (prev = zeros): a node cannot tell a late first message from one that overtook another.
        self.fresh_state = fresh_state
        self.recent = {}                # (device_id, seq) -> hash accepted lately (also not yet committed)
        self._recent_batch = []
        self.registry = CachedRegistry(registry)
        self.state = ChainState(chain_states)
        self.beacons = beacon_policy
        self.gap_timeout = gap_timeout
        self.max_held = max_held
        self.flagged = set(flagged)
        self.held = {}  # device_id -> {seq: (payload, at)}

    def _known_hash(self, device_id, seq):
        h = self.recent.get((device_id, seq))
        if h is None and self.stored_hash is not None:
            h = self.stored_hash(device_id, seq)
        return h

    def begin(self):
        """Start a batch: remember what to restore if its ledger write fails."""
        self._recent_batch = []
        self.state.undo = {}
        self.state.changed = {}
        self._held_before = {d: dict(h) for d, h in self.held.items()}

    def rollback(self):
        """The batch was not stored: forget its effect on chains and held messages."""
        self.state.rollback()
        self.held = self._held_before
        for key in self._recent_batch:
            self.recent.pop(key, None)
        self._recent_batch = []

    def take_chain_updates(self):
        return [(d, s, h) for d, (s, h) in self.state.changed.items()]

    def refresh(self, device_id):
        """Shared mode: take the chain state from the database when another node advanced it."""
        if self.fresh_state is None:
            return False
        row = self.fresh_state(device_id)
        mine = self.state.rows.get(device_id)
        if row is not None and (mine is None or row[0] > mine[0]):
            self.state.rows[device_id] = row
            return True
        return False

    def refresh_held(self):
        """Shared mode: re-check held messages whose chain another node moved. -> [(device_id, outcome)]"""
        out = []
        for device_id in list(self.held):
            self.refresh(device_id)
            released = []
            self._release(device_id, released)
            out.extend((device_id, o) for o in released)
        return out

    def check(self, device_id, payload, at):
        out = []
        self.refresh(device_id)
        if self._check_one(device_id, payload, at, out, hold=True):
            self._release(device_id, out)
        return out

    def _check_one(self, device_id, payload, at, out, hold):
        """Verify one message; True when it was accepted (the device's chain moved)."""
        try:
            claims = attest_verify.verify_attestation(payload, self.registry, self.state, self.beacons,
                                               commit=False, require_genesis=self.fresh_state is not None)
        except attest_verify.Rejection as r:
            seq = _seq_of(payload)
            if r.reason == "chain_broken" and self.fresh_state is not None and hold and seq is not None \
                    and self.state.get_state(device_id) is None:
                r = attest_verify.Rejection("sequence_gap", "waiting for the start of the chain")
            if r.reason == "replayed" and seq is not None and self._known_hash(device_id, seq) == \
                    attest.digest(payload):
                out.append(("duplicate", seq, None, payload))  # a redelivery: idempotent
                return False
            if r.reason == "sequence_gap" and hold and seq is not None:
                held = self.held.setdefault(device_id, {})
                if len(held) < self.max_held:
                    held[seq] = (payload, at)
                    return False
            out.append(("rejected", seq, (r.reason, r.detail), payload))
            return False
        seq = claims[attest.SEQ]
        if claims[attest.DEVICE_ID] != device_id:
            # a valid signature, but on another device's topic (the broker ACL should prevent it)
            out.append(("rejected", seq, ("device_mismatch", "claims of %r on the topic of %r"
                                          % (claims[attest.DEVICE_ID], device_id)), payload))
            return False
        h = attest.digest(payload)
        self.state.commit(device_id, seq, h)
        self.recent[(device_id, seq)] = h
        self._recent_batch.append((device_id, seq))
        if len(self.recent) > 20000:
            for key in list(self.recent)[:10000]:
                del self.recent[key]
        status = "flagged" if device_id in self.flagged else "accepted"
        out.append(("accepted", seq, (device_id, seq, claims[attest.EPOCH], bytes(payload), h,
                                      claims[attest.WORK], status, at, claims), payload))
        return True

    def _release(self, device_id, out):
        """Check the device's held messages again, oldest first, while its chain keeps moving."""
        held = self.held.get(device_id)
        moved = True
        while held and moved:
            moved = False
            for s in sorted(held):
                payload, at = held[s]
                try:
                    attest_verify.verify_attestation(payload, self.registry, self.state, self.beacons,
                                              commit=False, require_genesis=self.fresh_state is not None)
                except attest_verify.Rejection as r:
                    if r.reason == "sequence_gap" or (r.reason == "chain_broken" and
                                                      self.fresh_state is not None and
                                                      self.state.get_state(device_id) is None):
                        continue  # still waiting for an earlier one
                del held[s]
                self._check_one(device_id, payload, at, out, hold=False)
                moved = True
                break
        if held is not None and not held:
            self.held.pop(device_id, None)

    def expire(self, now=None):
        """Reject held messages whose gap outlived the timeout; re-anchor the chain on each.

        Returns [(device_id, outcome, received_at)] for the rejected and any released.
        """
        now = time.time() if now is None else now
        out = []
        for device_id in list(self.held):
            held = self.held[device_id]
            while held and min(at for _p, at in held.values()) <= now - self.gap_timeout:
                s = min(held)
                payload, at = held.pop(s)
                last = self.state.get_state(device_id)
                out.append((device_id, ("rejected", s, ("sequence_gap", "seq %d: the messages after seq %s "
                                                        "never arrived within %.0fs" % (
                                                            s, last[0] if last else "-", self.gap_timeout)),
                                        payload), at))
                self.state.commit(device_id, s, attest.digest(payload))  # re-anchor the chain here
                released = []
                self._release(device_id, released)
                out.extend((device_id, o, now) for o in released)
            if not held:
                self.held.pop(device_id, None)
        return out

    def held_count(self):
        return sum(len(h) for h in self.held.values())


def _seq_of(payload):
    """Best-effort sequence number of an attestation that failed verification (for acks), or None."""
    try:
        _prot, _unprot, body, _sig = cose_verify.decode1(payload)
        from edgepoi import cbor
        claims = cbor.loads(body, max_depth=4, max_items=64)
        seq = claims.get(attest.SEQ) if isinstance(claims, dict) else None
        return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    except Exception:  # noqa: BLE001 - anything unreadable has no sequence number
        return None
