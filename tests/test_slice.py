"""The thin end-to-end slice: MicroPython devices → Mosquitto → edge node → SQLite, with faults."""
import time

import paho.mqtt.client as mqtt

from edgepoi import cbor
from edgepoi_host.edge.ingest import EdgeNode
from edgepoi_host.sim import Fleet
from harness.faults import wait


def _publish(broker, topic, payload):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder")
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def test_three_micropython_devices_reach_the_ledger(broker, tmp_path):
    node = EdgeNode(broker.url, str(tmp_path / "edge.db")).start()
    fleet = Fleet(broker.url, count=3, workdir=str(tmp_path / "fleet"), period_s=0.05, messages=20).start()
    try:
        fleet.wait(60)
        for d in fleet.devices:
            assert d.proc.returncode == 0, d.log_text()
        assert wait(lambda: node.stats()["telemetry"] == 60), node.stats()
        for d in fleet.devices:
            assert node.store.telemetry_seqs(d.device_id) == list(range(1, 21))
        devs = {d["device_id"]: d for d in node.store.devices()}
        assert set(devs) == {"sim-01", "sim-02", "sim-03"}
        assert wait(lambda: all(d["status"] == "offline" for d in node.store.devices()))
        row = node.store.db.query_one("SELECT payload FROM telemetry WHERE device_id='sim-02' AND seq=5")
        msg = cbor.loads(row[0])
        assert msg["dev"] == "sim-02" and set(msg["readings"]) == {"temp_c", "humidity"}
    finally:
        fleet.stop()
        node.stop()


def test_garbage_is_rejected_with_a_reason_and_the_node_runs_on(broker, tmp_path):
    node = EdgeNode(broker.url, str(tmp_path / "edge.db")).start()
    try:
        _publish(broker, "edgepoi/v1/dev-9/telemetry", b"\xff\x00garbage")
        _publish(broker, "edgepoi/v1/dev-9/telemetry", cbor.dumps([1, 2, 3]))
        _publish(broker, "edgepoi/v1/dev-9/telemetry",
                 cbor.dumps({"dev": "dev-8", "seq": 1, "ts": 1, "readings": {}}))
        _publish(broker, "edgepoi/v1/dev-9/telemetry", cbor.dumps({"dev": "dev-9", "seq": -1, "ts": 1,
                                                                    "readings": {}}))
        _publish(broker, "edgepoi/v1/dev-9/status", b"sideways")
        good = cbor.dumps({"dev": "dev-9", "seq": 0, "ts": 1700000000, "readings": {"temp_c": 20.5}})
        _publish(broker, "edgepoi/v1/dev-9/telemetry", good)
        _publish(broker, "edgepoi/v1/dev-9/telemetry", good)  # a QoS 1 redelivery: stored once
        assert wait(lambda: node.counters["received"] == 7), node.counters
        s = node.stats()
        assert node.worker_alive()
        assert s["rejected_by_reason"] == {"not_cbor": 1, "bad_schema": 2, "device_mismatch": 1,
                                           "bad_status": 1}
        assert s["telemetry"] == 1 and node.counters["duplicates"] == 1
        assert node.worker_alive()
    finally:
        node.stop()


def test_broker_kills_mid_run_lose_no_reading(broker, tmp_path):
    node = EdgeNode(broker.url, str(tmp_path / "edge.db")).start()
    fleet = Fleet(broker.url, count=2, workdir=str(tmp_path / "fleet"), period_s=0.02, messages=150).start()
    try:
        for stored in (20, 80):
            assert wait(lambda: node.stats()["telemetry"] >= stored), node.stats()
            broker.kill()
            time.sleep(0.3)
            broker.start()
        fleet.wait(120)
        for d in fleet.devices:
            assert d.proc.returncode == 0, d.log_text()
        # store-and-forward with edge acks: every reading arrives, whatever the broker had not saved
        assert wait(lambda: node.stats()["telemetry"] == 300, 30), node.stats()
        for d in fleet.devices:
            assert node.store.telemetry_seqs(d.device_id) == list(range(1, 151))
    finally:
        fleet.stop()
        node.stop()
