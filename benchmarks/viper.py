"""Viper backend benchmark: MicroPython viper vs ref vs TFLM (MAC/s), and the smallest heap per model.

From one run it prints, for hello_world, micro_speech, the MLPerf Tiny KWS DS-CNN and the emlearn MNIST
CNN: the median invoke latency and MAC/s of edgepoi's ``viper`` and ``ref`` backends under the real
MicroPython unix port (the sdk as it ships: the unix-board .mpy bundle built here), of TFLM
(tflite-micro, in CPython, same host), the ratios, and the smallest ``-X heapsize`` (bisected in 1 KB
steps) at which the model loads, allocates and runs one invoke with output equal to TFLM's golden.
Targets (issue 3): viper >= 25% of TFLM's MAC/s on KWS; micro_speech runs within 64K, KWS within 96K.

    python benchmarks/viper.py                          # all four models (about a minute)
    python benchmarks/viper.py --models kws --runs 20 --no-heap
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.environ.get("EDGEPOI_MODELS", os.path.join(ROOT, "..", "shared", "models"))
NAMES = ["tflm_hello_world_int8", "tflm_micro_speech_int8", "mlperf_tiny_kws01_dscnn_int8",
         "emlearn_mnist_cnn_int8"]
HEAP_TARGETS = {"tflm_micro_speech_int8": 64, "mlperf_tiny_kws01_dscnn_int8": 96}
MAC_TARGET = ("mlperf_tiny_kws01_dscnn_int8", 0.25)
REF_MAX_RUNS_MACS = 500_000     # ref is ~1 s per KWS invoke: fewer runs above this

# argv: model, backend, input file, runs. Prints "backend B", "lat_us ..." (one per run), "out HEX".
DEVICE_SCRIPT = """
import sys, time
from edgepoi.infer import Interpreter
it = Interpreter(model_path=sys.argv[1], backend=sys.argv[2])
it.allocate_tensors()
d = it.get_input_details()[0]
o = it.get_output_details()[0]
with open(sys.argv[3], "rb") as f:
    x = f.read()
print("backend", it.backend)
for r in range(int(sys.argv[4])):
    it.set_tensor(d["index"], x)
    t = time.ticks_us()
    it.invoke()
    print("lat_us", time.ticks_diff(time.ticks_us(), t))
print("out", bytes(it.get_tensor(o["index"])).hex())
"""


def build_sdk(outdir):
    from edgepoi_host import bundle
    return bundle.build("unix", outdir).out_dir


def run_device(sdk, heap, script, model, backend, inp, runs, romfs=None):
    """(ok, latencies in us, output hex, text) of one MicroPython run (package from ROMFS when given)."""
    from edgepoi_host.runtime.micropython import MicroPython
    mp = MicroPython(heapsize="%dK" % heap, path=[sdk], sdk=False, romfs=romfs)
    res = mp.run([script, model, backend, inp, str(runs)], check=False, timeout=600)
    text = res.stdout + res.stderr
    lat = [int(ln.split()[1]) for ln in res.stdout.splitlines() if ln.startswith("lat_us ")]
    out = [ln[4:] for ln in res.stdout.splitlines() if ln.startswith("out ")]
    ok = res.returncode == 0 and "Traceback" not in text and ("backend %s" % backend) in text
    return ok, lat, (out[0] if out else None), text


def tflm_latency(path, x, runs):
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_file(path)
    lat = []
    for _ in range(runs + 1):
        it.set_input(x, 0)
        t = time.perf_counter()
        it.invoke()
        lat.append(time.perf_counter() - t)
    return statistics.median(lat[1:])


def model_macs(path):
    from edgepoi.infer import Interpreter
    it = Interpreter(model_path=path, backend="ref")
    it.allocate_tensors()
    return it.macs


def min_heap(sdk, script, model, backend, inp, want, lo=8, hi=1024, romfs=None):
    """Smallest heap in KB (1 KB steps) at which one invoke gives the golden output; None if > hi."""
    ok, _, out, _ = run_device(sdk, hi, script, model, backend, inp, 1, romfs)
    if not ok or out != want:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok, _, out, _ = run_device(sdk, mid, script, model, backend, inp, 1, romfs)
        if ok and out == want:
            hi = mid
        else:
            lo = mid
    return hi


def mps(macs, seconds):
    return macs / seconds / 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated substrings of model names")
    p.add_argument("--runs", type=int, default=15, help="timed invokes per backend")
    p.add_argument("--no-heap", action="store_true", help="skip the heap bisection")
    p.add_argument("--heap-backends", default="viper", help="backends to bisect the heap for (viper,ref)")
    a = p.parse_args(argv)
    if not os.path.isdir(MODELS):
        print("models folder %s not found (set EDGEPOI_MODELS)" % MODELS)
        return 2
    keys = [k for k in a.models.split(",") if k]
    names = [n for n in NAMES if not keys or any(k in n for k in keys)]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        sdk = build_sdk(os.path.join(tmp, "sdk"))
        script = os.path.join(tmp, "bench_viper.py")
        with open(script, "w") as f:
            f.write(DEVICE_SCRIPT)
        print("%-30s %10s %10s %10s %9s %9s %9s %8s %8s" % (
            "model", "MACs", "viper ms", "ref ms", "tflm ms", "viper/ref", "viper/tflm",
            "viper MMAC/s", "tflm MMAC/s"))
        rows = {}
        for name in names:
            path = os.path.join(MODELS, name + ".tflite")
            g = np.load(os.path.join(MODELS, "golden", name + ".golden.npz"))
            x = g["inputs"][0]
            want = g["out_tflm"][0].astype(np.int8).tobytes().hex()
            inp = os.path.join(tmp, name + ".in")
            with open(inp, "wb") as f:
                f.write(x.astype(np.int8).tobytes())
            macs = model_macs(path)
            res = {}
            for backend in ("viper", "ref"):
                runs = a.runs if backend == "viper" or macs < REF_MAX_RUNS_MACS else 3
                ok, lat, out, text = run_device(sdk, 4096, script, path, backend, inp, runs)
                if not ok or out != want:
                    failures.append("%s %s: %s" % (name, backend, "output %s != TFLM %s" % (out, want)
                                                   if ok else text.strip()[-400:]))
                    res[backend] = float("nan")
                else:
                    res[backend] = statistics.median(lat) / 1e6
            tf = tflm_latency(path, x, max(a.runs, 30))
            rows[name] = (macs, res["viper"], res["ref"], tf)
            print("%-30s %10d %10.3f %10.3f %9.3f %9.1fx %9.2f %8.1f %8.1f" % (
                name, macs, res["viper"] * 1e3, res["ref"] * 1e3, tf * 1e3, res["ref"] / res["viper"],
                tf / res["viper"], mps(macs, res["viper"]), mps(macs, tf)))
            sys.stdout.flush()
        tname, target = MAC_TARGET
        if tname in rows:
            macs, v, _, tf = rows[tname]
            ratio = tf / v
            print("\nKWS: viper reaches %.0f%% of TFLM's MAC/s (target >= %.0f%%): %s" % (
                100 * ratio, 100 * target, "met" if ratio >= target else "NOT met"))
        if not a.no_heap:
            from edgepoi_host import bundle
            rom = bundle.build("unix", os.path.join(tmp, "rom"), romfs=True)
            print("\nsmallest -X heapsize (KB) running one invoke bit-exact: .mpy loaded into the heap / "
                  "run in place from ROMFS (the target is judged on ROMFS, as a board with a romfs partition "
                  "runs it):")
            for name in names:
                path = os.path.join(MODELS, name + ".tflite")
                g = np.load(os.path.join(MODELS, "golden", name + ".golden.npz"))
                want = g["out_tflm"][0].astype(np.int8).tobytes().hex()
                inp = os.path.join(tmp, name + ".in")
                parts = []
                for backend in [b for b in a.heap_backends.split(",") if b]:
                    ram = min_heap(sdk, script, path, backend, inp, want)
                    kb = min_heap(rom.out_dir, script, path, backend, inp, want, romfs=rom.romfs_image)
                    parts.append("%s %s / %s" % (backend, ">1024K" if ram is None else "%dK" % ram,
                                                 ">1024K" if kb is None else "%dK" % kb))
                    limit = HEAP_TARGETS.get(name)
                    if limit and backend == "viper":
                        parts.append("(target %dK: %s)" % (limit, "met" if kb and kb <= limit else "NOT met"))
                print("  %-30s %s" % (name, "  ".join(parts)))
                sys.stdout.flush()
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
