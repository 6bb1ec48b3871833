"""Interpreter with the tflite_runtime API over the pure-Python reference ops (portable).

Usage::

    from edgepoi.infer import Interpreter
    it = Interpreter(model_path="model.tflite", backend="ref")
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], x)       # numpy array on CPython; bytes/bytearray/array anywhere
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])
    print(it.arena_bytes, it.macs, it.backend, it.bit_exact)

Backends: ``ref`` (plain Python, MicroPython-safe, the truth); ``numpy`` (per op, a module in
``edgepoi.infer.fast_numpy`` with ``eval(params, arrays)`` when present, else the reference op);
``viper`` (per op, ``edgepoi.infer.fast_viper`` modules with ``eval(params, bufs)``, else reference);
``auto`` = numpy where numpy and the fast path exist, else viper on MicroPython when present, else ref.

Buffers: on CPython the model is a signed memoryview (int8 weights read without a copy) and the arena
an ``array('b')``; on MicroPython the model and the arena are bytearrays and int8 tensors are signed
``uctypes`` views into them (indexable, buffer protocol for viper), so nothing is copied twice.

Streaming (``stream_weights``; default True on MicroPython when ``model_path`` is given, False
elsewhere; needs ``model_path``): the model file stays open and is never read whole; right before each
op its constant int8 inputs are read into one scratch buffer of ``scratch_bytes`` (``stream.py``).
Results are bit-exact with the in-RAM path. ``close()`` releases the file.

Small heaps (MicroPython): after ``allocate_tensors()`` the interpreter keeps only what ``invoke()``
needs (per op: its module, params and buffers) and what the tensor calls need of the graph's inputs,
outputs and variables (``_Info`` records); the parsed model and the parser, loader and op-registry
modules are dropped (``sys.modules`` entries removed) so the GC reclaims their code. Asking for any
other tensor (``get_tensor_details()``, a streamed constant) parses the model again, on demand.
See docs/INFERENCE.md for the memory model and the measured heap minima.
"""
import array
import sys

from edgepoi.infer import ModelError  # (the package defines it before importing this module)

_MICRO = sys.implementation.name == "micropython"
_FAST_PKG = {"numpy": "edgepoi.infer.fast_numpy", "viper": "edgepoi.infer.fast_viper"}
# what a MicroPython interpreter drops once allocated (re-imported on demand): the parser, the loader
_PARSER = ("model", "flatbuf", "schema")


def _int8_view(data, offset, n):
    """MicroPython: a signed int8 view of n model bytes at offset, without copying (uctypes)."""
    try:
        import uctypes
    except ImportError:
        return array.array("b", data[offset:offset + n])
    layout = {"v": (uctypes.ARRAY | 0, uctypes.INT8 | n)}
    return uctypes.struct(uctypes.addressof(data) + offset, layout).v


def _unload(*names):
    """Forget modules edgepoi.infer.<name> (e.g. "loader", "ops.common") so the GC can reclaim their
    code once nothing else refers to them; a later import loads them again."""
    for name in names:
        full = "edgepoi.infer." + name
        sys.modules.pop(full, None)
        parent, _, attr = full.rpartition(".")
        pkg = sys.modules.get(parent)
        if pkg is not None and attr in pkg.__dict__:
            delattr(pkg, attr)
    if _MICRO:
        import gc
        gc.collect()


class _Info:
    """What the tensor calls need of one tensor (a ``model.Tensor`` may be gone): index, name, shape,
    shape_signature, type, dtype, code (array typecode or None), n (values), nbytes, const, quantization
    (scale, zero point), scales, zero_points, qdim."""

    def __init__(self, t):
        from edgepoi.infer import schema
        self.index = t.index
        self.name = t.name
        self.shape = list(t.shape)
        self.shape_signature = list(t.shape_signature)
        self.type = t.type
        self.dtype = schema.TYPE_NAMES.get(t.type, "?")
        self.code = schema.TYPE_CODES.get(t.type)
        self.n = t.numel()
        self.nbytes = t.nbytes()
        self.const = t.data is not None and not t.is_variable
        self.quantization = (t.scale, t.zero_point if t.nq else 0)
        self.scales = t.scales
        self.zero_points = t.zero_points
        self.qdim = t.qdim


class Interpreter:
    """A TFLite int8 model on the portable kernels; see the module docstring.

    Args:
        model_path / model_content: the .tflite file, or its bytes.
        backend: "ref", "numpy", "viper" or "auto".
        max_arena_bytes: fail in allocate_tensors() when the tensors need more (default: free heap).
        stream_weights: keep weights in the file and read them per op (needs model_path); None =
            True on MicroPython with a model_path, else False. ``scratch_bytes`` tells its buffer.
    """

    def __init__(self, model_path=None, model_content=None, backend="auto", num_threads=None,
                 max_arena_bytes=None, stream_weights=None):
        if stream_weights is None:
            stream_weights = _MICRO and model_path is not None and model_content is None
        self.stream_weights = bool(stream_weights)
        self._file = None
        self._size = 0
        # the modules that stay load before the parse, so its garbage and its small objects end up
        # above them (a small heap needs large free blocks afterwards)
        from edgepoi.infer import loader
        self.backend = loader.resolve_backend(backend)
        if self.stream_weights:
            if model_path is None or model_content is not None:
                raise ValueError("stream_weights needs model_path (and no model_content)")
            from edgepoi.infer import stream  # noqa: F401
            from edgepoi.infer.flatbuf import FileBuf
            f = open(model_path, "rb")
            f.seek(0, 2)
            self._size = f.tell()
            self._file = f
            self._data = FileBuf(f, self._size)
        else:
            self._data = loader.load_bytes(model_path, model_content)
        self._tl = None
        try:
            self._tensors()
        except Exception:
            self.close()
            raise
        self._nt = len(self._tl)
        self._info = {}
        self._plan = None
        self._inputs = list(self._g.inputs)
        self._outputs = list(self._g.outputs)
        self._max_arena = max_arena_bytes
        self._reserved = sizes = None
        if _MICRO:  # pass 1 of the plan: the sizes of the big buffers (see bind.reserve)
            try:
                sizes = loader.sizes(self)
            except ModelError:
                pass  # allocate_tensors() reports it
        loader = None
        if _MICRO:  # the loader leaves first: the big buffers take its place
            _unload("loader")
        if sizes is not None:
            from edgepoi.infer import bind
            bind.reserve(self, sizes[0], sizes[1])
            _unload("bind")
        self.bit_exact = True  # every backend here must match the reference bit for bit
        self.arena_bytes = 0
        self.macs = 0
        self._bufs = None
        self._raw = {}
        self._stream = None
        self._vars = None
        self.scratch_bytes = 0

    def _tensors(self):
        """The model's tensors (decoded on indexing), parsing the model (again) when they were dropped."""
        if self._tl is None:
            from edgepoi.infer.model import Model
            data = self._data
            if data is None:  # streamed and dropped: parse through a new window on the open file
                if self._file is None:
                    raise ValueError("the model file is closed")
                from edgepoi.infer.flatbuf import FileBuf
                data = self._data = FileBuf(self._file, self._size)
            self._model = Model(data)
            if _MICRO:
                import gc
                gc.collect()  # (what follows fills holes the parse left, not the space above it)
            self._g = self._model.subgraphs[0]
            # tensors are decoded from the flatbuffer when indexed; CPython keeps them decoded (speed)
            self._tl = self._g.tensors if _MICRO else list(self._g.tensors)
        return self._tl

    def _t(self, index):
        """The _Info of tensor index: kept for the graph's inputs and outputs; any other one on an
        allocated MicroPython interpreter comes from parsing the model again (then dropped)."""
        r = self._info.get(index)
        if r is None:
            drop = _MICRO and self._plan is not None and self._tl is None
            r = _Info(self._tensors()[index])
            if drop:
                self._shed()
            elif not _MICRO or self._plan is None:
                self._info[index] = r
        return r

    def _shed(self):
        """MicroPython: drop the parsed model and the parser, loader and prepare-only modules."""
        self._tl = self._g = self._model = None
        if self._file is not None:
            self._data = None
        _unload("loader", "ops.common", "ops.geometry", *_PARSER)

    def close(self):
        """Close the model file of a streaming interpreter (it cannot invoke afterwards)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- allocation ---------------------------------------------------------------------------------
    def allocate_tensors(self):
        from edgepoi.infer import loader
        tl = self._tensors()
        layout = loader.plan(self)
        loader = None
        if _MICRO:  # allocation-only code leaves the heap before the params fill it
            _unload("loader", "arena", "bind")
        setup = None
        if self.backend != "ref":  # (each op's fast module loads right after its prepare)
            from edgepoi.infer import backends
            setup = backends.Setup(self, _FAST_PKG[self.backend], layout[5])
        macs = 0
        params = []
        ops = layout[6]
        for k, mod in enumerate(layout[5]):
            if _MICRO:
                import gc
                gc.collect()
            op = ops[k] if ops is not None else self._g.operators[k]
            p = mod.prepare(op, tl)
            macs += p.get("macs", 0)
            if setup is not None:  # right away: a fast module may keep less of the params
                if _MICRO:
                    gc.collect()  # (its state then packs into the holes prepare's garbage left)
                p = setup.op(k, p)
            params.append(p)
        self.macs = macs
        p = op = tl = ops = mod = None
        if _MICRO:  # the parser and the prepare-only code leave; what binding makes (and the per-op
            self._shed()  # state, moved) then fills the space they held
            _unload("ops")
        from edgepoi.infer import bind
        bind.bind(self, layout, params)
        layout = params = bind = None
        self._fast = setup.finish() if setup is not None else None
        setup = None
        if _MICRO:  # (the plan holds the op and fast modules)
            _unload("bind", "backends")
        self.reset_all_variables()

    # -- running ------------------------------------------------------------------------------------
    def _need(self):
        if self._plan is None:
            raise RuntimeError("call allocate_tensors() first")

    def invoke(self):
        self._need()
        fast = self._fast
        st = self._stream
        if st is not None:
            for k, (op, mod, params, bufs) in enumerate(self._plan):
                st.run(k, mod, params, bufs, fast[k] if fast is not None else None)
            return
        if fast is None:
            for op, mod, params, bufs in self._plan:
                mod.eval(params, bufs)
            return
        for k, (op, mod, params, bufs) in enumerate(self._plan):
            f = fast[k]
            if f is not None:
                f[0].eval(params, f[1])
            else:
                mod.eval(params, bufs)

    def reset_all_variables(self):
        self._need()
        for k, v in self._vars:
            b = self._bufs[k]
            for i in range(len(b)):
                b[i] = v

    # -- tensors ------------------------------------------------------------------------------------
    def _details(self, indices):
        from edgepoi.infer import backends  # (rarely called: its code is not kept on a small heap)
        out = backends.details(self, indices)
        if _MICRO:
            _unload("backends")
        return out

    def get_input_details(self):
        return self._details(self._inputs)

    def get_output_details(self):
        return self._details(self._outputs)

    def get_tensor_details(self):
        return self._details(range(self._nt))

    def _buf(self, index):
        self._need()
        b = self._bufs[index] if 0 <= index < len(self._bufs) else None
        if b is None and 0 <= index < len(self._bufs) and self._stream is not None:
            drop = _MICRO and self._tl is None
            t = self._tensors()[index]
            if t.data is not None and not t.is_variable:  # a streamed constant: read from the file
                from edgepoi.infer import loader
                b = loader.const_buffer(self, t)
            if drop:
                self._shed()
                _unload("ops")  # (loader imports the registry)
        if b is None:
            raise ValueError("no tensor with index %r" % (index,))
        return b

    def set_tensor(self, index, value):
        buf = self._buf(index)
        t = self._t(index)
        if t.const:
            raise ValueError("tensor %d (%s) is a constant" % (index, t.name))
        n = t.n
        if not _MICRO and hasattr(value, "dtype"):
            from edgepoi.infer import backends
            backends.np_set(t, buf, value)
            return
        if isinstance(value, (bytes, bytearray)) and t.type != 3:  # not UINT8: raw bytes
            if len(value) != t.nbytes:
                raise ValueError("tensor %d (%s) wants %d bytes, got %d" % (index, t.name, t.nbytes, len(value)))
            off = self._raw.get(index)
            if off is not None:
                self._arena[off:off + len(value)] = value
            else:
                memoryview(buf)[:] = memoryview(array.array(t.code, value))
            return
        if len(value) != n:
            raise ValueError("tensor %d (%s) wants %d values, got %d" % (index, t.name, n, len(value)))
        for i in range(n):
            buf[i] = value[i]

    def get_tensor(self, index):
        buf = self._buf(index)
        t = self._t(index)
        if not _MICRO:
            from edgepoi.infer import backends
            a = backends.np_get(t, buf)
            if a is not None:
                return a
        off = self._raw.get(index)
        if off is not None:
            return array.array("b", self._arena[off:off + t.nbytes])
        return array.array(t.code or "B", buf)

