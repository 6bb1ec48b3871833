"""Device runtime figures under the real MicroPython: message rate, bundle size, heap per feature, and the
smallest heap of an attesting agent with a micro_speech-sized model.

    python benchmarks/device.py [--cycles 1500] [--skip-bisect]

- messages/s: one device (the unix-board bundle, as .mpy) publishing as fast as it can to a private
  Mosquitto, with the edge node storing and acknowledging: telemetry only, then telemetry + a signed
  attestation of a demo-model inference per cycle (viper backend);
- bundle size for the unix board and the ESP32 boards (flash files, and the ROMFS image);
- heap per feature: live heap after gc.collect() when the agent's parts are imported and set up one by
  one, with the package's bytecode loaded into the heap (.mpy on flash) and run in place (ROMFS);
- the micro_speech-sized agent (tests/harness/models.micro_speech_like: 18 KB of weights, a 1,960-byte
  input fed one 40-value frame per cycle, a file key, viper, 200 cycles against the edge node): the
  smallest -X heapsize it runs in (bisected, 2K steps) and its heap high-water mark (the most live heap
  after a cycle, from the agent's own stats), in both modes.
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


def heap_per_feature(bundle_dir, work, romfs=None):
    flash = os.path.join(work, "heap-rom" if romfs else "heap")
    import shutil
    shutil.copytree(bundle_dir, flash)
    code = "import gc\n"
    rows = []
    for name, step in HEAP_STEPS:
        code += step + "\ngc.collect()\nprint('LIVE', %r, gc.mem_alloc())\n" % name
    res = MicroPython(heapsize="1M", sdk=False, path=[flash], romfs=romfs).run_code(code, cwd=flash)
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


def speech_agent(broker_url, node, work, heap, romfs, cycles=200):
    """Run the micro_speech-sized agent once -> (ok, heap_peak or None)."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from harness.models import micro_speech_like
    import pathlib
    os.makedirs(work, exist_ok=True)
    model = micro_speech_like(pathlib.Path(work) / "ms.tflite")
    tag = "%s-%dk" % ("rom" if romfs else "ram", heap)
    fleet = Fleet(broker_url, count=1, workdir=os.path.join(work, tag), period_s=0.0, messages=cycles,
                  prefix="ms-" + tag, model=model, attest=True, backend="viper", heapsize="%dK" % heap,
                  romfs=romfs, extra={"sensor": {"type": "synthetic", "frame": 40}, "input": "frame",
                                      "backoff_min_ms": 50})
    fleet.register(node.registry)
    fleet.start()
    try:
        fleet.wait(120)
    finally:
        fleet.stop()
    d = fleet.devices[0]
    log = d.log_text()
    m = re.findall(r"'heap_peak': (\d+)", log)
    ok = d.proc.returncode == 0 and "MemoryError" not in log and ("'inferences': %d" % (cycles - 48)) in log
    return ok, int(m[-1]) if m else None


def smallest_heap(broker_url, node, work, romfs, lo=64, hi=320):
    """Bisect the smallest heap (KiB, 2K steps) the agent runs 200 cycles in -> (kib, heap_peak there)."""
    peak = None
    while hi - lo > 2:
        mid = (lo + hi) // 2
        ok, p = speech_agent(broker_url, node, work, mid, romfs)
        if ok:
            hi, peak = mid, p
        else:
            lo = mid
    if peak is None:
        peak = speech_agent(broker_url, node, work, hi, romfs)[1]
    return hi, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=1500)
    ap.add_argument("--skip-bisect", action="store_true", help="skip the smallest-heap search")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="edgepoi-devbench-")
    model = demo_model.ensure(os.path.join(work, "model.tflite"))
    print("bundle sizes:")
    for board in ("unix", "esp32", "esp32-s3", "esp32-c3"):
        try:
            b = bundle.build(board, os.path.join(work, "bundle-" + board), model=model)
            r = bundle.build(board, os.path.join(work, "bundle-rom-" + board), model=model, romfs=True)
            print("  %-9s %4d files %7d bytes; ROMFS: %d flash files %7d bytes + image %7d bytes"
                  % (board, len(b.files), b.total_bytes, len(r.files), r.total_bytes,
                     os.path.getsize(r.romfs_image)))
        except bundle.BundleError as e:
            print("  %-9s not buildable: %s" % (board, str(e).splitlines()[0]))
    unix = os.path.join(work, "bundle-unix")
    rom = os.path.join(work, "bundle-rom-unix")
    from edgepoi.keys import open_key  # a key file for the heap run, made like a device makes one
    print("heap per feature (MicroPython unix port, 64-bit; live bytes after gc.collect()):")
    print("  %-40s %16s %16s" % ("", ".mpy in the heap", "ROMFS"))
    open_key("file:" + os.path.join(unix, "key.pem"))
    open_key("file:" + os.path.join(rom, "key.pem"))
    rows = zip(heap_per_feature(unix, work), heap_per_feature(rom, work, os.path.join(rom, "romfs.img")))
    for (name, live, delta), (_, rlive, rdelta) in rows:
        print("  %-40s %7d (+%6d) %7d (+%6d)" % (name, live, delta, rlive, rdelta))
    with Mosquitto(workdir=os.path.join(work, "broker")) as broker:
        node = EdgeNode(broker.url, "sqlite:///" + os.path.join(work, "edge.db")).start()
        try:
            if not a.skip_bisect:
                print("micro_speech-sized agent (model + MQTT + attestations + queue, 200 cycles, viper):")
                for romfs in (True, False):
                    kib, peak = smallest_heap(broker.url, node, os.path.join(work, "bisect"), romfs)
                    print("  %-17s smallest heap %4dK, heap high-water %6s bytes"
                          % ("ROMFS:" if romfs else ".mpy in the heap:", kib, peak))
            m, c = rate(broker.url, node, os.path.join(work, "fleet-t"), a.cycles, False, model)
            print("one device, telemetry only:          %7.0f msg/s" % m)
            m, c = rate(broker.url, node, os.path.join(work, "fleet-a"), a.cycles // 3, True, model)
            print("one device, inference + attestation: %7.0f msg/s (%.0f cycles/s)" % (m, c))
        finally:
            node.stop()


if __name__ == "__main__":
    main()
