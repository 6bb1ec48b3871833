"""Re-execution audits with the real agent code (CPython), a real broker and the edge node: an honest
device's audited work is verified bit-exact; a device that lies about an output is caught and flagged."""
import threading

from edgepoi.agent import Agent
from edgepoi.keys import open_key
from edgepoi_host.edge.ingest import EdgeNode
from harness.faults import wait
from harness.models import fc_model


def _device(tmp_path, broker, node, dev_id, model):
    flash = tmp_path / dev_id
    flash.mkdir()
    key_uri = "file:" + str(flash / "key.pem")
    node.registry.register(dev_id, open_key(key_uri).public_key())
    cfg = {"device_id": dev_id, "broker_host": broker.host, "broker_port": broker.port, "period_s": 0.02,
           "model": model, "key": key_uri, "backend": "ref", "reveal_slots": 64,
           "sensor": {"type": "synthetic", "seed": 3}, "backoff_min_ms": 50}
    return Agent(cfg, flash_dir=str(flash))


def _run(agent, cycles):
    t = threading.Thread(target=agent.run, args=(cycles,), daemon=True)
    t.start()
    return t


def test_audits_verify_honest_work_and_catch_a_lying_device(broker, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    model = fc_model(models / "fc.tflite")
    node = EdgeNode(broker.url, "sqlite:///" + str(tmp_path / "edge.db"), models_dir=str(models),
                    audit_rate=1.0)
    honest = _device(tmp_path, broker, node, "honest", model)
    liar = _device(tmp_path, broker, node, "liar", model)
    real_infer = liar._infer

    def lying_infer(qin):
        out = bytearray(real_infer(qin))
        out[0] = (out[0] + 1) & 0xFF  # claims a slightly different result than the model gives
        return bytes(out)
    liar._infer = lying_infer
    node.start()
    try:
        threads = [_run(honest, 60), _run(liar, 60)]
        for t in threads:
            t.join(60)
        # every accepted attestation was sampled (rate 1.0); the devices keep answering reveals
        # while their links are up, so wait for the verdicts with the agents still connected
        assert wait(lambda: node.stats()["audits"].get("verified", 0) >= 20 and
                     node.stats()["audits"].get("fraudulent", 0) >= 1, 60), node.stats()
        audits = node.ledger.db.query("SELECT device_id, verdict, detail FROM audits")
        assert {v for d, v, _ in audits if d == "honest"} <= {"verified", "unverifiable"}
        assert any(v == "fraudulent" and "differs" in det for d, v, det in audits if d == "liar")
        assert "liar" in node.registry.flagged() and "honest" not in node.registry.flagged()
        statuses = dict(node.ledger.db.query(
            "SELECT status, count(*) FROM attestations WHERE device_id = 'liar' GROUP BY status"))
        assert statuses.get("fraudulent", 0) >= 1
    finally:
        node.stop()
