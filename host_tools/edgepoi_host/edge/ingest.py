"""The edge node's ingest service: a persistent QoS 1 MQTT session feeding the ledger in batches.

Usage::

    node = EdgeNode("mqtt://127.0.0.1:1883", "edge.db")     # or a postgresql:// URL
    node.start()        # paho network loop here, the ledger worker in its own process
    node.stats()
    node.stop()

Design: paho's network thread only enqueues. A forwarder thread hands batches to the ledger worker
(``worker.py``, a separate process so signature checks and the database use the second core), which
checks every message — ``validate`` for telemetry and status, ``verify.AttestationGate`` for attestations:
registered key, signature, beacon freshness, sequence and hash chain — stores the batch, accepted and
rejected alike, in one transaction, and answers with what may be acknowledged. Only then are the batch's
QoS 1 messages acknowledged (manual acks) and each device told how far its records are stored
(``edgepoi/v1/<id>/ack``). So killing the node loses nothing: the broker redelivers what was not
acknowledged and the ledger ignores duplicates. Nothing here raises on a bad message; it is stored as
rejected with a reason and counted.

MQTT v5 shared subscriptions (``shared="group"``: topics subscribed as ``$share/group/...``, a distinct client
id per node, ``beacon=False`` on all but one) let several edge nodes on one ledger split the broker's load.
The broker spreads a device's messages over the nodes, so in this mode each node reads the device's chain
state from the database before checking an attestation, holds one that arrives before its predecessor was
stored by another node and re-checks it as the database moves, never moves ``chain_state`` backwards, and
requires a device's first attestation to start its chain (prev = zeros).
"""
import logging
import queue
import threading
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgepoi import cbor
from edgepoi_host.edge import db as dblib
from edgepoi_host.edge.registry import Registry
from edgepoi_host.edge.store import Ledger
from edgepoi_host.edge.worker import spawn as spawn_worker

log = logging.getLogger("edgepoi.edge")

TOPICS = ["edgepoi/v1/+/telemetry", "edgepoi/v1/+/status", "edgepoi/v1/+/attest",
          "edgepoi/v1/+/cmd/+/result"]
COUNTERS = ("received", "stored", "attested", "duplicates", "rejected")


def parse_broker_url(url):
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError("broker URL must be mqtt://HOST[:PORT], got %r" % url)
    return u.hostname or "127.0.0.1", u.port or (8883 if u.scheme == "mqtts" else 1883), u


class EdgeNode:
    def __init__(self, broker_url, db_url, client_id="edgepoi-edge", batch_max=1000, batch_wait=0.02,
                 username=None, password=None, epoch_seconds=600.0, beacon_keep=2, gap_timeout=30.0,
                 shared=None, tls=None, beacon=True, max_outstanding=4, models_dir=None, audit_rate=0.05,
                 audit_timeout=30.0):
        self.host, self.port, _ = parse_broker_url(broker_url)
        self.db_url = db_url
        self.db = dblib.connect(db_url)
        self.ledger = Ledger(self.db)      # migrations run here, before the worker starts
        self.registry = Registry(self.db)
        self.store = self.ledger           # read access for views and tests
        self.client_id = client_id
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.shared = shared
        self.auditor = None
        if models_dir:
            from edgepoi_host.edge.audit import Auditor
            self.auditor = Auditor(self.ledger, self.registry, self._publish_cmd, models_dir, audit_rate,
                                   audit_timeout)
        self.worker_args = dict(db_url=db_url, gap_timeout=gap_timeout, beacon_keep=beacon_keep,
                                epoch_seconds=epoch_seconds, beacon=beacon,
                                audit_rate=audit_rate if models_dir else 0.0, shared=bool(shared))
        self.inbox = queue.Queue()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.counters["held"] = 0
        self.latest = {}                   # device_id -> last accepted telemetry map (for live views)
        self.result_handlers = []          # callables(device_id, "cmd/<name>/result", payload)
        self.beacon_current = None
        self.connected = threading.Event()
        self._slots = threading.Semaphore(max_outstanding)  # batches the worker has not answered yet
        self._outstanding = 0
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._proc = None
        self._conn = None
        self._retained = []                # beacon messages to (re)publish on every connect
        self._next_expire = 0.0
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
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(0.1, 2.0)

    def _publish_cmd(self, topic, payload):
        self.client.publish(topic, payload, qos=1)

    # -- paho thread -------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.warning("broker refused the edge node: %s", reason_code)
            return
        prefix = "$share/%s/" % self.shared if self.shared else ""
        client.subscribe([(prefix + t, mqtt.SubscribeOptions(qos=1)) for t in TOPICS])
        for topic, payload, retain in self._retained[-1:]:
            client.publish(topic, payload, qos=1, retain=retain)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        if any(rc.is_failure for rc in reason_codes):
            log.warning("broker refused a subscription of the edge node: %s", reason_codes)
        self.connected.set()  # subscribed: from now on nothing published to the devices' topics is missed

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        self.inbox.put((msg.topic, bytes(msg.payload), msg.qos, msg.mid, time.time()))

    # -- to and from the worker --------------------------------------------------------------
    def _forward_loop(self):
        while not self._stop.is_set():
            try:
                batch = [self.inbox.get(timeout=0.1)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + self.batch_wait
            while len(batch) < self.batch_max:
                try:
                    batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            while not self._slots.acquire(timeout=0.1):
                if self._stop.is_set():
                    return
            with self._count_lock:
                self._outstanding += 1
            try:
                self._conn.send(("batch", batch))
            except (OSError, ValueError):
                return

    def _result_loop(self):
        while not self._stop.is_set():
            try:
                if not self._conn.poll(0.1):
                    self._expire_audits()
                    continue
                msg = self._conn.recv()
            except (EOFError, OSError):
                if not self._stop.is_set():
                    log.error("ledger worker died; messages stay unacknowledged at the broker")
                return
            _, mids, acks, counters, latest, results, audits, publish = msg
            if mids or counters.get("received"):  # the answer to a batch (not a timer-only report)
                with self._count_lock:
                    self._outstanding -= 1
                self._slots.release()
            for mid in mids:
                self.client.ack(mid, 1)
            for dev, upto in acks.items():
                self.client.publish("edgepoi/v1/%s/ack" % dev, cbor.dumps({"upto": upto}), qos=1)
            for topic, payload, retain in publish:
                self._retained.append((topic, payload, retain))
                del self._retained[:-1]
                self.client.publish(topic, payload, qos=1, retain=retain)
                self.beacon_current = cbor.loads(payload)
            for k, v in counters.items():
                if k == "held":
                    self.counters[k] = v
                else:
                    self.counters[k] += v
            self.latest.update(latest)
            handlers = list(self.result_handlers)
            if self.auditor is not None:
                for dev, seq, claims in audits:
                    self.auditor.consider(dev, seq, claims, force=True)
                handlers.append(self._audit_result)
            for dev, kind, payload in results:
                for handler in handlers:
                    try:
                        handler(dev, kind, payload)
                    except Exception:  # noqa: BLE001
                        log.exception("command result handler failed")
            self._expire_audits()

    def _expire_audits(self):
        if self.auditor is not None and time.monotonic() >= self._next_expire:
            self._next_expire = time.monotonic() + 1.0
            self.auditor.expire()

    def _audit_result(self, dev, kind, payload):
        # re-execution can take a while: keep it off the result loop
        threading.Thread(target=self.auditor.on_result, args=(dev, kind, payload), daemon=True).start()

    @property
    def beacon(self):
        """(epoch, nonce) of the current beacon, or None before the worker published one."""
        b = self.beacon_current
        return (b["epoch"], b["nonce"]) if b else None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, wait=20.0):
        self._proc, self._conn = spawn_worker(self.worker_args)
        if not self._conn.poll(wait):
            raise RuntimeError("the ledger worker did not start")
        ready = self._conn.recv()
        for topic, payload, retain in ready[2]:
            self._retained.append((topic, payload, retain))
            self.beacon_current = cbor.loads(payload)
        if ready[1] and not self._retained:
            self.beacon_current = {"epoch": ready[1][0], "nonce": ready[1][1]}
            if self.worker_args["beacon"]:
                self._retained.append(("edgepoi/v1/edge/beacon", cbor.dumps(
                    {"epoch": ready[1][0], "nonce": ready[1][1], "t": int(time.time())}), True))
        self._stop.clear()
        for target, name in ((self._forward_loop, "edge-forward"), (self._result_loop, "edge-results")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False,
                                  properties=_session_properties())
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            self.stop()
            raise ConnectionError("edge node could not reach the broker at %s:%d" % (self.host, self.port))
        return self

    def drain(self, timeout=10.0):
        """Wait until everything received so far is processed (tests, clean shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.inbox.empty() and self._outstanding == 0:
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._threads = []
        if self._conn is not None:
            try:
                self._conn.send(("stop",))
            except (OSError, ValueError):
                pass
        if self._proc is not None:
            try:
                self._proc.wait(10)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
                self._proc.kill()
                self._proc.wait()
        self.db.close()

    def stats(self):
        s = self.ledger.stats()
        s["session"] = dict(self.counters)
        s["held_attestations"] = self.counters["held"]
        return s

    def worker_alive(self):
        return self._proc is not None and self._proc.poll() is None


def _session_properties():
    """MQTT v5: keep the session (and what queues for it) for a day after a disconnect."""
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 86400
    return p
