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
elsewhere): the model file stays open and is never read whole. Its flatbuffer metadata is read through
a 256-byte window (``flatbuf.FileBuf``), tensors and operators are decoded when indexed, and right
before each op its constant int8 inputs are read (seek/readinto) into one scratch buffer of
``scratch_bytes`` (the largest op's constants; a larger FULLY_CONNECTED layer runs in chunks of whole
weight rows). Biases and multipliers live in the op params (``array('i')``). Results are bit-exact
with the in-RAM path. ``close()`` releases the file. ``stream_weights=True`` needs ``model_path``.
See docs/INFERENCE.md for the memory model and the measured heap minima.
"""
import array
import sys

from edgepoi.infer import ops, schema
from edgepoi.infer.flatbuf import FileBuf, ModelError
from edgepoi.infer.model import Model, opcodes_of

_MICRO = sys.implementation.name == "micropython"
_FAST_PKG = {"numpy": "edgepoi.infer.fast_numpy", "viper": "edgepoi.infer.fast_viper"}


def _uctypes():
    try:
        import uctypes  # noqa: F401
        return True
    except ImportError:
        return False


def _int8_view(data, offset, n):
    """MicroPython: a signed int8 view of n model bytes at offset, without copying (uctypes)."""
    try:
        import uctypes
    except ImportError:
        return array.array("b", data[offset:offset + n])
    layout = {"v": (uctypes.ARRAY | 0, uctypes.INT8 | n)}
    return uctypes.struct(uctypes.addressof(data) + offset, layout).v


def _unload(name):
    """Forget module edgepoi.infer.<name> (e.g. "loader", "ops.common") so the GC can reclaim its code
    once nothing else refers to it; a later import loads it again."""
    full = "edgepoi.infer." + name
    sys.modules.pop(full, None)
    parent, _, attr = full.rpartition(".")
    pkg = sys.modules.get(parent)
    if pkg is not None and attr in pkg.__dict__:
        delattr(pkg, attr)


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
        if self.stream_weights:
            if model_path is None or model_content is not None:
                raise ValueError("stream_weights needs model_path (and no model_content)")
            f = open(model_path, "rb")
            f.seek(0, 2)
            n = f.tell()
            self._file = f
            self._data = FileBuf(f, n)
        else:
            from edgepoi.infer import loader
            self._data = loader.load_bytes(model_path, model_content)
        try:
            self._model = Model(self._data)
        except Exception:
            self.close()
            raise
        self._g = self._model.subgraphs[0]
        # tensors are decoded from the flatbuffer when indexed; CPython keeps them decoded (speed)
        self._tl = self._g.tensors if _MICRO else list(self._g.tensors)
        from edgepoi.infer import loader
        self.backend = loader.resolve_backend(backend)
        self._reserved = None
        self._max_arena = max_arena_bytes
        if _MICRO:
            try:  # the big buffers while the heap is still compact (see loader.reserve)
                self._reserved = loader.reserve(self)
            except (ModelError, MemoryError):
                self._reserved = None  # allocate_tensors() retries and reports
            _unload("loader")
        # import the op modules: their code then packs above the big buffers
        for code in opcodes_of(self._data):
            ops.preload(code)
        self.bit_exact = True  # every backend here must match the reference bit for bit
        self.arena_bytes = 0
        self.macs = 0
        self._plan = None
        self._bufs = None
        self._raw = {}
        self._stream = None
        self._vars = None
        self.scratch_bytes = 0

    def close(self):
        """Close the model file of a streaming interpreter (it cannot invoke afterwards)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- allocation ---------------------------------------------------------------------------------
    def allocate_tensors(self):
        from edgepoi.infer import loader
        operators, mods, st = loader.allocate(self)
        if _MICRO:  # allocation-only code leaves the heap before the params fill it
            _unload("loader")
            _unload("arena")
        bufs = self._bufs
        plan = []
        macs = 0
        for k, op in enumerate(operators):
            if _MICRO:
                import gc
                gc.collect()
            params = mods[k].prepare(op, self._tl)
            macs += params.get("macs", 0)
            io = [bufs[i] if i >= 0 else None for i in op.inputs] + [bufs[i] for i in op.outputs]
            if st is not None:
                st.bind(k, io)  # its streamed inputs point at the weight scratch
            plan.append([None if _MICRO else op, mods[k], params, io])
        if st is not None:
            st.done()
        if _MICRO:  # prepare-only helpers (op modules import them inside prepare)
            _unload("ops.common")
            _unload("ops.geometry")
            import gc
            gc.collect()
        self._stream = st
        self.macs = macs
        self._plan = plan
        self._fast = None
        if self.backend != "ref":
            from edgepoi.infer import backends
            self._fast = backends.setup(self, _FAST_PKG[self.backend])
            if _MICRO:
                _unload("backends")
        self.reset_all_variables()

    def _const_buffer(self, t):
        from edgepoi.infer import loader
        b = loader.const_buffer(self, t)
        if _MICRO:
            _unload("loader")
        return b

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
        if self._vars is None:
            self._vars = [t.index for t in self._tl if t.is_variable]
        for k in self._vars:
            t = self._tl[k]
            b = self._bufs[k]
            v = t.zero_point if t.type in (schema.INT8, schema.INT16) else 0
            for i in range(len(b)):
                b[i] = v

    # -- tensors ------------------------------------------------------------------------------------
    def _details(self, indices):
        out = []
        for i in indices:
            t = self._tl[i]
            d = {"index": i, "name": t.name, "shape": list(t.shape), "shape_signature": list(t.shape_signature),
                 "dtype": schema.TYPE_NAMES.get(t.type, "?"),
                 "quantization": (t.scale, t.zero_point if t.nq else 0),
                 "quantization_parameters": {"scales": list(t.scales), "zero_points": list(t.zero_points),
                                             "quantized_dimension": t.qdim},
                 "sparsity_parameters": {}}
            if not _MICRO:
                from edgepoi.infer import backends
                backends.numpy_details(d, t)
            out.append(d)
        return out

    def get_input_details(self):
        return self._details(self._g.inputs)

    def get_output_details(self):
        return self._details(self._g.outputs)

    def get_tensor_details(self):
        return self._details(range(len(self._tl)))

    def _buf(self, index):
        self._need()
        if 0 <= index < len(self._bufs) and self._bufs[index] is None and self._stream is not None:
            t = self._tl[index]
            if t.data is not None:
                return self._const_buffer(t)  # a streamed constant: read from the file
        if not 0 <= index < len(self._bufs) or self._bufs[index] is None:
            raise ValueError("no tensor with index %r" % (index,))
        return self._bufs[index]

    def set_tensor(self, index, value):
        buf = self._buf(index)
        t = self._tl[index]
        if t.data is not None and not t.is_variable:
            raise ValueError("tensor %d (%s) is a constant" % (index, t.name))
        n = t.numel()
        if not _MICRO and hasattr(value, "dtype"):
            from edgepoi.infer import backends
            backends.np_set(t, buf, value)
            return
        if isinstance(value, (bytes, bytearray)) and t.type != schema.UINT8:
            if len(value) != t.nbytes():
                raise ValueError("tensor %d (%s) wants %d bytes, got %d" % (index, t.name, t.nbytes(), len(value)))
            off = self._raw.get(index)
            if off is not None:
                self._arena[off:off + len(value)] = value
            else:
                memoryview(buf)[:] = memoryview(array.array(schema.TYPE_CODES[t.type], value))
            return
        if len(value) != n:
            raise ValueError("tensor %d (%s) wants %d values, got %d" % (index, t.name, n, len(value)))
        for i in range(n):
            buf[i] = value[i]

    def get_tensor(self, index):
        buf = self._buf(index)
        t = self._tl[index]
        if not _MICRO:
            from edgepoi.infer import backends
            a = backends.np_get(t, buf)
            if a is not None:
                return a
        off = self._raw.get(index)
        if off is not None:
            return array.array("b", self._arena[off:off + t.nbytes()])
        return array.array(schema.TYPE_CODES.get(t.type, "B"), buf)
