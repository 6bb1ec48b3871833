"""The agent's window and audit inputs: readings (numbers or whole frames) slide through one quantized
buffer, the inference sees exactly the newest window, and the inputs of the newest inferences are rebuilt
from it and a fixed ring of the bytes that slid out of it, whose size follows the heap budget."""
import hashlib

import numpy as np

from edgepoi import cbor, commands
from edgepoi.agent import Agent
from harness.models import fc_model


class FrameSensor:
    """Readings with a scalar and a frame of 4 numbers; every value is distinct and known."""

    def __init__(self):
        self.t = 0

    def read(self):
        self.t += 1
        base = self.t * 4
        return {"temp_c": 20.0 + self.t, "frame": [float(base + j) * 0.25 for j in range(4)]}


def _agent(tmp_path, model, **cfg):
    c = {"device_id": "w-1", "broker_host": "127.0.0.1", "broker_port": 9, "model": model, "backend": "ref"}
    c.update(cfg)
    return Agent(c, sensor=FrameSensor(), flash_dir=str(tmp_path))


def _expected(values, scale=0.25, zp=-84):
    q = np.clip(np.round(np.array(values) / scale) + zp, -128, 127).astype(np.int8)
    return q.tobytes()


def test_frames_slide_the_window_by_a_whole_frame(tmp_path):
    model = fc_model(tmp_path / "fc.tflite", inputs=16)
    a = _agent(tmp_path, model, input="frame")
    seen = []
    a._infer = lambda qin, f=a._infer: (seen.append(bytes(qin)), f(qin))[1]
    for _ in range(6):
        assert a.cycle()
    # 4 values per frame, 16 per window: the first inference is at the 4th cycle
    assert a.stats["inferences"] == 3 and len(seen) == 3
    for i, win in enumerate(seen):
        t0 = i + 1                               # frames t0..t0+3
        vals = [float(t * 4 + j) * 0.25 for t in range(t0, t0 + 4) for j in range(4)]
        assert win == _expected(vals), i
    # telemetry keeps the scalar readings only; the frame fed the model
    rec = [cbor.loads(p) for _, p in _records(a)]
    assert all("frame" not in r["readings"] and "temp_c" in r["readings"] for r in rec)
    a.queue.close()


def test_scalar_readings_fill_the_window_one_by_one(tmp_path):
    model = fc_model(tmp_path / "fc.tflite", inputs=16)
    a = _agent(tmp_path, model)               # input: temp_c
    for _ in range(15):
        a.cycle()
    assert a.stats["inferences"] == 0
    a.cycle()
    assert a.stats["inferences"] == 1
    assert bytes(a.win) == _expected([20.0 + t for t in range(1, 17)])
    a.queue.close()


def _attested_inputs(a, cycles):
    """Run cycles; {seq: the window its attestation signed} of those that were queued."""
    a.nonce, a.epoch = b"n" * 16, 1               # as if a beacon had been seen
    inputs = {}
    for _ in range(cycles):
        if a.cycle() and a.filled == a.window:
            inputs[a.queue.last_id] = bytes(a.win)
    return inputs


def _held(a, inputs):
    """The seqs whose input cmd/reveal gives back (checked byte for byte), oldest first."""
    out = []
    for seq in sorted(inputs):
        res = commands.run(a, "reveal", {"seq": seq})
        if res["ok"]:
            assert res["input"] == inputs[seq] and res["seq"] == seq, seq
            assert hashlib.sha256(res["input"]).digest() == hashlib.sha256(inputs[seq]).digest()
            out.append(seq)
        else:
            assert "no longer held" in res["error"]
    return out


def test_reveal_keeps_the_newest_inputs_in_what_slid_out_of_the_window(tmp_path):
    model = fc_model(tmp_path / "fc.tflite", inputs=16)
    a = _agent(tmp_path, model, input="frame", key="file:" + str(tmp_path / "k.pem"), reveal_slots=3)
    inputs = _attested_inputs(a, 10)
    assert len(inputs) == 7
    assert _held(a, inputs) == sorted(inputs)[-3:]
    # windows overlap: 3 inputs of 16 bytes sliding by 4 are the window and the 8 bytes that left it
    assert len(a.reveal.win) == 16 and len(a.reveal.hist) == 8
    for seq in (999, -1, "x", None):
        assert not commands.run(a, "reveal", {"seq": seq})["ok"]
    a.queue.close()


def test_reveal_stays_within_its_byte_budget(tmp_path):
    model = fc_model(tmp_path / "fc.tflite", inputs=16)
    a = _agent(tmp_path, model, input="frame", key="file:" + str(tmp_path / "k.pem"),
               reveal_slots=8, reveal_bytes=28)   # the window (16) and 12 bytes: 4 inputs
    inputs = _attested_inputs(a, 12)
    assert len(a.reveal.hist) == 12 and _held(a, inputs) == sorted(inputs)[-4:]
    a.queue.close()


def test_inputs_age_with_every_reading_also_unqueued_ones(tmp_path):
    # while the queue is full (cycles paused, nothing attested) readings still slide the window: an input
    # is held while what slid out since fits the ring
    model = fc_model(tmp_path / "fc.tflite", inputs=16)
    a = _agent(tmp_path, model, input="frame", key="file:" + str(tmp_path / "k.pem"),
               reveal_slots=4, queue_bytes=4096)
    a.nonce, a.epoch = b"n" * 16, 1
    inputs = {}
    while a.cycle():
        if a.filled == a.window:
            inputs[a.queue.last_id] = bytes(a.win)
    queued = sorted(inputs)
    assert len(queued) > 4 and a.stats["paused"] == 1
    assert _held(a, inputs) == queued[-3:]          # one reading (4 bytes) slid since the newest
    assert not a.cycle() and a.stats["paused"] == 2
    assert _held(a, inputs) == queued[-2:]          # ring of 12 bytes: 2 and 3 readings ago
    a.queue.close()


def _records(a):
    """(seq, telemetry payload) of every queued record."""
    out = []
    for rid, rec in a.queue.pending():
        for topic, payload, _ in cbor.loads(rec):
            if topic.endswith("/telemetry"):
                out.append((rid, payload))
    return out


def test_a_reveal_result_goes_out_in_pieces_that_join_to_its_cbor(tmp_path):
    model = fc_model(tmp_path / "fc.tflite", inputs=16)
    a = _agent(tmp_path, model, input="frame", key="file:" + str(tmp_path / "k.pem"), reveal_slots=3)
    inputs = _attested_inputs(a, 10)
    for seq in sorted(inputs)[-3:]:
        for args in ({"seq": seq}, {"seq": seq, "id": 7}, {"seq": seq, "id": "a much longer request id"}):
            parts = commands.reveal_parts(a, args)
            whole = b"".join(bytes(p) for p in parts)
            expect = dict(commands.run(a, "reveal", args), **({"id": args["id"]} if "id" in args else {}))
            assert whole == cbor.dumps(expect) and cbor.loads(whole)["input"] == inputs[seq]
            assert any(isinstance(p, memoryview) and len(p) for p in parts)     # the input is not copied
    assert commands.reveal_parts(a, {"seq": sorted(inputs)[0]}) is None     # no longer held
    a.queue.close()
