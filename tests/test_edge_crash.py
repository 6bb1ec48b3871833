"""Killing the edge node (SIGKILL, the ledger worker with it or not) mid-ingest loses nothing."""
import os
import signal
import subprocess
import sys
import time

import paho.mqtt.client as mqtt

from edgepoi import attest, cbor
from edgepoi.counter import MemoryCounter
from edgepoi.keys import open_key
from edgepoi_host.edge.registry import Registry
from edgepoi_host.edge.store import Ledger


def _edge(broker, db_url):
    return subprocess.Popen([sys.executable, "-m", "edgepoi_host.cli", "edge", "--broker", broker.url,
                             "--db", db_url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _wait_started(proc):
    for line in proc.stdout:
        if line.startswith("edge node:"):
            return
    raise AssertionError("edge node did not start")


def test_sigkill_mid_ingest_loses_nothing(broker, ledger_url, tmp_path):
    ledger = Ledger(ledger_url)
    epoch, nonce = 1, os.urandom(16)
    ledger.add_beacon(epoch, nonce)
    msgs = []
    reg = Registry(ledger.db)
    for d in range(10):
        dev = "crash-%d" % d
        key = open_key("file:" + str(tmp_path / (dev + ".pem")))
        reg.register(dev, key.public_key())
        att = attest.Attester(key, dev, MemoryCounter(), attest.MemoryStore())
        for seq in range(1, 151):
            msgs.append(("edgepoi/v1/%s/telemetry" % dev,
                         cbor.dumps({"dev": dev, "seq": seq, "ts": seq, "readings": {"v": 1.0}})))
            msgs.append(("edgepoi/v1/%s/attest" % dev,
                         att.attest(b"\x11" * 32, b"\x22" * 32, b"\x01", 10, "ref", True, epoch, nonce)))
    edge = _edge(broker, ledger_url)
    _wait_started(edge)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet")
    pub.max_inflight_messages_set(500)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    infos = [pub.publish(t, p, qos=1) for t, p in msgs]
    try:
        kills = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            s = ledger.stats()
            done = s["telemetry"] + s["attestations"]
            if kills < 2 and done >= (kills + 1) * len(msgs) // 3:
                os.killpg(edge.pid, signal.SIGKILL)  # the node and its ledger worker
                edge.wait()
                kills += 1
                edge = _edge(broker, ledger_url)
                _wait_started(edge)
            if done == len(msgs) and kills == 2:
                break
            time.sleep(0.05)
        for i in infos:
            i.wait_for_publish(10)
        s = ledger.stats()
        assert kills == 2
        assert (s["telemetry"], s["attestations"], s["rejected"]) == (1500, 1500, 0), s["rejected_by_reason"]
        for d in range(10):
            assert ledger.attestation_seqs("crash-%d" % d) == list(range(1, 151))
    finally:
        pub.loop_stop()
        os.killpg(edge.pid, signal.SIGTERM)
        out, _ = edge.communicate(timeout=20)
        print(out)
        ledger.close()
