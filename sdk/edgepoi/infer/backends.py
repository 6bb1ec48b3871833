"""Backend glue for the Interpreter (imported lazily): per-op fast modules and numpy views (CPython).

``Setup(interp, package, op_modules)`` gives per planned op ``None`` (use the reference op) or
``(fast_module, args)``: for ``edgepoi.infer.fast_numpy`` the args are numpy arrays viewing the very
buffers the reference ops use (shaped like the tensors), for other packages the plain buffers.
Ops whose params say ``int16`` (16x8 kernels) use a fast module only if it sets ``SUPPORTS_INT16``.

Usage::

    s = Setup(interpreter, "edgepoi.infer.fast_viper", op_modules)
    params = s.op(k, params)                    # right after op k's prepare
    fast = s.finish()                           # once interpreter._plan has its buffers
"""
NP_DTYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
             10: "float64", 15: "uint32", 16: "uint16"}


def np_view(np, t, buf):
    """A numpy array viewing ``buf`` (no copy) with tensor t's dtype and shape."""
    dt = np.dtype(NP_DTYPES.get(t.type, "uint8"))
    if isinstance(buf, memoryview) and buf.format == "B":
        a = np.frombuffer(buf, dtype=np.uint8).view(dt)
    else:
        a = np.frombuffer(buf, dtype=dt)
    return a.reshape([int(d) for d in t.shape]) if t.shape else a.reshape(())


def np_set(t, buf, value):
    """set_tensor of a numpy array (dtype and size checked) into tensor t's buffer."""
    import numpy as np
    want = np.dtype(NP_DTYPES[t.type])
    if value.dtype != want:
        raise ValueError("tensor %d (%s) wants %s, got %s" % (t.index, t.name, want, value.dtype))
    if value.size != t.n:
        raise ValueError("tensor %d (%s) wants shape %s, got %s" % (t.index, t.name, t.shape, list(value.shape)))
    np_view(np, t, buf).reshape(-1)[:] = value.reshape(-1)


def np_get(t, buf):
    """A numpy copy of tensor t (None without numpy)."""
    try:
        import numpy as np
    except ImportError:
        return None
    return np_view(np, t, buf).copy()


def details(interp, indices):
    """Interpreter.get_*_details: a tflite_runtime-style dict per tensor index (numpy-flavoured on
    CPython with numpy). On an allocated MicroPython interpreter, tensors other than the graph's inputs
    and outputs come from parsing the model again, once for all of them."""
    again = interp._plan is not None and interp._tl is None
    if again and len(indices) > 1:
        interp._tensors()  # parsed once for all of them, dropped at the end
    out = []
    for i in indices:
        t = interp._t(i)
        d = {"index": i, "name": t.name, "shape": list(t.shape), "shape_signature": list(t.shape_signature),
             "dtype": t.dtype, "quantization": t.quantization,
             "quantization_parameters": {"scales": list(t.scales), "zero_points": list(t.zero_points),
                                         "quantized_dimension": t.qdim},
             "sparsity_parameters": {}}
        numpy_details(d, t)
        out.append(d)
    if again and interp._tl is not None:
        interp._shed()
    return out


def numpy_details(d, t):
    """Turn a details dict into tflite_runtime's numpy flavour (shape int32 array, dtype class)."""
    try:
        import numpy as np
    except ImportError:
        return
    d["shape"] = np.array(t.shape, dtype=np.int32)
    d["shape_signature"] = np.array(t.shape_signature, dtype=np.int32)
    d["dtype"] = np.dtype(NP_DTYPES.get(t.type, "uint8")).type
    q = d["quantization_parameters"]
    q["scales"] = np.array(t.scales, dtype=np.float32)
    q["zero_points"] = np.array(t.zero_points, dtype=np.int32)


class Setup:
    """The fast modules of an interpreter's ops (``mods``: the reference op modules, in plan order).
    ``op(k, params)`` right after op k's prepare imports op k's fast module (or None: the reference op
    runs) and returns the params to plan: a fast module's optional ``setup(params)``
    precomputes its state once and returns the params its ``eval`` gets from then on (it may drop what
    only the reference op reads). ``finish()``, once the plan has its buffers, returns per op None or
    (fast module, args)."""

    def __init__(self, interp, package, mods):
        self.interp = interp
        self.package = package
        self.names = [mod.__name__.rpartition(".")[2] for mod in mods]  # fast modules: same names
        self.mods = []

    def op(self, k, params):
        try:
            fmod = __import__(self.package + "." + self.names[k], None, None, ["eval"])
        except ImportError:
            fmod = None
        if fmod is not None and params.get("int16") and not getattr(fmod, "SUPPORTS_INT16", False):
            fmod = None  # 16x8 variants need int64 requantization: reference unless declared
        self.mods.append(fmod)
        prep = getattr(fmod, "setup", None)
        return prep(params) if prep is not None else params

    def finish(self):
        pkg = __import__(self.package, None, None, ["finish"])
        if hasattr(pkg, "finish"):
            pkg.finish()  # the package's shared buffers, once
        np = None
        if self.package.endswith("fast_numpy"):
            import numpy as np
        fast = []
        for fmod, (op, mod, params, bufs) in zip(self.mods, self.interp._plan):
            if fmod is None:
                fast.append(None)
                continue
            if np is not None:
                tensors = self.interp._tl
                idx = list(op.inputs) + list(op.outputs)
                args = [None if b is None else np_view(np, tensors[i], b) for i, b in zip(idx, bufs)]
            else:
                args = bufs
            fast.append((fmod, args))
        return fast
