"""Device runtime figures under the real MicroPython: message rate, bundle size, heap per feature.

    python benchmarks/device.py [--cycles 1500]

- messages/s: one device (the unix-board bundle, as .mpy) publishing as fast as it can to a private
  Mosquitto, with the edge node storing and acknowledging: telemetry only, then telemetry + a signed
  attestation of a demo-model inference per cycle (viper backend);
- bundle size for the unix board and the ESP32 boards;
- heap per feature: live heap after gc.collect() when the agent's parts are imported and set up one by one.
"""
import argparse
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "host_tools"))

from edgepoi_host import bundle, demo_model  # noqa: E402
from edgepoi_host.edge.ingest import EdgeNode  # noqa: E402
from edgepoi_host.runtime.broker import Mosquitto  # noqa: E402
from edgepoi_host.runtime.micropython import MicroPython  # noqa: E402
from edgepoi_host.sim import Fleet  # noqa: E402

HEAP_STEPS = [
    ("interpreter", "pass"),
    ("cbor", "from edgepoi import cbor"),
    ("mqtt + flash queue + link", "from edgepoi.link.link import Link\nfrom edgepoi.link.flashq import FlashQueue\n"
                                  "q = FlashQueue('hq')"),
    ("agent module", "from edgepoi import agent"),
    ("inference (demo model, viper)", "from edgepoi.infer import Interpreter\n"
                                      "it = Interpreter(model_path='model.tflite', backend='viper')\n"
                                      "it.allocate_tensors()"),
    ("attestation (file key, COSE, P-256)", "from edgepoi import attest\nfrom edgepoi.keys import open_key\n"
                                            "k = open_key('file:key.pem')\nimport hashlib\n"
                                            "k.sign_digest(hashlib.sha256(b'x').digest())"),
]


def heap_per_feature(bundle_dir, work):
    flash = os.path.join(work, "heap")
    import shutil
    shutil.copytree(bundle_dir, flash)
    code = "import gc\n"
    rows = []
    for name, step in HEAP_STEPS:
        code += step + "\ngc.collect()\nprint('LIVE', %r, gc.mem_alloc())\n" % name
    res = MicroPython(heapsize="1M", sdk=False, path=[flash]).run_code(code, cwd=flash)
    prev = 0
    for line in res.stdout.splitlines():
        m = re.match(r"LIVE (.+) (\d+)$", line)
        if m:
            name, live = m.group(1).strip("'\""), int(m.group(2))
            rows.append((name, live, live - prev))
            prev = live
    return rows


def rate(broker_url, node, work, cycles, attest, model):
    fleet = Fleet(broker_url, count=1, workdir=work, period_s=0.0, messages=cycles,
                  prefix="rate-att" if attest else "rate-tel",
                  model=model if attest else None, attest=attest, backend="viper", heapsize="512K")
    if attest:
        fleet.register(node.registry)
    dev = fleet.devices[0].device_id
    before = len(node.store.telemetry_seqs(dev))
    t0 = time.perf_counter()
    fleet.start()
    while len(node.store.telemetry_seqs(dev)) - before < cycles and time.perf_counter() - t0 < 600:
        time.sleep(0.05)
    dt = time.perf_counter() - t0
    fleet.wait(60)
    msgs = cycles * (2 if attest else 1)
    return msgs / dt, cycles / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=1500)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="edgepoi-devbench-")
    model = demo_model.ensure(os.path.join(work, "model.tflite"))
    print("bundle sizes:")
    for board in ("unix", "esp32", "esp32-s3", "esp32-c3"):
        try:
            b = bundle.build(board, os.path.join(work, "bundle-" + board), model=model)
            print("  %-9s %4d files %7d bytes" % (board, len(b.files), b.total_bytes))
        except bundle.BundleError as e:
            print("  %-9s not buildable: %s" % (board, str(e).splitlines()[0]))
    unix = os.path.join(work, "bundle-unix")
    from edgepoi.keys import open_key  # a key file for the heap run, made like a device makes one
    print("heap per feature (MicroPython unix port, sdk as .mpy; live bytes after gc.collect()):")
    open_key("file:" + os.path.join(unix, "key.pem"))
    for name, live, delta in heap_per_feature(unix, work):
        print("  %-40s %7d  (+%d)" % (name, live, delta))
    with Mosquitto(workdir=os.path.join(work, "broker")) as broker:
        node = EdgeNode(broker.url, "sqlite:///" + os.path.join(work, "edge.db")).start()
        try:
            m, c = rate(broker.url, node, os.path.join(work, "fleet-t"), a.cycles, False, model)
            print("one device, telemetry only:          %7.0f msg/s" % m)
            m, c = rate(broker.url, node, os.path.join(work, "fleet-a"), a.cycles // 3, True, model)
            print("one device, inference + attestation: %7.0f msg/s (%.0f cycles/s)" % (m, c))
        finally:
            node.stop()


if __name__ == "__main__":
    main()
