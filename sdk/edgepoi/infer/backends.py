"""Backend glue for the Interpreter (imported lazily): per-op fast modules and numpy views (CPython).

``setup(interp, package)`` returns, per planned op, ``None`` (use the reference op) or
``(fast_module, args)``: for ``edgepoi.infer.fast_numpy`` the args are numpy arrays viewing the very
buffers the reference ops use (shaped like the tensors), for other packages the plain buffers.
Ops whose params say ``int16`` (16x8 kernels) use a fast module only if it sets ``SUPPORTS_INT16``.

Usage::

    fast = setup(interpreter, "edgepoi.infer.fast_numpy")
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
    if value.size != t.numel():
        raise ValueError("tensor %d (%s) wants shape %s, got %s" % (t.index, t.name, t.shape, list(value.shape)))
    np_view(np, t, buf).reshape(-1)[:] = value.reshape(-1)


def np_get(t, buf):
    """A numpy copy of tensor t (None without numpy)."""
    try:
        import numpy as np
    except ImportError:
        return None
    return np_view(np, t, buf).copy()


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


def setup(interp, package):
    from edgepoi.infer import ops
    np = None
    if package.endswith("fast_numpy"):
        import numpy as np
    tensors = interp._tl
    fast = []
    for k, (op, mod, params, bufs) in enumerate(interp._plan):
        if op is None:  # MicroPython plans keep no Operator objects
            op = interp._g.operators[k]
        name = ops.module_name(op.opcode)
        try:
            fmod = __import__(package + "." + name, None, None, ["eval"])
        except ImportError:
            fast.append(None)
            continue
        if params.get("int16") and not getattr(fmod, "SUPPORTS_INT16", False):
            fast.append(None)  # 16x8 variants need int64 requantization: reference unless declared
            continue
        if np is not None:
            idx = list(op.inputs) + list(op.outputs)
            args = [None if b is None else np_view(np, tensors[i], b) for i, b in zip(idx, bufs)]
        else:
            args = bufs
        fast.append((fmod, args))
    return fast
