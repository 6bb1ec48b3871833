"""Two edge nodes on one ledger split the broker's load with MQTT v5 shared subscriptions, and every
device's attestation chain is still checked whole: nothing is rejected, nothing stored twice."""
import time

import paho.mqtt.client as mqtt

from edgepoi import attest, cbor
from edgepoi.counter import MemoryCounter
from edgepoi.keys import open_key
from edgepoi_host.edge.ingest import EdgeNode


def test_two_shared_nodes_verify_chains_across_each_other(broker, tmp_path):
    db = "sqlite:///" + str(tmp_path / "edge.db")
    a = EdgeNode(broker.url, db, client_id="edge-a", shared="edge")
    b = EdgeNode(broker.url, db, client_id="edge-b", shared="edge", beacon=False)
    devices = {}
    for i in range(3):
        dev = "shared-%d" % i
        key = open_key("file:" + str(tmp_path / (dev + ".pem")))
        a.registry.register(dev, key.public_key())
        devices[dev] = attest.Attester(key, dev, MemoryCounter(), attest.MemoryStore())
    a.start()
    b.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        deadline = time.monotonic() + 10
        while a.beacon is None and time.monotonic() < deadline:
            time.sleep(0.05)
        epoch, nonce = a.beacon
        for seq in range(1, 41):
            for dev, att in devices.items():
                pub.publish("edgepoi/v1/%s/telemetry" % dev, cbor.dumps(
                    {"dev": dev, "seq": seq, "ts": 1, "readings": {}, "a": True}), qos=1)
                pub.publish("edgepoi/v1/%s/attest" % dev, att.attest(b"\x11" * 32, b"\x22" * 32, b"\x01",
                                                                     10, "ref", True, epoch, nonce), qos=1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = a.stats()
            if s["attestations"] == 120 and s["telemetry"] == 120 or s["rejected"]:
                break
            time.sleep(0.1)
        s = a.stats()
        assert (s["telemetry"], s["attestations"], s["rejected"]) == (120, 120, 0), s["rejected_by_reason"]
        for dev in devices:
            assert a.store.attestation_seqs(dev) == list(range(1, 41))
        # both nodes did part of the work
        assert a.counters["received"] > 0 and b.counters["received"] > 0, (a.counters, b.counters)
    finally:
        pub.loop_stop()
        a.stop()
        b.stop()
