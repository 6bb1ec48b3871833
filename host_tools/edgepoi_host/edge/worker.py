"""The edge node's ledger worker: checks and stores message batches, in its own process.

The MQTT side (``ingest.EdgeNode``) only receives and acknowledges; this worker decodes, verifies every
attestation (signature, key, beacon, sequence, hash chain), writes each batch in one transaction and
answers with what may now be acknowledged. Running it in a separate process lets signature checking and
the database use the second core while paho's network loop keeps the first.

Protocol over a ``multiprocessing`` pipe (pickled tuples):
    main -> worker: ("batch", [(topic, payload, qos, mid, received_at), ...]) | ("stop",)
    worker -> main: ("done", mids, device_acks, counters, latest, results, audits, publish) | ("ready", ...)
where device_acks = {device_id: {"telemetry": n, "attest": n}}, publish = [(topic, payload, retain)]
(beacons), latest = {device_id: telemetry map}, results = [(device_id, command, payload)], audits =
[(device_id, seq, claims)] — accepted attestations sampled for a re-execution audit (``audit_rate``).
"""
import logging
import time

from edgepoi_host.edge import db as dblib
from edgepoi_host.edge import validate
from edgepoi_host.edge.beacon import BEACON_TOPIC
from edgepoi_host.edge.registry import Registry
from edgepoi_host.edge.store import Ledger
from edgepoi_host.edge.verify import FINAL_REASONS, AttestationGate, BeaconPolicy

log = logging.getLogger("edgepoi.edge.worker")


class ContiguousAcks:
    """Per device and kind: the highest sequence number up to which every message is handled."""

    def __init__(self, known):
        self.known = known  # function(device_id, kind) -> stored seqs, read once per device and kind
        self._state = {}

    def advance(self, device_id, kind, seqs):
        key = (device_id, kind)
        st = self._state.get(key)
        if st is None:
            known = set(self.known(device_id, kind)) | set(seqs)
            st = self._state[key] = [min(known) - 1, known]
        st[1].update(seqs)
        upto, above = st
        while upto + 1 in above:
            upto += 1
            above.discard(upto)
        st[0] = upto
        above.difference_update([s for s in above if s <= upto])
        return upto


class LedgerWorker:
    def __init__(self, db_url, gap_timeout=30.0, beacon_keep=2, epoch_seconds=600.0, beacon=True,
                 audit_rate=0.0):
        self.db = dblib.connect(db_url)
        self.ledger = Ledger(self.db)
        self.registry = Registry(self.db)
        self.policy = BeaconPolicy(beacon_keep) if beacon or beacon_keep else None
        self.epoch_seconds = epoch_seconds
        self.publishes_beacon = beacon
        self.gate = AttestationGate(self.registry, self.ledger.chain_states(), self.policy, gap_timeout,
                                    flagged=self.registry.flagged(), stored_hash=self.ledger.attestation_hash)
        self.acks = ContiguousAcks(self._known_seqs)
        self.current = None
        for epoch, nonce in self.ledger.recent_beacons(beacon_keep):
            self.policy.add(epoch, nonce)
            self.current = (epoch, nonce)
        self._next_rotation = time.monotonic() + epoch_seconds
        self._next_refresh = time.monotonic() + 1.0
        self.publish = []
        self.duplicates = 0
        self.audit_rate = audit_rate
        self._rng = None
        if audit_rate > 0:
            import random
            self._rng = random.SystemRandom()

    def _known_seqs(self, device_id, kind):
        if kind == "telemetry":
            return self.ledger.telemetry_seqs(device_id)
        return self.ledger.attestation_seqs(device_id, ("accepted", "verified", "flagged", "fraudulent"))

    # -- beacons -------------------------------------------------------------------------------
    def beacon_payload(self):
        from edgepoi import cbor
        epoch, nonce = self.current
        return cbor.dumps({"epoch": epoch, "nonce": nonce, "t": int(time.time())})

    def rotate(self):
        import os
        epoch = (self.current[0] + 1) if self.current else 1
        nonce = os.urandom(16)
        self.ledger.add_beacon(epoch, nonce)
        self.policy.add(epoch, nonce)
        self.current = (epoch, nonce)
        self.publish.append((BEACON_TOPIC, self.beacon_payload(), True))
        self._next_rotation = time.monotonic() + self.epoch_seconds

    def tick(self):
        """Timers: beacon rotation, held-message expiry, registry refresh. Returns expired outcomes."""
        now = time.monotonic()
        if self.publishes_beacon and (self.current is None or now >= self._next_rotation):
            self.rotate()
        if now >= self._next_refresh:
            self._next_refresh = now + 1.0
            self.gate.flagged = self.registry.flagged()
            if self.policy is not None and not self.publishes_beacon:  # another worker owns the beacon
                for epoch, nonce in self.ledger.recent_beacons(self.policy.keep):
                    self.policy.add(epoch, nonce)
            return self.gate.expire()
        return []

    # -- one batch -----------------------------------------------------------------------------
    def process(self, batch):
        """Check and store a batch. Returns (mids, device_acks, counters, latest, results) or None
        when the ledger write failed (nothing may be acknowledged then)."""
        telemetry, attests, rejected, statuses, results = [], [], [], [], []
        handled = {}
        latest = {}
        self.gate.begin()
        for topic, payload, _qos, _mid, at in batch:
            try:
                dev, kind = validate.parse_topic(topic)
                if kind == "telemetry":
                    msg = validate.telemetry(dev, payload)
                    telemetry.append((dev, msg["seq"], msg["ts"], at, payload))
                    handled.setdefault(dev, {}).setdefault("telemetry", []).append(msg["seq"])
                    latest[dev] = msg
                elif kind == "attest":
                    for outcome in self.gate.check(dev, payload, at):
                        self._outcome(dev, topic, at, outcome, attests, rejected, handled)
                elif kind == "status":
                    statuses.append((dev, validate.status(payload), at))
                else:
                    results.append((dev, kind, payload))
            except validate.Rejected as r:
                rejected.append((topic, None, r.reason, r.detail, at, payload))
            except Exception as e:  # noqa: BLE001 - the ingest never dies on one message
                log.exception("unexpected error on %s", topic)
                rejected.append((topic, None, "internal_error", repr(e)[:200], at, payload))
        for dev, outcome, at in self.tick():  # held back too long: sequence_gap (and what that released)
            self._outcome(dev, "edgepoi/v1/%s/attest" % dev, at, outcome, attests, rejected, handled)
        try:
            new_t, new_a = self.ledger.write_batch(telemetry, [a[:8] for a in attests], rejected,
                                                   statuses, self.gate.take_chain_updates())
        except Exception:  # noqa: BLE001 - nothing acknowledged; the caller retries the batch
            log.exception("ledger write failed; %d messages left unacknowledged", len(batch))
            self.gate.rollback()
            self.duplicates = 0
            return None
        acks = {dev: {k: self.acks.advance(dev, k, seqs) for k, seqs in kinds.items()}
                for dev, kinds in handled.items()}
        counters = {"received": len(batch), "stored": new_t, "attested": new_a,
                    "duplicates": len(telemetry) - new_t + len(attests) - new_a + self.duplicates,
                    "rejected": len(rejected), "held": self.gate.held_count()}
        self.duplicates = 0
        audits = [(a[0], a[1], a[8]) for a in attests
                  if self._rng is not None and a[6] == "accepted" and self._rng.random() < self.audit_rate]
        return [m[3] for m in batch if m[2]], acks, counters, latest, results, audits

    def _outcome(self, dev, topic, at, outcome, attests, rejected, handled):
        kind, seq, data, payload = outcome
        if kind == "duplicate":
            self.duplicates += 1
            handled.setdefault(dev, {}).setdefault("attest", []).append(seq)
            return
        if kind == "accepted":
            attests.append(data)
            handled.setdefault(dev, {}).setdefault("attest", []).append(seq)
            return
        reason, detail = data
        rejected.append((topic, dev, reason, detail, at, payload))
        if seq is not None and reason in FINAL_REASONS:
            handled.setdefault(dev, {}).setdefault("attest", []).append(seq)

    def take_publish(self):
        out, self.publish = self.publish, []
        return out

    def close(self):
        self.db.close()


def serve(conn, kwargs):
    """Worker process main loop (multiprocessing target)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    w = LedgerWorker(**kwargs)
    w.tick()
    conn.send(("ready", w.current, w.take_publish()))
    try:
        while True:
            if conn.poll(0.2):
                msg = conn.recv()
                if msg[0] == "stop":
                    break
                res = w.process(msg[1])
                delay = 0.05
                while res is None:  # the ledger refused the write (locked, connection lost): retry
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    if conn.poll(0) and conn.recv()[0] == "stop":
                        return
                    res = w.process(msg[1])
                conn.send(("done",) + tuple(res) + (w.take_publish(),))
            else:
                expired = w.process([])  # timers only
                pub = w.take_publish()
                if expired and (expired[1] or expired[2]["rejected"] or pub):
                    conn.send(("done",) + tuple(expired) + (pub,))
                elif pub:
                    conn.send(("done", [], {}, {}, {}, [], [], pub))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        w.close()
