"""Verified ingest against a real Mosquitto, on SQLite and on PostgreSQL: every way an attestation can be
wrong is rejected with its reason; out-of-order delivery is tolerated; the node survives SIGKILL."""
import time

import paho.mqtt.client as mqtt
import pytest

from edgepoi import attest, cbor
from edgepoi.counter import MemoryCounter
from edgepoi.keys import open_key
from edgepoi_host.edge.ingest import EdgeNode
from harness.faults import wait

MODEL = b"\x11" * 32


class Device:
    def __init__(self, tmp_path, dev_id, node):
        self.id = dev_id
        self.key = open_key("file:" + str(tmp_path / (dev_id + ".pem")))
        self.att = attest.Attester(self.key, dev_id, MemoryCounter(), attest.MemoryStore())
        self.node = node

    def attest(self, epoch=None, nonce=None, output=b"\x01\x02"):
        e, n = self.node.beacon
        return self.att.attest(MODEL, b"\x22" * 32, output, 1000, "ref", True,
                               e if epoch is None else epoch, n if nonce is None else nonce)


class Pub:
    def __init__(self, broker):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()

    def send(self, dev, payload, kind="attest"):
        self.c.publish("edgepoi/v1/%s/%s" % (dev, kind), payload, qos=1).wait_for_publish(5)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def node(broker, ledger_url):
    n = EdgeNode(broker.url, ledger_url, gap_timeout=3.0)
    yield n
    n.stop()


def test_each_bad_attestation_is_rejected_with_its_reason(broker, node, tmp_path):
    a = Device(tmp_path, "dev-a", node)
    b = Device(tmp_path, "dev-b", node)
    stranger = Device(tmp_path, "dev-x", node)
    node.registry.register("dev-a", a.key.public_key(), kind="file")
    node.registry.register("dev-b", b.key.public_key(), kind="file")
    node.start()
    pub = Pub(broker)
    try:
        m1, m2 = a.attest(), a.attest()
        pub.send("dev-a", m1)
        pub.send("dev-a", m2)
        forged = bytearray(a.attest())
        forged[-1] ^= 0x40                                   # signature byte flipped
        pub.send("dev-a", bytes(forged))
        pub.send("dev-x", stranger.attest())                 # key nobody registered
        pub.send("dev-a", m1)                                # a byte-identical redelivery: idempotent
        old = attest.Attester(a.key, "dev-a", MemoryCounter(1), attest.MemoryStore())
        pub.send("dev-a", old.attest(MODEL, b"\x33" * 32, b"\x09", 5, "ref", True, *node.beacon))  # seq 1 again
        pub.send("dev-b", b.attest(epoch=99, nonce=b"\x00" * 16))  # not a beacon we published
        # dev-a's counter is at 4 now (3 was forged): a message claiming seq 4 but chaining to seq 1
        a.att.prev = attest.digest(m1)
        a.att.counter = MemoryCounter(3)
        pub.send("dev-a", a.attest())                        # seq 3 after 2, wrong prev: chain_broken
        pub.send("dev-a", b"\xd2\x84garbage")
        assert wait(lambda: node.stats()["rejected"] == 6), (node.stats()["rejected_by_reason"], node.counters)
        assert node.counters["duplicates"] == 1
        s = node.stats()
        assert s["rejected_by_reason"] == {"bad_signature": 1, "unknown_key": 1, "replayed": 1,
                                           "stale_nonce": 1, "chain_broken": 1, "malformed": 1}
        assert node.store.attestation_seqs("dev-a") == [1, 2]
    finally:
        pub.close()


def test_out_of_order_is_held_and_a_real_gap_is_rejected(broker, node, tmp_path):
    a = Device(tmp_path, "dev-a", node)
    node.registry.register("dev-a", a.key.public_key())
    node.start()
    pub = Pub(broker)
    try:
        msgs = [a.attest() for _ in range(6)]
        for i in (0, 2, 1):                                  # 3 overtakes 2 (a resend after reconnect)
            pub.send("dev-a", msgs[i])
        assert wait(lambda: node.store.attestation_seqs("dev-a") == [1, 2, 3])
        assert node.stats()["rejected"] == 0
        pub.send("dev-a", msgs[4])                           # seq 4 never arrives
        pub.send("dev-a", msgs[5])
        assert wait(lambda: node.stats()["rejected_by_reason"].get("sequence_gap") == 1, 20)
        # the chain is re-anchored on seq 5, so seq 6 is accepted, not rejected in turn
        assert wait(lambda: node.store.attestation_seqs("dev-a") == [1, 2, 3, 6])
    finally:
        pub.close()


def test_device_acks_say_how_far_its_records_are_stored(broker, node, tmp_path):
    a = Device(tmp_path, "dev-a", node)
    node.registry.register("dev-a", a.key.public_key())
    node.start()
    acks = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-a-listener")
    sub.on_message = lambda c, u, m: acks.append(cbor.loads(m.payload))
    sub.connect(broker.host, broker.port)
    sub.subscribe("edgepoi/v1/dev-a/ack", qos=1)
    sub.loop_start()
    pub = Pub(broker)
    try:
        time.sleep(0.2)
        # seq 1 and 2 carry an attestation ("a"), 3 is telemetry only; 5 arrives before 4
        for seq, with_att in ((1, True), (2, True), (3, False)):
            tele = {"dev": "dev-a", "seq": seq, "ts": 1, "readings": {}}
            if with_att:
                tele["a"] = True
            pub.send("dev-a", cbor.dumps(tele), "telemetry")
        assert wait(lambda: acks and acks[-1] == {"upto": 0}), acks  # waiting for attestation 1
        pub.send("dev-a", a.attest())
        pub.send("dev-a", a.attest())
        assert wait(lambda: acks and acks[-1] == {"upto": 3}), acks
        pub.send("dev-a", cbor.dumps({"dev": "dev-a", "seq": 5, "ts": 1, "readings": {}}), "telemetry")
        assert wait(lambda: acks[-1] == {"upto": 3}), acks
        pub.send("dev-a", cbor.dumps({"dev": "dev-a", "seq": 4, "ts": 1, "readings": {}}), "telemetry")
        assert wait(lambda: acks[-1] == {"upto": 5}), acks
    finally:
        pub.close()
        sub.loop_stop()
