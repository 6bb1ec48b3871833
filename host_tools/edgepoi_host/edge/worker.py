"""The edge node's ledger worker: checks and stores message batches, in its own process.

The MQTT side (``ingest.EdgeNode``) only receives and acknowledges; this worker decodes, verifies every
attestation (signature, key, beacon, sequence, hash chain), writes each batch in one transaction and
answers with what may now be acknowledged. Running it in a separate process lets signature checking and
the database use the second core while paho's network loop keeps the first.

Protocol over a ``multiprocessing`` pipe (pickled tuples):
    main -> worker: ("batch", [(topic, payload, qos, mid, received_at), ...]) | ("stop",)
    worker -> main: ("done", mids, device_acks, counters, latest, results, audits, publish) | ("ready", ...)
where device_acks = {device_id: upto}, publish = [(topic, payload, retain)]
(beacons), latest = {device_id: telemetry map}, results = [(device_id, command, payload)], audits =
[(device_id, seq, claims)] — accepted attestations sampled for a re-execution audit (``audit_rate``).
"""
import logging
import time

from edgepoi_host.edge import db as dblib
from edgepoi_host.edge import validate
from edgepoi_host.edge.beacon import BEACON_TOPIC, beacon_payload
from edgepoi_host.edge.registry import Registry
from edgepoi_host.edge.store import Ledger
from edgepoi_host.edge.verify import FINAL_REASONS, AttestationGate, BeaconPolicy

log = logging.getLogger("edgepoi.edge.worker")


class RecordAcks:
    """Per device: the highest record id (cycle sequence number) up to which every record is handled.

    A record is handled when its telemetry is stored and, if the telemetry says the cycle carried an
    attestation (``"a": true``), that attestation is handled too (accepted, a duplicate, or refused for
    good). ``upto`` is kept in the ledger (``device_acks``) so it survives a restart of the node.
    """

    def __init__(self, load):
        self.load = load  # function(device_id) -> stored upto or None
        self._state = {}  # device -> [upto, {seq: needs_attest}, {attested seqs}]

    def advance(self, device_id, telemetry, attested):
        st = self._state.get(device_id)
        if st is None:
            upto = self.load(device_id)
            if upto is None:
                upto = min([s for s, _a in telemetry] or [min(attested)]) - 1
            st = self._state[device_id] = [upto, {}, set()]
        upto, tele, att = st
        for seq, needs in telemetry:
            if seq > upto:
                tele[seq] = needs
        att.update(s for s in attested if s > upto)
        while upto + 1 in tele and (not tele[upto + 1] or upto + 1 in att):
            upto += 1
            del tele[upto]
            att.discard(upto)
        st[0] = upto
        return upto


class LedgerWorker:
    def __init__(self, db_url, gap_timeout=30.0, beacon_keep=2, epoch_seconds=600.0, beacon=True,
                 audit_rate=0.0, shared=False):
        self.db = dblib.connect(db_url)
        self.ledger = Ledger(self.db)
        self.registry = Registry(self.db)
        self.policy = BeaconPolicy(beacon_keep) if beacon or beacon_keep else None
        self.epoch_seconds = epoch_seconds
        self.publishes_beacon = beacon
        self.gate = AttestationGate(self.registry, self.ledger.chain_states(), self.policy, gap_timeout,
                                    flagged=self.registry.flagged(), stored_hash=self.ledger.attestation_hash,
                                    fresh_state=self.ledger.chain_state if shared else None)
        self.acks = RecordAcks(self.ledger.device_ack)
        self.current = None
        for epoch, nonce in self.ledger.recent_beacons(beacon_keep):
            self.policy.add(epoch, nonce)
            self.current = (epoch, nonce)
        self._next_rotation = time.monotonic() + epoch_seconds
        self._next_refresh = time.monotonic() + 1.0
        self._next_held = time.monotonic()
        self.publish = []
        self.duplicates = 0
        self.audit_rate = audit_rate
        self._rng = None
        if audit_rate > 0:
            import random
            self._rng = random.SystemRandom()

    # -- beacons -------------------------------------------------------------------------------
    def beacon_payload(self):
        return beacon_payload(*self.current)

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
        released = []
        if self.gate.fresh_state is not None and self.gate.held and now >= self._next_held:
            self._next_held = now + 0.2
            released = [(dev, o, time.time()) for dev, o in self.gate.refresh_held()]
        if now >= self._next_refresh:
            self._next_refresh = now + 1.0
            self.gate.flagged = self.registry.flagged()
            if self.policy is not None and not self.publishes_beacon:  # another worker owns the beacon
                for epoch, nonce in self.ledger.recent_beacons(self.policy.keep):
                    self.policy.add(epoch, nonce)
            return released + self.gate.expire()
        return released

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
                    handled.setdefault(dev, ([], []))[0].append((msg["seq"], msg.get("a") is True))
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
        snapshot = {d: (list(st[0:1]) + [dict(st[1]), set(st[2])]) for d, st in self.acks._state.items()
                    if d in handled}
        acks = {}
        for dev, (tele, att) in handled.items():
            acks[dev] = self.acks.advance(dev, tele, att)
        try:
            new_t, new_a = self.ledger.write_batch(telemetry, [a[:8] for a in attests], rejected,
                                                   statuses, self.gate.take_chain_updates(),
                                                   list(acks.items()))
        except Exception:  # noqa: BLE001 - nothing acknowledged; the caller retries the batch
            log.exception("ledger write failed; %d messages left unacknowledged", len(batch))
            self.gate.rollback()
            self.duplicates = 0
            for d in handled:
                if d in snapshot:
                    self.acks._state[d] = snapshot[d]
                else:
                    self.acks._state.pop(d, None)
            return None
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
            handled.setdefault(dev, ([], []))[1].append(seq)
            return
        if kind == "accepted":
            attests.append(data)
            handled.setdefault(dev, ([], []))[1].append(seq)
            return
        reason, detail = data
        rejected.append((topic, dev, reason, detail, at, payload))
        if seq is not None and reason in FINAL_REASONS:
            handled.setdefault(dev, ([], []))[1].append(seq)

    def take_publish(self):
        out, self.publish = self.publish, []
        return out

    def close(self):
        self.db.close()


def spawn(kwargs):
    """Start the worker as ``python -m edgepoi_host.edge.worker`` on one end of a socket pair.

    A plain subprocess (not multiprocessing's spawn) so that a program embedding EdgeNode needs no
    ``if __name__ == "__main__"`` guard. Returns (Popen, Connection). The worker exits when the
    connection closes, i.e. when the edge node's process dies.
    """
    import socket
    import subprocess
    import sys
    from multiprocessing.connection import Connection
    parent, child = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-m", "edgepoi_host.edge.worker", str(child.fileno())],
                            pass_fds=[child.fileno()], stdin=subprocess.DEVNULL)
    child.close()
    conn = Connection(parent.detach())
    conn.send(kwargs)
    return proc, conn


def main(fd):
    from multiprocessing.connection import Connection
    conn = Connection(fd)
    serve(conn, conn.recv())


def serve(conn, kwargs):
    """Worker process main loop."""
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


if __name__ == "__main__":
    import sys
    main(int(sys.argv[1]))
