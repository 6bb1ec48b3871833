"""Smallest MicroPython heap per model and backend for the inference core (issue 3), bit-exact checked.

Builds the unix-board .mpy bundle of the sdk (what ships), then for each model and backend bisects
(1 KB steps) the smallest ``-X heapsize`` at which the model loads, allocates its tensors and runs a
few golden inputs with outputs equal, byte for byte, to TFLM's (``out_tflm`` of golden/*.npz). Because
fragmentation makes "runs at N KB" not strictly monotonic, the bisection result is then confirmed by
scanning upward a few KB until K consecutive sizes pass; the table shows the first size of that run.

    python benchmarks/infer_heap.py                                  # 4 models x ref, viper
    python benchmarks/infer_heap.py --models kws --backends viper --inputs 2
    python benchmarks/infer_heap.py --bundle /tmp/old_bundle          # measure a prebuilt bundle
    python benchmarks/infer_heap.py --models kws --profile            # heap used after each stage
    python benchmarks/infer_heap.py --romfs                           # package in a ROMFS image

``--romfs`` builds the bundle with the package in a ROMFS image, mapped outside the heap as a board's
ROMFS partition (bytecode runs in place, as on an ESP32 with a romfs partition); by default the .mpy
files are loaded into the heap, as from a board's filesystem. The targets (micro_speech 64K, KWS 96K)
are met with ROMFS (docs/INFERENCE.md has both tables).

``--stream 0|1`` passes ``stream_weights`` explicitly (default: the Interpreter's own default).
"""
import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.environ.get("EDGEPOI_MODELS", os.path.join(ROOT, "..", "shared", "models"))
NAMES = ["tflm_hello_world_int8", "tflm_micro_speech_int8", "emlearn_mnist_cnn_int8",
         "mlperf_tiny_kws01_dscnn_int8"]
TARGETS = {"tflm_micro_speech_int8": 64, "mlperf_tiny_kws01_dscnn_int8": 96}

# argv: model backend inputfile n_inputs stream(-|0|1) profile(0|1); prints "out HEX" per input
DEVICE_SCRIPT = """
import sys, gc
gc.collect()
def mem(tag):
    if prof:
        gc.collect()
        print("mem", tag, gc.mem_alloc())
prof = sys.argv[6] == "1"
mem("start")
from edgepoi.infer import Interpreter
mem("import")
kw = {}
if sys.argv[5] != "-":
    kw["stream_weights"] = sys.argv[5] == "1"
it = Interpreter(model_path=sys.argv[1], backend=sys.argv[2], **kw)
mem("Interpreter()")
it.allocate_tensors()
mem("allocate_tensors()")
d = it.get_input_details()[0]["index"]
o = it.get_output_details()[0]["index"]
n = int(sys.argv[4])
f = open(sys.argv[3], "rb")
x = bytearray(f.seek(0, 2) // n)  # one preallocated input buffer, as a device app would
for k in range(n):
    f.seek(k * len(x))
    f.readinto(x)
    it.set_tensor(d, x)
    it.invoke()
    print("out", bytes(it.get_tensor(o)).hex())
f.close()
mem("invoke()")
print("backend", it.backend)
"""


ROMFS = None  # the ROMFS image when --romfs


def run(bundle_dir, heap, script, args):
    from edgepoi_host.runtime.micropython import MicroPython
    mp = MicroPython(heapsize="%dK" % heap, path=[bundle_dir], sdk=False, romfs=ROMFS)
    res = mp.run([script] + [str(a) for a in args], check=False, timeout=900)
    return res.returncode, res.stdout, res.stderr


def passes(bundle_dir, heap, script, args, want):
    rc, out, err = run(bundle_dir, heap, script, args)
    got = [ln[4:] for ln in out.splitlines() if ln.startswith("out ")]
    return rc == 0 and "Traceback" not in out + err and got == want


def min_heap(bundle_dir, script, args, want, lo=8, hi=512, confirm=3):
    if not passes(bundle_dir, hi, script, args, want):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(bundle_dir, mid, script, args, want):
            hi = mid
        else:
            lo = mid
    # fragmentation: require `confirm` consecutive passing sizes from the reported one
    k = hi
    while k < hi + 64:
        if all(passes(bundle_dir, k + j, script, args, want) for j in range(1, confirm)):
            return k
        k += 1
        while not passes(bundle_dir, k, script, args, want):
            k += 1
    return k


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated substrings of model names")
    p.add_argument("--backends", default="ref,viper")
    p.add_argument("--inputs", type=int, default=3, help="golden inputs checked per run")
    p.add_argument("--stream", default="-", help="stream_weights: - (default), 0 or 1")
    p.add_argument("--bundle", default=None, help="a prebuilt unix bundle folder (default: build one)")
    p.add_argument("--profile", action="store_true", help="print heap in use after each stage (at 1M)")
    p.add_argument("--romfs", action="store_true", help="run the package from a ROMFS image (in place)")
    a = p.parse_args(argv)
    global ROMFS
    ROMFS = None
    if not os.path.isdir(MODELS):
        print("models folder %s not found (set EDGEPOI_MODELS)" % MODELS)
        return 2
    keys = [k for k in a.models.split(",") if k]
    names = [n for n in NAMES if not keys or any(k in n for k in keys)]
    backends = [b for b in a.backends.split(",") if b]
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = a.bundle
        if bundle_dir is None:
            from edgepoi_host import bundle
            res = bundle.build("unix", os.path.join(tmp, "sdk"), romfs=a.romfs)
            bundle_dir, ROMFS = res.out_dir, res.romfs_image
        elif a.romfs:
            ROMFS = os.path.join(bundle_dir, "romfs.img")
            if not os.path.isfile(ROMFS):
                print("--romfs: %s has no romfs.img" % bundle_dir)
                return 2
        print("package: %s" % ("ROMFS image (bytecode in place)" if ROMFS else ".mpy files (bytecode in RAM)"))
        script = os.path.join(tmp, "heap_probe.py")
        with open(script, "w") as f:
            f.write(DEVICE_SCRIPT)
        print("%-30s %-6s %9s %7s  %s" % ("model", "backend", "min heap", "target", "bit-exact inputs"))
        for name in names:
            path = os.path.join(MODELS, name + ".tflite")
            g = np.load(os.path.join(MODELS, "golden", name + ".golden.npz"))
            n = min(a.inputs, len(g["inputs"]))
            inp = os.path.join(tmp, name + ".in")
            with open(inp, "wb") as f:
                for k in range(n):
                    f.write(g["inputs"][k].astype(np.int8).tobytes())
            want = [g["out_tflm"][k].astype(np.int8).tobytes().hex() for k in range(n)]
            for backend in backends:
                args = [path, backend, inp, n, a.stream, "1" if a.profile else "0"]
                if a.profile:
                    _, out, err = run(bundle_dir, 1024, script, args)
                    prof = [ln.split(None, 2)[1:] for ln in out.splitlines() if ln.startswith("mem ")]
                    print("  %s %s: %s" % (name, backend, "  ".join("%s %d" % (t, int(v)) for t, v in prof)
                                           or err.strip()[-300:]))
                    continue
                kb = min_heap(bundle_dir, script, args, want)
                target = TARGETS.get(name)
                met = "" if not target else ("%dK %s" % (target, "met" if kb and kb <= target else "NOT"))
                if kb is None:
                    bad += 1
                print("%-30s %-6s %9s %7s  %d" % (name, backend, ">512K" if kb is None else "%dK" % kb, met, n))
                sys.stdout.flush()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
