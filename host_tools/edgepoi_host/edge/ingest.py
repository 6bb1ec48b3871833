"""The edge node's ingest service: a persistent QoS 1 MQTT session feeding the ledger in batches.

Usage::

    node = EdgeNode("mqtt://127.0.0.1:1883", "edge.db")     # or a postgresql:// URL
    node.start()        # background threads: paho network loop, ledger writer, beacon
    node.stats()
    node.stop()

Design: paho's network thread only enqueues. A writer thread takes batches, checks every message
(``validate`` for telemetry and status, ``verify.AttestationGate`` for attestations: registered key,
signature, beacon freshness, sequence and hash chain), stores the batch — accepted and rejected alike —
in one transaction, then acknowledges its QoS 1 messages (manual acks) and tells each device how far its
records are stored (``edgepoi/v1/<id>/ack``). A message is acknowledged only once committed, so killing
the node loses nothing: the broker redelivers what was not acknowledged and the ledger ignores
duplicates. The callback never raises; a bad message is stored as rejected with a reason and counted.

Several edge workers can split the load: with ``shared="group"`` they subscribe with MQTT v5 shared
subscriptions (``$share/group/...``) under distinct client ids.
"""
import logging
import queue
import threading
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from edgepoi import cbor
from edgepoi_host.edge import db as dblib
from edgepoi_host.edge import validate
from edgepoi_host.edge.beacon import Beacon
from edgepoi_host.edge.registry import Registry
from edgepoi_host.edge.store import Ledger
from edgepoi_host.edge.verify import FINAL_REASONS, AttestationGate, BeaconPolicy

log = logging.getLogger("edgepoi.edge")

TOPICS = ["edgepoi/v1/+/telemetry", "edgepoi/v1/+/status", "edgepoi/v1/+/attest", "edgepoi/v1/+/cmd/+/result"]


def parse_broker_url(url):
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError("broker URL must be mqtt://HOST[:PORT], got %r" % url)
    return u.hostname or "127.0.0.1", u.port or (8883 if u.scheme == "mqtts" else 1883), u


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


class EdgeNode:
    def __init__(self, broker_url, db_url, client_id="edgepoi-edge", batch_max=500, batch_wait=0.05,
                 username=None, password=None, epoch_seconds=600.0, beacon_keep=2, gap_timeout=30.0,
                 shared=None, tls=None, beacon=True):
        self.host, self.port, _ = parse_broker_url(broker_url)
        self.db = db_url if isinstance(db_url, dblib.Database) else dblib.connect(db_url)
        self.ledger = Ledger(self.db)
        self.registry = Registry(self.db)
        self.store = self.ledger  # read access for views and tests
        self.client_id = client_id
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.shared = shared
        self.inbox = queue.Queue()
        self.counters = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0, "attested": 0}
        self.latest = {}  # device_id -> last accepted telemetry map (for live views)
        self.result_handlers = []  # callables(device_id, command, payload) for cmd/<name>/result
        self.policy = BeaconPolicy(beacon_keep)
        self.beacon = Beacon(self.ledger, self.policy, self._publish, epoch_seconds) if beacon else None
        if not beacon:
            self.policy = None
        self.gate = AttestationGate(self.registry, self.ledger.chain_states(), self.policy, gap_timeout,
                                    flagged=self.registry.flagged())
        self.acks = ContiguousAcks(self._known_seqs)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._writer = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(**tls)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(0.1, 2.0)

    def _known_seqs(self, device_id, kind):
        if kind == "telemetry":
            return self.ledger.telemetry_seqs(device_id)
        return self.ledger.attestation_seqs(device_id, ("accepted", "verified", "flagged", "fraudulent"))

    def _publish(self, topic, payload, retain=False):
        self.client.publish(topic, payload, qos=1, retain=retain)

    # -- paho thread -------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.warning("broker refused the edge node: %s", reason_code)
            return
        prefix = "$share/%s/" % self.shared if self.shared else ""
        client.subscribe([(prefix + t, mqtt.SubscribeOptions(qos=1)) for t in TOPICS])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        self.inbox.put((msg.topic, bytes(msg.payload), msg.qos, msg.mid, time.time()))

    # -- writer thread -----------------------------------------------------------------------
    def _writer_loop(self):
        next_expire = time.monotonic() + 1
        while not self._stop.is_set() or not self.inbox.empty():
            try:
                first = self.inbox.get(timeout=0.1)
            except queue.Empty:
                first = None
            batch = [first] if first else []
            deadline = time.monotonic() + self.batch_wait
            while batch and len(batch) < self.batch_max:
                try:
                    batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            expired = []
            if time.monotonic() >= next_expire:
                next_expire = time.monotonic() + 1
                expired = self.gate.expire()
            if batch or expired:
                self._process(batch, expired)

    def _process(self, batch, expired=()):
        telemetry, attests, rejected, statuses, results = [], [], [], [], []
        handled = {}  # device -> {"telemetry": [seqs], "attest": [seqs]} for the device acks
        for topic, payload, qos, mid, at in batch:
            try:
                dev, kind = validate.parse_topic(topic)
                if kind == "telemetry":
                    msg = validate.telemetry(dev, payload)
                    telemetry.append((dev, msg["seq"], msg["ts"], at, payload))
                    handled.setdefault(dev, {}).setdefault("telemetry", []).append(msg["seq"])
                    self.latest[dev] = msg
                elif kind == "attest":
                    for outcome in self.gate.check(dev, payload, at):
                        self._attest_outcome(dev, topic, at, outcome, attests, rejected, handled)
                elif kind == "status":
                    statuses.append((dev, validate.status(payload), at))
                else:
                    results.append((dev, kind, payload))
            except validate.Rejected as r:
                rejected.append((topic, None, r.reason, r.detail, at, payload))
            except Exception as e:  # noqa: BLE001 - the ingest never dies on one message
                log.exception("unexpected error on %s", topic)
                rejected.append((topic, None, "internal_error", repr(e)[:200], at, payload))
        for dev, outcome, at in expired:  # held back too long: sequence_gap (and what that released)
            self._attest_outcome(dev, "edgepoi/v1/%s/attest" % dev, at, outcome, attests, rejected, handled)
        try:
            new_t, new_a = self.ledger.write_batch(telemetry, [a[:8] for a in attests], rejected,
                                                   statuses, self.gate.take_chain_updates())
        except Exception:  # noqa: BLE001 - leave unacknowledged: the broker redelivers after restart
            log.exception("ledger write failed; %d messages left unacknowledged", len(batch))
            return
        self.counters["received"] += len(batch)
        self.counters["stored"] += new_t
        self.counters["attested"] += new_a
        self.counters["duplicates"] += len(telemetry) - new_t
        self.counters["rejected"] += len(rejected)
        for _topic, _payload, qos, mid, _at in batch:
            if qos:
                self.client.ack(mid, qos)
        for dev, kinds in handled.items():
            acks = {k: self.acks.advance(dev, k, seqs) for k, seqs in kinds.items()}
            self.client.publish("edgepoi/v1/%s/ack" % dev, cbor.dumps(acks), qos=1)
        for dev, kind, payload in results:
            for handler in self.result_handlers:
                try:
                    handler(dev, kind, payload)
                except Exception:  # noqa: BLE001
                    log.exception("command result handler failed")

    def _attest_outcome(self, dev, topic, at, outcome, attests, rejected, handled):
        kind, seq, data, payload = outcome
        if kind == "accepted":
            attests.append(data)
            handled.setdefault(dev, {}).setdefault("attest", []).append(seq)
            return
        reason, detail = data
        rejected.append((topic, dev, reason, detail, at, payload))
        if seq is not None and reason in FINAL_REASONS:
            handled.setdefault(dev, {}).setdefault("attest", []).append(seq)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, wait=10.0):
        self._stop.clear()
        self._writer = threading.Thread(target=self._writer_loop, name="edge-writer", daemon=True)
        self._writer.start()
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False,
                                  properties=_session_properties())
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            raise ConnectionError("edge node could not reach the broker at %s:%d" % (self.host, self.port))
        if self.beacon is not None:
            self.beacon.start()
        return self

    def stop(self):
        if self.beacon is not None:
            self.beacon.stop()
        self.client.disconnect()
        self.client.loop_stop()
        self._stop.set()
        if self._writer:
            self._writer.join(10)
        self.db.close()

    def stats(self):
        s = self.ledger.stats()
        s["session"] = dict(self.counters)
        s["held_attestations"] = self.gate.held_count()
        return s


def _session_properties():
    """MQTT v5: keep the session (and what queues for it) for a day after a disconnect."""
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 86400
    return p
