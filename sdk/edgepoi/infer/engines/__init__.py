"""Reference inference engines behind edgepoi's Interpreter API (CPython only, imported lazily).

Each engine wraps a third-party runtime — TFLM (the bit-exact oracle), tflite-runtime and LiteRT (fast
engines on a Pi) — and exposes the tflite_runtime Interpreter API plus ``backend``, ``bit_exact``,
``macs`` and ``arena_bytes``. Nothing here imports numpy or a runtime until an engine is opened.

    from edgepoi.infer.engines import open_engine, available_engines, fastest_exact
    it = open_engine("tflm", open("model.tflite", "rb").read())
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], x); it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])

Some runtimes crash the process on models they do not support (tflite-runtime and LiteRT segfault on
TFLM's int16-io SVDF model): host tools call ``probe(names, model_bytes)`` first, which tries each
engine in a child process.

Engine names and what they are (``golden`` names the column of shared/models/golden/*.npz they match):

    tflm          tflite-micro interpreter                       exact      out_tflm
    tflite_ref    tflite-runtime, BUILTIN_REF op resolver        exact but LSTM out_tfl_ref
    tflite        tflite-runtime, AUTO (default) op resolver     not exact  out_tfl_auto
    litert        ai-edge-litert, AUTO (XNNPACK)                 not exact  out_litert_auto
    litert_nodel  ai-edge-litert, BUILTIN_WITHOUT_DEFAULT_DELEGATES  no     out_litert_nodel
    litert_ref    ai-edge-litert, BUILTIN_REF                    not exact  out_litert_ref
"""


class EngineError(Exception):
    """An engine is missing, or refused or failed to run a model."""


class EngineSpec(object):
    """One registered engine: its module, op-resolver variant and golden column."""

    def __init__(self, name, module, variant, golden, doc):
        self.name = name
        self.module = module
        self.variant = variant
        self.golden = golden
        self.doc = doc

    def _load(self):
        if self.module == "tflm":
            from . import tflm as mod
        elif self.module == "tflite":
            from . import tflite as mod
        else:
            from . import litert as mod
        return mod

    def available(self):
        try:
            return self._load().available()
        except ImportError:
            return False

    def open(self, model_content):
        if not self.available():
            raise EngineError("engine %s is not installed" % self.name)
        return self._load().Engine(model_content=model_content, variant=self.variant)


ENGINES = {}
for _spec in (
        EngineSpec("tflm", "tflm", None, "out_tflm", "tflite-micro (bit-exact oracle)"),
        EngineSpec("tflite_ref", "tflite", "BUILTIN_REF", "out_tfl_ref", "tflite-runtime reference kernels"),
        EngineSpec("tflite", "tflite", "AUTO", "out_tfl_auto", "tflite-runtime default (ruy)"),
        EngineSpec("litert", "litert", "AUTO", "out_litert_auto", "LiteRT with XNNPACK"),
        EngineSpec("litert_nodel", "litert", "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "out_litert_nodel",
                   "LiteRT builtin kernels, no delegate"),
        EngineSpec("litert_ref", "litert", "BUILTIN_REF", "out_litert_ref", "LiteRT reference kernels")):
    ENGINES[_spec.name] = _spec

# Exact engines, fastest first (measured on the shared models: tflite-runtime's reference kernels run
# faster than the TFLM interpreter on conv models; see benchmarks/infer.py).
EXACT_ORDER = ("tflite_ref", "tflm")


def model_macs(model_content):
    """MACs per inference as edgepoi's interpreter counts them (None if it cannot load the model)."""
    try:
        from edgepoi.infer import Interpreter
        it = Interpreter(model_content=model_content, backend="ref")
        it.allocate_tensors()
        return it.macs
    except Exception:  # noqa: BLE001 - an unsupported model simply has no MAC count here
        return None


class LazyMacs(object):
    """Mixin: ``macs`` computed on first access from ``self._content``."""

    _macs = False

    @property
    def macs(self):
        if self._macs is False:
            self._macs = model_macs(self._content)
        return self._macs


def available(name):
    """True if engine ``name`` can be opened here."""
    spec = ENGINES.get(name)
    if spec is None:
        raise EngineError("unknown engine %r (known: %s)" % (name, ", ".join(ENGINES)))
    return spec.available()


def available_engines():
    """Names of the engines whose runtime is installed, in registry order."""
    return [n for n in ENGINES if ENGINES[n].available()]


def open_engine(name, model_content):
    """Open engine ``name`` on the model bytes ``model_content``.

    Raises:
        EngineError: unknown or missing engine, or the runtime rejected the model.
    """
    spec = ENGINES.get(name)
    if spec is None:
        raise EngineError("unknown engine %r (known: %s)" % (name, ", ".join(ENGINES)))
    return spec.open(model_content)


def probe(names, model_content, timeout=120):
    """Try engines on a model in child processes: allocate, then one invoke on zero inputs.

    Some runtimes crash the whole process on models they do not support (tflite-runtime's default
    resolver segfaults on TFLM's int16-io SVDF model), so host tools probe before opening in-process.
    Returns {name: None if it ran, else a one-line reason ("crashed (signal 11)", the error, ...)}.
    """
    import os
    import subprocess
    import sys
    import tempfile
    fd, path = tempfile.mkstemp(suffix=".tflite")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(model_content))
        procs = {}
        for name in names:
            procs[name] = subprocess.Popen(
                [sys.executable, "-c", "from edgepoi.infer.engines import _probe_child; _probe_child()",
                 name, path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out = {}
        for name, pr in procs.items():
            try:
                msg = pr.communicate(timeout=timeout)[0].decode(errors="replace").strip()
            except subprocess.TimeoutExpired:
                pr.kill()
                pr.communicate()
                out[name] = "timed out after %d s" % timeout
                continue
            if pr.returncode == 0:
                out[name] = None
            elif pr.returncode < 0:
                out[name] = "crashed (signal %d)" % -pr.returncode
            else:
                out[name] = (msg.splitlines() or ["failed (exit %d)" % pr.returncode])[-1]
        return out
    finally:
        os.unlink(path)


def _probe_child():
    import sys
    import numpy as np
    name, path = sys.argv[1], sys.argv[2]
    try:
        with open(path, "rb") as f:
            it = open_engine(name, f.read())
        it.allocate_tensors()
        for d in it.get_input_details():
            it.set_tensor(d["index"], np.zeros([int(x) for x in d["shape"]], d["dtype"]))
        it.invoke()
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        print("%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else ""))
        sys.exit(3)


def fastest_exact(model_content=None):
    """Name of the fastest installed engine that is bit-exact with TFLM (for this model, if given).

    tflite_ref is exact except on LSTM models; with ``model_content`` the candidates are probed in child
    processes first (see ``probe``), then opened to read ``bit_exact``. None when no exact engine runs.
    """
    names = [n for n in EXACT_ORDER if ENGINES[n].available()]
    if model_content is None:
        return names[0] if names else None
    bad = probe(names, model_content) if names else {}
    for name in names:
        if bad.get(name):
            continue
        try:
            if open_engine(name, model_content).bit_exact:
                return name
        except EngineError:
            continue
    return None
