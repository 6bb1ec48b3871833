"""The device link (CPython here; under MicroPython in the fleet tests) against a real Mosquitto."""
import time

import paho.mqtt.client as mqtt

from edgepoi import cbor
from edgepoi.link.flashq import FlashQueue
from edgepoi.link.link import Link
from edgepoi_host.edge.ingest import EdgeNode


def _pump(link, until, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link.step(wait_ms=5)
        if until():
            return True
    return False


def _record(dev, seq):
    body = cbor.dumps({"dev": dev, "seq": seq, "ts": 1700000000 + seq, "readings": {"v": seq}})
    return Link.record([("edgepoi/v1/%s/telemetry" % dev, body, False)])


def test_edge_acked_queue_survives_three_broker_kills(broker, tmp_path):
    node = EdgeNode(broker.url, str(tmp_path / "edge.db")).start()
    q = FlashQueue(str(tmp_path / "q"), max_bytes=256 * 1024)
    link = Link("d1", broker.host, broker.port, q, keepalive=5, status_topic="edgepoi/v1/d1/status",
                backoff_min_ms=20, backoff_max_ms=200, ack_topic="edgepoi/v1/d1/ack", resend_ms=1000)
    seq = 0
    try:
        for _ in range(3):
            for _ in range(100):
                seq += 1
                q.append(seq, _record("d1", seq))
                link.step()
            broker.kill()
            for _ in range(20):  # produced while the broker is down: queued on flash
                seq += 1
                q.append(seq, _record("d1", seq))
                link.step()
            assert not link.connected
            broker.start()
        assert _pump(link, lambda: link.drained(), 60), (link.stats, link.last_error, q.pending_count)
        assert node.store.telemetry_seqs("d1") == list(range(1, seq + 1))
        assert link.stats["failures"] >= 3 and link.stats["resent"] > 0
    finally:
        link.close()
        node.stop()


def test_without_edge_acks_a_broker_puback_releases_the_record(broker, tmp_path):
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sub")
    sub.on_message = lambda c, u, m: got.append(bytes(m.payload))
    sub.connect(broker.host, broker.port)
    sub.subscribe("edgepoi/v1/d2/telemetry", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    q = FlashQueue(str(tmp_path / "q"))
    link = Link("d2", broker.host, broker.port, q, window=4)
    for seq in range(1, 51):
        q.append(seq, _record("d2", seq))
    try:
        assert _pump(link, lambda: link.drained() and len(got) >= 50)
        assert q.acked == 50 and q.pending_count == 0
        assert [cbor.loads(p)["seq"] for p in got] == list(range(1, 51))  # in order
    finally:
        link.close()
        sub.loop_stop()


def test_last_will_marks_a_vanished_device_offline(broker, tmp_path):
    seen = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
    sub.on_message = lambda c, u, m: seen.append((bytes(m.payload), m.retain))
    sub.connect(broker.host, broker.port)
    sub.subscribe("edgepoi/v1/d3/status", qos=1)
    sub.loop_start()
    link = Link("d3", broker.host, broker.port, FlashQueue(str(tmp_path / "q")), keepalive=1,
                status_topic="edgepoi/v1/d3/status")
    try:
        assert _pump(link, lambda: (b"online", False) in seen)
        link.sock.close()  # the device vanishes without DISCONNECT (Wi-Fi gone)
        link.sock = None
        deadline = time.monotonic() + 10
        while (b"offline", False) not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (b"offline", False) in seen, seen
    finally:
        sub.loop_stop()


def test_a_message_whose_handler_ran_out_of_memory_is_delivered_again(broker, tmp_path):
    # the link acknowledges a command only once handled: a MemoryError in the handler drops the
    # connection without the PUBACK, and the broker redelivers it to the persistent session
    calls = []

    def handler(topic, payload, retain):
        calls.append(bytes(payload))
        if len(calls) == 1:
            raise MemoryError("memory allocation failed")

    q = FlashQueue(str(tmp_path / "q"))
    link = Link("d3", broker.host, broker.port, q, subscriptions=["edgepoi/v1/d3/cmd/+"], on_message=handler,
                backoff_min_ms=20)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="console")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        assert _pump(link, lambda: link.connected and not link.session.inflight)
        time.sleep(0.3)                                 # the SUBACK is in: the subscription is active
        pub.publish("edgepoi/v1/d3/cmd/ping", b"once", qos=1).wait_for_publish(5)
        assert _pump(link, lambda: len(calls) == 2)
        assert calls == [b"once", b"once"] and link.stats["failures"] == 1
        assert link.last_error == "out of memory" and link.connected
        assert not _pump(link, lambda: len(calls) > 2, timeout=1.0)   # acknowledged the second time
    finally:
        pub.loop_stop()
        link.close()
