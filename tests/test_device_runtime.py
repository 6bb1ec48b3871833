"""The device runtime under the real MicroPython against a real Mosquitto and the edge node: faults that
real homes cause — broker restarts, power cuts — lose and duplicate nothing that the sequence numbers
cannot tell apart, and the flash queue is never corrupt."""
import os

from edgepoi import cbor
from edgepoi.link.flashq import FlashQueue
from edgepoi_host.edge.ingest import EdgeNode
from edgepoi_host.sim import Fleet
from harness.faults import restarts_and_power_cuts, wait
from harness.models import fc_model

CYCLES = 240
WINDOW = 16  # the model takes 16 samples: the first attestation is at seq 16


def test_broker_restarts_and_power_cuts_lose_nothing(broker, tmp_path):
    model = fc_model(tmp_path / "fc.tflite")
    node = EdgeNode(broker.url, "sqlite:///" + str(tmp_path / "edge.db"))
    fleet = Fleet(broker.url, count=2, workdir=str(tmp_path / "fleet"), period_s=0.03, messages=CYCLES,
                  model=model, attest=True, backend="viper", heapsize="256K",
                  extra={"keepalive": 5, "backoff_min_ms": 50, "backoff_max_ms": 500})
    fleet.register(node.registry)
    node.start()
    fleet.start()
    victim = fleet.devices[0]
    try:
        restarts_and_power_cuts(broker, node, victim, per_step=40, timeout=60.0)
        fleet.wait(180)
        for d in fleet.devices:
            assert d.proc.returncode == 0, d.log_text()[-2000:]
        assert wait(lambda: node.stats()["telemetry"] == 2 * CYCLES, 60.0), node.stats()
        s = node.stats()
        assert s["rejected"] == 0, s["rejected_by_reason"]
        for d in fleet.devices:
            assert node.store.telemetry_seqs(d.device_id) == list(range(1, CYCLES + 1))
            # every cycle whose telemetry says it ran the model ("a") has its attestation, and no other
            rows = node.store.db.query("SELECT seq, payload FROM telemetry WHERE device_id = ?", (d.device_id,))
            attested = sorted(seq for seq, p in rows if cbor.loads(p).get("a") is True)
            assert node.store.attestation_seqs(d.device_id) == attested
        # the device that never lost power attests every cycle once its window is full; power cuts
        # cost the victim a window refill each (it restarts empty) but never a sequence number
        other = [d for d in fleet.devices if d is not victim][0]
        assert node.store.attestation_seqs(other.device_id) == list(range(WINDOW, CYCLES + 1))
        assert len(node.store.attestation_seqs(victim.device_id)) >= CYCLES - 3 * WINDOW
        for d in fleet.devices:  # the queue on flash: readable, nothing torn but at most a last record
            q = FlashQueue(os.path.join(d.flash_dir, "queue"))
            assert q.last_id == CYCLES and q.pending_count == 0
            q.close()
        assert "edgepoi agent %s seq" % victim.device_id in victim.log_text()
    finally:
        fleet.stop()
        node.stop()
