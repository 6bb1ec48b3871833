"""Re-execution audits: ask a device for the input of an attested inference, re-run it bit-exact, judge.

Usage (the edge node wires it up; ``edgepoi edge --audit-rate 0.05 --models DIR``)::

    auditor = Auditor(ledger, registry, publish, models_dir="models/", rate=0.05)
    auditor.consider(device_id, seq, claims)          # for each accepted attestation (sampled at ``rate``)
    auditor.on_result(device_id, "cmd/reveal/result", payload)   # the device's answer
    auditor.expire()                                  # reveal requests that were never answered

Flow: for a sampled attestation the node publishes ``edgepoi/v1/<id>/cmd/reveal`` with CBOR
``{"id": n, "seq": seq}``; the device answers on ``cmd/reveal/result`` with ``{"id": n, "ok": true, "seq":
seq, "input": bytes}`` from its ring buffer of recent inputs. The node checks SHA-256(input) against the
attested input digest, runs the model named by the attested model digest (found by SHA-256 among the
.tflite files in ``models_dir``) with a bit-exact backend, and compares the output bytes with the attested
output. Verdicts (table ``audits``; the attestation's status follows):
``verified`` — same bytes; ``fraudulent`` — the input does not match its digest or the output differs: the
attestation becomes ``fraudulent`` and the device is flagged, so its work is no longer settled;
``unverifiable`` — the model is unknown to the node, or the device no longer holds the input
(``ok: false``) or never answered within ``timeout`` seconds: no verdict on the device.
Sampling uses the OS random generator, so a device cannot know beforehand which of its attestations will
be audited.
"""
import glob
import hashlib
import logging
import os
import random
import threading
import time

from edgepoi import attest, cbor

log = logging.getLogger("edgepoi.edge.audit")


class Auditor:
    def __init__(self, ledger, registry, publish, models_dir=None, rate=0.05, timeout=30.0, backend=None):
        self.ledger = ledger
        self.registry = registry
        self.publish = publish          # function(topic, payload) at QoS 1
        self.models_dir = models_dir
        self.rate = rate
        self.timeout = timeout
        self.backend = backend
        self.pending = {}               # request id -> (device_id, seq, claims, asked_at)
        self._ids = 0
        self._models = None
        self._rng = random.SystemRandom()
        self._lock = threading.Lock()
        self.counts = {"requested": 0, "verified": 0, "fraudulent": 0, "unverifiable": 0}

    # -- models --------------------------------------------------------------------------------
    def model_path(self, digest):
        models = self._models
        if models is None or digest not in models:
            models = {}       # filled, then published whole: a thread asking meanwhile never sees it half
            for path in glob.glob(os.path.join(self.models_dir or "", "*.tflite")) if self.models_dir else []:
                with open(path, "rb") as f:
                    models[hashlib.sha256(f.read()).digest()] = path
            self._models = models
        return models.get(digest)

    # -- requests ------------------------------------------------------------------------------
    def consider(self, device_id, seq, claims, force=False):
        """Maybe audit an accepted attestation (always when ``force``)."""
        if not force and (self.rate <= 0 or self._rng.random() >= self.rate):
            return None
        with self._lock:
            self._ids += 1
            rid = self._ids
            self.pending[rid] = (device_id, seq, claims, time.monotonic())
        self.counts["requested"] += 1
        self.publish("edgepoi/v1/%s/cmd/reveal" % device_id, cbor.dumps({"id": rid, "seq": seq}))
        return rid

    def on_result(self, device_id, kind, payload):
        if kind != "cmd/reveal/result":
            return
        try:
            res = cbor.loads(payload, max_depth=4, max_items=64, max_length=1 << 20)
        except cbor.CBORError:
            return
        if not isinstance(res, dict):
            return
        with self._lock:
            req = self.pending.get(res.get("id"))
            if req is None or req[0] != device_id:
                return  # not ours, or another device answering for it
            del self.pending[res["id"]]
        _dev, seq, claims, _at = req
        verdict, detail = self.judge(claims, res)
        self.record(device_id, seq, verdict, detail)

    def judge(self, claims, res):
        if not res.get("ok") or not isinstance(res.get("input"), bytes):
            return "unverifiable", "device could not reveal the input: %s" % res.get("error", "no input")
        data = res["input"]
        if hashlib.sha256(data).digest() != claims[attest.INPUT]:
            return "fraudulent", "revealed input does not match the attested input digest"
        path = self.model_path(claims[attest.MODEL])
        if path is None:
            return "unverifiable", "model %s is not known to this node" % claims[attest.MODEL].hex()[:16]
        try:
            out = rerun(path, data, self.backend)
        except Exception as e:  # noqa: BLE001 - a model/input the node cannot run is no verdict
            return "unverifiable", "re-execution failed: %s" % e
        if out != claims[attest.OUTPUT]:
            diff = sum(1 for a, b in zip(out, claims[attest.OUTPUT]) if a != b) + \
                abs(len(out) - len(claims[attest.OUTPUT]))
            return "fraudulent", "re-executed output differs in %d bytes" % diff
        return "verified", "re-executed bit-exact"

    def record(self, device_id, seq, verdict, detail):
        self.counts[verdict] += 1
        now = time.time()
        self.ledger.add_audit(device_id, seq, verdict, detail, finished_at=now)
        if verdict in ("verified", "fraudulent"):
            self.ledger.set_attestation_status(device_id, seq, verdict)
        if verdict == "fraudulent":
            try:
                self.registry.flag(device_id, "audit of seq %d: %s" % (seq, detail))
            except Exception:  # noqa: BLE001
                log.exception("could not flag %s", device_id)
        log.warning("audit %s seq %d: %s (%s)", device_id, seq, verdict, detail) if verdict == "fraudulent" \
            else log.info("audit %s seq %d: %s", device_id, seq, verdict)

    def expire(self, now=None):
        now = time.monotonic() if now is None else now
        with self._lock:
            late = [(rid, r) for rid, r in self.pending.items() if now - r[3] > self.timeout]
            for rid, _r in late:
                del self.pending[rid]
        for _rid, (dev, seq, _claims, _at) in late:
            self.record(dev, seq, "unverifiable", "no answer to cmd/reveal within %.0fs" % self.timeout)


def rerun(model_path, input_bytes, backend=None):
    """Run the model on the raw input tensor bytes with a bit-exact backend; the output tensor's bytes."""
    import numpy as np
    from edgepoi.infer import Interpreter
    it = Interpreter(model_path=model_path, backend=backend or "auto")
    if not it.bit_exact:
        raise RuntimeError("backend %s is not bit-exact" % it.backend)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    arr = np.frombuffer(input_bytes, dtype=d["dtype"])
    if arr.size != int(np.prod(d["shape"])):
        raise ValueError("input has %d elements, the model takes %d" % (arr.size, int(np.prod(d["shape"]))))
    it.set_tensor(d["index"], arr.reshape([int(x) for x in d["shape"]]))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).tobytes()
