"""`edgepoi edge` as a user runs it: the ingest service, then `edge stats --json` on the same ledger."""
import json
import signal
import subprocess
import sys
import time

import paho.mqtt.client as mqtt

from edgepoi import cbor


def test_edge_run_then_stats_json(broker, tmp_path):
    db = "sqlite:///" + str(tmp_path / "edge.db")
    edge = subprocess.Popen([sys.executable, "-m", "edgepoi_host.cli", "edge", "--broker", broker.url,
                             "--db", db], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert edge.stdout.readline().startswith("edge node:")
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-1")
        c.connect(broker.host, broker.port)
        c.loop_start()
        for seq in (1, 2, 3):
            c.publish("edgepoi/v1/dev-1/telemetry",
                      cbor.dumps({"dev": "dev-1", "seq": seq, "ts": 1, "readings": {"t": 1.5}}), qos=1).wait_for_publish(5)
        c.publish("edgepoi/v1/dev-1/attest", b"\xd2\x84junk", qos=1).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()
        deadline = time.monotonic() + 20
        while True:
            out = subprocess.run([sys.executable, "-m", "edgepoi_host.cli", "edge", "stats", "--db", db,
                                  "--json"], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            stats = json.loads(out.stdout)
            if stats["telemetry"] == 3 and stats["rejected"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert stats["telemetry"] == 3 and stats["devices"] == 1
        assert stats["rejected_by_reason"] == {"malformed": 1}
        assert stats["epochs"] == 1 and stats["current_epoch"] == 1 and stats["settled_epochs"] == []
    finally:
        edge.send_signal(signal.SIGINT)
        out, _ = edge.communicate(timeout=30)
    assert edge.returncode == 0, out
    assert json.loads(out.strip().splitlines()[-1])["stored"] == 3
