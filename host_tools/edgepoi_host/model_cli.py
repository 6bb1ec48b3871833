"""``edgepoi model info|check|bench``: inspect an int8 .tflite model, check edgepoi against TFLM, time it.

    edgepoi model info kws.tflite
    edgepoi model check kws.tflite --inputs 20 --backend numpy     # exit 1 on any differing byte
    edgepoi model bench kws.tflite --backends numpy,tflm,tflite,litert --runs 50

``main(argv)`` returns the exit status; every failure is one ``edgepoi model: message`` line on stderr.
Goldens (``<stem>.golden.npz`` with ``inputs`` and ``out_tflm``) are looked up beside the model, in a
``golden/`` folder beside it and in ``$EDGEPOI_MODELS/golden``.
"""
import argparse
import collections
import os
import statistics
import sys
import time

import numpy as np

OURS = ("ref", "numpy")


class CliError(Exception):
    pass


def _console():
    from rich.console import Console
    return Console(width=None if sys.stdout.isatty() else 120, highlight=False)


def _table(title, *cols):
    from rich.table import Table
    t = Table(title=title, title_justify="left")
    for c in cols:
        t.add_column(c, justify="right" if c[:1] in "#" or c.endswith(("ms", "x", "bytes", "MAC/s"))
                     else "left")
    return t


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CliError("%s: %s" % (path, e.strerror or e))


def is_ours(name):
    return name in OURS or name in ("auto", "viper")


def open_backend(name, data):
    """An interpreter for ``name``: one of ours (ref, numpy, viper, auto) or an engine adapter."""
    if is_ours(name):
        from edgepoi.infer import Interpreter
        return Interpreter(model_content=data, backend=name)
    from edgepoi.infer.engines import open_engine
    return open_engine(name, data)


def probe_engines(names, data):
    """{engine: reason it cannot run this model, or None}: engines are tried in child processes first
    because some crash the process on models they do not support."""
    from edgepoi.infer.engines import ENGINES, probe
    engines = [n for n in names if not is_ours(n) and n in ENGINES]
    return probe(engines, data) if engines else {}


def random_inputs(details, n, rng):
    out = []
    for _ in range(n):
        xs = []
        for d in details:
            info = np.iinfo(d["dtype"])
            xs.append(rng.integers(info.min, info.max + 1, size=tuple(int(s) for s in d["shape"]),
                                   dtype=d["dtype"]))
        out.append(xs)
    return out


def run(it, inputs):
    """Outputs (list per input of arrays per output) with variables reset before each input."""
    ins, outs = it.get_input_details(), it.get_output_details()
    res = []
    for xs in inputs:
        it.reset_all_variables()
        for d, x in zip(ins, xs):
            it.set_tensor(d["index"], x)
        it.invoke()
        res.append([np.array(it.get_tensor(d["index"])) for d in outs])
    return res


def differing_bytes(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return a.nbytes or 1
    return int((a.view(np.uint8) != b.view(np.uint8)).sum())


def find_golden(path):
    d, stem = os.path.split(os.path.abspath(path))
    stem = stem.rsplit(".", 1)[0]
    dirs = [d, os.path.join(d, "golden")]
    if os.environ.get("EDGEPOI_MODELS"):
        dirs.append(os.path.join(os.environ["EDGEPOI_MODELS"], "golden"))
    for folder in dirs:
        p = os.path.join(folder, stem + ".golden.npz")
        if os.path.exists(p):
            return p
    return None


def _load(path):
    data = _read(path)
    from edgepoi.infer.model import Model
    model = Model(data)
    return data, model


def cmd_info(args, con):
    data, model = _load(args.path)
    g = model.subgraphs[0]
    con.print("[bold]%s[/bold]  %d bytes, schema v%d, %d subgraph(s), %d ops, %d tensors"
              % (args.path, len(data), model.version, len(model.subgraphs), len(g.operators),
                 len(g.tensors)))
    ops = collections.Counter(op.name for sg in model.subgraphs for op in sg.operators)
    t = _table("ops", "op", "# count")
    for name, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])):
        t.add_row(name, str(n))
    con.print(t)
    t = _table("tensors", "# index", "name", "shape", "dtype", "quantization", "role")
    roles = {i: "input" for i in g.inputs}
    roles.update({i: "output" for i in g.outputs})
    for x in g.tensors:
        role = roles.get(x.index, "const" if x.data is not None else ("variable" if x.is_variable else ""))
        if len(x.scales) > 1:
            q = "per-channel x%d (dim %d)" % (len(x.scales), x.qdim)
        elif x.scales:
            q = "scale %.6g, zp %d" % (x.scale, x.zero_point)
        else:
            q = "-"
        t.add_row(str(x.index), x.name[:48], "x".join(str(s) for s in x.shape) or "scalar",
                  x.type_name, q, role)
    con.print(t)
    t = _table("backends", "backend", "runs it", "bit-exact", "note")
    macs = arena = None
    names = ("ref", "numpy", "tflm", "tflite_ref", "tflite", "litert")
    bad = probe_engines(names, data)
    for name in names:
        if bad.get(name):
            t.add_row(name, "no", "-", bad[name])
            continue
        try:
            it = open_backend(name, data)
            it.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - reported per backend, never fatal here
            t.add_row(name, "no", "-", _line(e))
            continue
        if name == "ref":
            macs, arena = getattr(it, "macs", None), getattr(it, "arena_bytes", None)
        t.add_row(name, "yes", "yes" if it.bit_exact else "no", "")
    con.print(t)
    con.print("MACs per inference: %s    tensor arena: %s bytes"
              % ("{:,}".format(macs) if macs is not None else "?",
                 "{:,}".format(arena) if arena is not None else "?"))
    return 0


def cmd_check(args, con):
    data, _ = _load(args.path)
    ours = open_backend(args.backend, data)
    ours.allocate_tensors()
    bad = probe_engines(["tflm"], data).get("tflm")
    if bad:
        raise CliError("TFLM cannot run this model: %s" % bad)
    tflm = open_backend("tflm", data)
    tflm.allocate_tensors()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    sets = [("random (seed %d)" % seed,
             random_inputs(ours.get_input_details(), args.inputs, np.random.default_rng(seed)), None)]
    gp = find_golden(args.path)
    if gp:
        z = np.load(gp)
        sets.insert(0, ("golden " + os.path.basename(gp), [[x] for x in z["inputs"]],
                        [[y] for y in z["out_tflm"]] if "out_tflm" in z.files else None))
    t = _table("%s vs TFLM: %s" % (args.backend, os.path.basename(args.path)),
               "inputs", "# n", "output", "reference", "differing bytes")
    total = 0
    names = [d["name"] or str(d["index"]) for d in ours.get_output_details()]
    for label, inputs, golden in sets:
        got = run(ours, inputs)
        refs = [("tflm live", run(tflm, inputs))]
        if golden is not None:
            refs.append(("out_tflm", golden))
        for rname, want in refs:
            for j, name in enumerate(names):
                if rname == "out_tflm" and j > 0:
                    continue
                n = sum(differing_bytes(o[j], w[j]) for o, w in zip(got, want))
                total += n
                t.add_row(label, str(len(inputs)), name, rname, ("[red]%d[/red]" % n) if n else "0")
    con.print(t)
    if not gp:
        con.print("no golden npz found for %s (random inputs only)" % args.path)
    con.print("[bold]%s[/bold]: %d differing bytes" % ("FAIL" if total else "OK", total))
    return 1 if total else 0


def time_backend(it, inputs, runs):
    ins = it.get_input_details()
    times = []
    for k in range(runs + 1):
        for d, x in zip(ins, inputs[k % len(inputs)]):
            it.set_tensor(d["index"], x)
        t0 = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])   # the first run warms caches


def cmd_bench(args, con):
    data, _ = _load(args.path)
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    from edgepoi.infer.engines import ENGINES
    unknown = [n for n in names if not is_ours(n) and n not in ENGINES]
    if unknown or not names:
        raise CliError("unknown backend %r (known: %s)" % (unknown[0] if unknown else "",
                                                          ", ".join(OURS + tuple(ENGINES))))
    macs = None
    results = []
    bad = probe_engines(names, data)
    for name in names:
        if bad.get(name):
            results.append((name, None, None, bad[name]))
            continue
        try:
            it = open_backend(name, data)
            it.allocate_tensors()
        except Exception as e:  # noqa: BLE001
            results.append((name, None, None, _line(e)))
            continue
        macs = macs or getattr(it, "macs", None)
        inputs = random_inputs(it.get_input_details(), 4, np.random.default_rng(0))
        results.append((name, it.bit_exact, time_backend(it, inputs, args.runs), ""))
    if macs is None:
        try:
            macs = open_backend("ref", data).macs
        except Exception:  # noqa: BLE001 - MAC/s then shows "?"
            macs = None
    base = dict((r[0], r[2]) for r in results if r[2]).get("tflm")
    t = _table("%s: median of %d runs" % (os.path.basename(args.path), args.runs),
               "backend", "exact", "median ms", "vs tflm x", "MAC/s", "note")
    for name, exact, sec, note in results:
        if sec is None:
            t.add_row(name, "-", "-", "-", "-", note)
            continue
        t.add_row(name, "yes" if exact else "no", "%.4g" % (sec * 1e3),
                  "%.2f" % (sec / base) if base else "-",
                  "%.3g" % (macs / sec) if macs else "?", note)
    con.print(t)
    return 0 if any(r[2] is not None for r in results) else 1


def _line(e):
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def build_parser():
    p = argparse.ArgumentParser(prog="edgepoi model", description="inspect, check and benchmark models")
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="ops, tensors, quantization, MACs, arena bytes, backends")
    i.add_argument("path")
    c = sub.add_parser("check", help="edgepoi vs TFLM on random inputs and the goldens")
    c.add_argument("path")
    c.add_argument("--inputs", type=int, default=10, help="random inputs (default 10)")
    c.add_argument("--backend", choices=OURS, default="numpy")
    c.add_argument("--seed", type=int, default=None)
    b = sub.add_parser("bench", help="median latency per backend and ratios to TFLM")
    b.add_argument("path")
    b.add_argument("--backends", default="numpy,tflm,tflite,litert")
    b.add_argument("--runs", type=int, default=20)
    return p


def main(argv=None):
    """Run ``edgepoi model ...`` with ``argv`` (e.g. ["info", PATH]); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if getattr(args, "inputs", 1) < 0 or getattr(args, "runs", 1) < 1:
        print("edgepoi model: --inputs must be >= 0 and --runs >= 1", file=sys.stderr)
        return 1
    con = _console()
    try:
        return {"info": cmd_info, "check": cmd_check, "bench": cmd_bench}[args.cmd](args, con)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one line, exit 1 (ModelError, EngineError, CliError...)
        print("edgepoi model: %s" % _line(e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
