"""Inference benchmark: median latency per model for edgepoi (numpy, ref) and the reference engines.

From one run it prints, per model in the shared models folder, the median latency of edgepoi's numpy
and (small models only) ref backends, of TFLM, tflite-runtime (default ruy kernels and the exact
BUILTIN_REF ones) and LiteRT (XNNPACK), the ratios numpy/engine (< 1 means edgepoi is faster) and
MAC/s. The issue's target: numpy at most 0.5x TFLM's latency on the MLPerf Tiny KWS, VWW, ResNet-8
and AD models (judged on the medians). All engines run single-threaded on the same inputs, taking
turns in blocks of runs (steady state: warm caches, as on a device running one model); "min np/tflm"
compares best runs, which a busy shared host disturbs least. Fast models get more rounds (until about
``--min-seconds`` per backend): a few dozen sub-millisecond runs are at the mercy of one load burst.

    python benchmarks/infer.py                      # every model (a minute or two)
    python benchmarks/infer.py --models kws,vww --runs 50
    python benchmarks/infer.py --min-seconds 0          # exactly ROUNDS rounds (the old behaviour)
    EDGEPOI_MODELS=/path/to/models python benchmarks/infer.py
"""
import argparse
import glob
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.environ.get("EDGEPOI_MODELS", os.path.join(ROOT, "..", "shared", "models"))
BACKENDS = ("numpy", "ref", "tflm", "tflite", "tflite_ref", "litert")
TARGETS = ("kws01", "vww01", "ic01_resnet8", "ad01")     # numpy <= 0.5x TFLM here
REF_MAX_MACS = 1_500_000                                 # pure Python: small models only
ROUNDS = 5                                               # backends take turns in blocks of runs
MAX_ROUNDS = 200                                         # fast models: more rounds (see --min-seconds)
TARGET_RATIO = 0.5


def open_backend(name, data):
    if name in ("numpy", "ref"):
        from edgepoi.infer import Interpreter
        return Interpreter(model_content=data, backend=name)
    from edgepoi.infer.engines import open_engine
    return open_engine(name, data)


def time_invoke(it, idx, inputs, k):
    for i, x in zip(idx, inputs[k % len(inputs)]):
        it.set_tensor(i, x)
    t0 = time.perf_counter()
    it.invoke()
    return time.perf_counter() - t0


def bench_model(path, runs, budget_s, min_s=0.0):
    """Steady-state median invoke latency per backend. Backends take turns in ROUNDS blocks of runs
    (each block's first run, which refills the caches another engine evicted, is dropped), so load
    changes on a shared host hit them all alike; more rounds (up to MAX_ROUNDS) while the model has
    taken less than ``min_s`` seconds per backend. Returns a row dict (seconds, or a string when n/a)."""
    with open(path, "rb") as f:
        data = f.read()
    row = {"model": os.path.basename(path)[:-len(".tflite")], "macs": None}
    its = {}
    from edgepoi.infer.engines import probe
    bad = probe([b for b in BACKENDS if b not in ("numpy", "ref")], data)   # some engines segfault
    for name in BACKENDS:
        if bad.get(name):
            row[name] = "n/a: " + bad[name][:40]
            continue
        try:
            it = open_backend(name, data)
            it.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - reported in the table
            row[name] = "n/a: " + (str(e).strip().splitlines() or [type(e).__name__])[0][:40]
            continue
        if row["macs"] is None and name in ("numpy", "ref"):
            row["macs"] = getattr(it, "macs", None)
        its[name] = it
    if "ref" in its and (row["macs"] or 0) > REF_MAX_MACS:
        del its["ref"]
        row["ref"] = "skip"
    if not its:
        return row
    first = next(iter(its.values()))
    rng = np.random.default_rng(0)
    inputs = [[rng.integers(np.iinfo(d["dtype"]).min, np.iinfo(d["dtype"]).max + 1,
                            size=tuple(int(s) for s in d["shape"]), dtype=d["dtype"])
               for d in first.get_input_details()] for _ in range(4)]
    times = {name: [] for name in its}
    failed = {}
    start = time.perf_counter()
    block = max(2, runs // ROUNDS)
    for rnd in range(MAX_ROUNDS):
        if rnd >= ROUNDS and time.perf_counter() - start >= min_s * len(its):
            break
        for name, it in its.items():
            if name in failed or (name == "ref" and rnd > 0):
                continue
            n = 3 if name == "ref" else block
            idx = [d["index"] for d in it.get_input_details()]
            try:
                ts = [time_invoke(it, idx, inputs, k) for k in range(n + 1)]
            except Exception as e:  # noqa: BLE001
                failed[name] = "fail: " + (str(e).strip().splitlines() or [type(e).__name__])[0][:40]
                continue
            times[name].extend(ts[1:])     # the block's first run refills the caches
        if time.perf_counter() - start > budget_s * len(its):
            break
    for name in its:
        t = times[name]
        row[name] = failed.get(name) or statistics.median(t)
        if name not in failed:
            row[name + "_min"] = min(t)
    return row


def ratio(row, a, b):
    if isinstance(row.get(a), float) and isinstance(row.get(b), float):
        return row[a] / row[b]
    return None


def render(rows):
    from rich.console import Console
    from rich.table import Table
    t = Table(title="edgepoi inference: median latency (ms), single thread; ratio = numpy / engine",
              title_justify="left")
    for c in ("model", "MMAC") + BACKENDS + ("np/tflm", "min np/tflm", "np/tflite", "np/tfl_ref", "np/litert",
                                             "np GMAC/s", "tflm GMAC/s", "target"):
        t.add_column(c, justify="left" if c == "model" else "right")
    for r in rows:
        cells = [r["model"][:34], "%.2f" % (r["macs"] / 1e6) if r["macs"] else "?"]
        for b in BACKENDS:
            v = r.get(b)
            cells.append("%.3f" % (v * 1e3) if isinstance(v, float) else str(v or "-")[:14])
        for b in ("tflm", "tflm_min", "tflite", "tflite_ref", "litert"):
            x = ratio(r, "numpy_min" if b == "tflm_min" else "numpy", b)
            cells.append("%.2fx" % x if x is not None else "-")
        for b in ("numpy", "tflm"):
            v = r.get(b)
            cells.append("%.2f" % (r["macs"] / v / 1e9) if r["macs"] and isinstance(v, float) else "-")
        x = ratio(r, "numpy", "tflm")
        if any(k in r["model"] for k in TARGETS):
            cells.append("[green]met[/green]" if x is not None and x <= TARGET_RATIO else "[red]MISSED[/red]")
        else:
            cells.append("")
        t.add_row(*cells)
    Console(width=None if sys.stdout.isatty() else 220).print(t)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated substrings of model names")
    p.add_argument("--runs", type=int, default=30,
                   help="timed runs per backend in %d blocks (fast models get more rounds)" % ROUNDS)
    p.add_argument("--budget", type=float, default=1.5, help="about this many seconds per backend and model")
    p.add_argument("--min-seconds", type=float, default=0.3,
                   help="fast models: more rounds until about this many seconds per backend")
    args = p.parse_args(argv)
    if not os.path.isdir(MODELS):
        print("benchmarks/infer.py: models folder %s not found (set EDGEPOI_MODELS)" % MODELS,
              file=sys.stderr)
        return 1
    wanted = [m for m in args.models.split(",") if m]
    paths = [p for p in sorted(glob.glob(os.path.join(MODELS, "*.tflite")))
             if "audio_preprocessor" not in p and not os.path.basename(p).startswith("derived_")
             and (not wanted or any(w in os.path.basename(p) for w in wanted))]
    rows = []
    for path in paths:
        print("benchmarking %s ..." % os.path.basename(path), file=sys.stderr, flush=True)
        rows.append(bench_model(path, args.runs, args.budget, args.min_seconds))
    render(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
