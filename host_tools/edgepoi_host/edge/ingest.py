"""The edge node's ingest service: a persistent QoS 1 MQTT session feeding the ledger in batches.

Usage::

    node = EdgeNode("mqtt://127.0.0.1:1883", "edge.db")
    node.start()        # background threads: paho network loop + ledger writer
    node.stats()
    node.stop()

Design: paho's network thread only enqueues; a writer thread decodes, checks (``validate``), and stores a
batch in one transaction, then acknowledges the batch's QoS 1 messages (manual acks). A message is
acknowledged only once it is committed, so killing the node loses nothing: the broker redelivers what was
not acknowledged, and the ledger ignores the duplicates. The callback never raises; bad messages are
stored as rejected with a reason and counted.
"""
import logging
import queue
import threading
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from edgepoi import cbor
from edgepoi_host.edge import validate
from edgepoi_host.edge.store import Store

log = logging.getLogger("edgepoi.edge")

SUBSCRIPTIONS = ["edgepoi/v1/+/telemetry", "edgepoi/v1/+/status"]


def parse_broker_url(url):
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError("broker URL must be mqtt://HOST[:PORT], got %r" % url)
    return u.hostname or "127.0.0.1", u.port or (8883 if u.scheme == "mqtts" else 1883), u


class ContiguousAcks:
    """Per device and kind: the highest sequence number up to which every message is stored."""

    def __init__(self, store):
        self.store = store
        self._state = {}  # (device, kind) -> [upto, set of stored seqs above upto + 1]

    def advance(self, device_id, kind, seqs):
        key = (device_id, kind)
        st = self._state.get(key)
        if st is None:
            known = self.store.telemetry_seqs(device_id)  # includes this batch (already committed)
            st = self._state[key] = [min(known) - 1 if known else min(seqs) - 1, set(known)]
        st[1].update(seqs)
        upto, above = st
        while upto + 1 in above:
            upto += 1
            above.discard(upto)
        st[0] = upto
        above.difference_update([s for s in above if s <= upto])
        return upto


class EdgeNode:
    def __init__(self, broker_url, db_path, client_id="edgepoi-edge", batch_max=500, batch_wait=0.05):
        self.host, self.port, _ = parse_broker_url(broker_url)
        self.store = Store(db_path)
        self.client_id = client_id
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.inbox = queue.Queue()
        self.counters = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0}
        self.latest = {}  # device_id -> last accepted telemetry map (for live views)
        self.acks = ContiguousAcks(self.store)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._writer = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(0.1, 2.0)

    # -- paho thread -------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.warning("broker refused the edge node: %s", reason_code)
            return
        client.subscribe([(t, 1) for t in SUBSCRIPTIONS])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        self.inbox.put((msg.topic, bytes(msg.payload), msg.qos, msg.mid, time.time()))

    # -- writer thread -----------------------------------------------------------------------
    def _writer_loop(self):
        while not self._stop.is_set() or not self.inbox.empty():
            try:
                first = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.batch_wait
            while len(batch) < self.batch_max:
                try:
                    batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self._process(batch)

    def _process(self, batch):
        telemetry, rejected, statuses = [], [], []
        for topic, payload, qos, mid, at in batch:
            try:
                dev, kind = validate.parse_topic(topic)
                if kind == "telemetry":
                    msg = validate.telemetry(dev, payload)
                    telemetry.append((dev, msg["seq"], msg["ts"], at, payload))
                    self.latest[dev] = msg
                elif kind == "status":
                    statuses.append((dev, validate.status(payload), at))
                else:  # attestations: verified ingest arrives with the Edge node issue
                    raise validate.Rejected("unsupported", "no handler for %s yet" % kind)
            except validate.Rejected as r:
                rejected.append((topic, r.reason, r.detail, at, payload))
            except Exception as e:  # noqa: BLE001 - the ingest never dies on one message
                log.exception("unexpected error on %s", topic)
                rejected.append((topic, "internal_error", repr(e)[:200], at, payload))
        try:
            new = self.store.write_batch(telemetry, rejected, statuses)
        except Exception:  # noqa: BLE001 - leave unacknowledged: the broker redelivers after restart
            log.exception("ledger write failed; %d messages left unacknowledged", len(batch))
            return
        self.counters["received"] += len(batch)
        self.counters["stored"] += new
        self.counters["duplicates"] += len(telemetry) - new
        self.counters["rejected"] += len(rejected)
        for _topic, _payload, qos, mid, _at in batch:
            if qos:
                self.client.ack(mid, qos)
        self._publish_acks(telemetry)

    def _publish_acks(self, telemetry):
        """Tell each device how far its records are safely stored (``edgepoi/v1/<id>/ack``).

        Per kind, the ack is the highest sequence number up to which the ledger holds every message
        since the device's first; devices drop queued records only once acked, so a broker that dies
        before persisting what it acknowledged loses nothing.
        """
        touched = {}
        for dev, seq, _ts, _at, _payload in telemetry:
            touched.setdefault(dev, []).append(seq)
        for dev, seqs in touched.items():
            upto = self.acks.advance(dev, "telemetry", seqs)
            self.client.publish("edgepoi/v1/%s/ack" % dev, cbor.dumps({"telemetry": upto}), qos=1)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, wait=10.0):
        self._stop.clear()
        self._writer = threading.Thread(target=self._writer_loop, name="edge-writer", daemon=True)
        self._writer.start()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            raise ConnectionError("edge node could not reach the broker at %s:%d" % (self.host, self.port))
        return self

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()
        self._stop.set()
        if self._writer:
            self._writer.join(10)
        self.store.close()

    def stats(self):
        s = self.store.stats()
        s["session"] = dict(self.counters)
        return s
