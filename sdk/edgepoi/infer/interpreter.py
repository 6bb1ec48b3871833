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
"""
import array
import struct
import sys

from edgepoi.infer import arena, ops, schema
from edgepoi.infer.flatbuf import ModelError
from edgepoi.infer.model import Model, opcodes_of

_MICRO = sys.implementation.name == "micropython"
_ZP_RANGE = {schema.INT8: (-128, 127), schema.INT16: (-32768, 32767), schema.UINT8: (0, 255)}
_FAST_PKG = {"numpy": "edgepoi.infer.fast_numpy", "viper": "edgepoi.infer.fast_viper"}


def _load_bytes(model_path, model_content):
    """The model bytes without a copy where possible: on CPython a signed ('b') memoryview, so int8
    weight slices read as signed values; on MicroPython the bytes/bytearray itself (see _int8_view)."""
    if model_content is None:
        if model_path is None:
            raise ValueError("give model_path or model_content")
        with open(model_path, "rb") as f:
            f.seek(0, 2)
            n = f.tell()
            f.seek(0)
            if _MICRO:
                import gc
                gc.collect()
            model_content = bytearray(n)
            if f.readinto(model_content) != n:
                raise ModelError("short read of %s" % model_path)
    if _MICRO:
        return model_content
    if isinstance(model_content, array.array) and model_content.typecode == "b":
        return model_content
    mv = memoryview(model_content)
    if mv.format != "b":
        mv = mv.cast("B").cast("b")
    return mv


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


def _has_pkg(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def _resolve_backend(backend):
    if backend == "auto":
        if not _MICRO and _has_pkg("numpy") and _has_pkg(_FAST_PKG["numpy"]):
            return "numpy"
        if _MICRO and _has_pkg(_FAST_PKG["viper"]):
            return "viper"
        return "ref"
    if backend not in ("ref", "numpy", "viper"):
        raise ValueError("unknown backend %r (ref, numpy, viper, auto)" % backend)
    if backend != "ref" and not _has_pkg(_FAST_PKG[backend]):
        raise ValueError("backend %r is not available here" % backend)
    return backend


class Interpreter:
    """A TFLite int8 model on the portable kernels; see the module docstring."""

    def __init__(self, model_path=None, model_content=None, backend="auto", num_threads=None,
                 max_arena_bytes=None):
        self._data = _load_bytes(model_path, model_content)
        # import the op modules first: compiling them needs large free blocks on a small heap
        for code in opcodes_of(self._data):
            ops.preload(code)
        self._model = Model(self._data)
        self._g = self._model.subgraphs[0]
        self.backend = _resolve_backend(backend)
        self.bit_exact = True  # every backend here must match the reference bit for bit
        self.arena_bytes = 0
        self.macs = 0
        self._plan = None
        self._bufs = None
        self._max_arena = max_arena_bytes
        self._raw = {}

    # -- allocation ---------------------------------------------------------------------------------
    def allocate_tensors(self):
        g = self._g
        tensors = g.tensors
        mods = [ops.module_for(op) for op in g.operators]  # unsupported ops fail first
        bufs = [None] * len(tensors)
        dynamic = []
        for t in tensors:
            if t.data is not None and not t.is_variable:
                continue
            if t.type not in schema.TYPE_CODES:
                users = [op for op in g.operators if t.index in op.inputs or t.index in op.outputs]
                who = "op %d (%s): " % (users[0].index, users[0].name) if users else ""
                raise ModelError("%stensor %d (%s) has unsupported type %s"
                                 % (who, t.index, t.name, t.type_name))
            lo_hi = _ZP_RANGE.get(t.type)
            if lo_hi and t.nq and not lo_hi[0] <= t.zero_point <= lo_hi[1]:
                raise ModelError("tensor %d (%s): zero point %d outside %s" % (t.index, t.name, t.zero_point,
                                                                            t.type_name))
            dynamic.append(t.index)
        for op in g.operators:
            for i in op.outputs:
                if tensors[i].data is not None and not tensors[i].is_variable:
                    raise ModelError("op %d (%s): output tensor %d is a constant" % (op.index, op.name, i))
        # the arena first, while the heap is least fragmented (small MicroPython heaps)
        self._allocate_arena(g, dynamic, bufs)
        plan = []
        macs = 0
        for op, mod in zip(g.operators, mods):
            if _MICRO:
                import gc
                gc.collect()
            params = mod.prepare(op, tensors)
            macs += params.get("macs", 0)
            plan.append([op, mod, params, None])
        for t in tensors:
            if t.data is not None and not t.is_variable:
                bufs[t.index] = self._const_buffer(t)
        self.macs = macs
        self._bufs = bufs
        for step in plan:
            op = step[0]
            step[3] = [bufs[i] if i >= 0 else None for i in op.inputs] + [bufs[i] for i in op.outputs]
        self._plan = plan
        self._setup_backend()
        self.reset_all_variables()

    def _allocate_arena(self, g, dynamic, bufs):
        tensors = g.tensors
        used = set(g.inputs) | set(g.outputs)
        for op in g.operators:
            used.update(i for i in op.inputs if i >= 0)
            used.update(op.outputs)
        int8 = [i for i in dynamic if tensors[i].type == schema.INT8 and not tensors[i].is_variable
                and i in used]
        io = [([i for i in op.inputs if i >= 0], op.outputs) for op in g.operators]
        first, last = arena.lifetimes(set(g.inputs), set(g.outputs), io, len(g.operators), set(int8))
        reqs = [(tensors[i].nbytes(), first.get(i, 0), last.get(i, 0)) for i in int8]
        offsets, total = arena.plan(reqs)
        need = total + sum(tensors[i].nbytes() for i in dynamic if i not in int8)
        limit = self._max_arena
        if limit is None:
            if _MICRO:
                import gc
                gc.collect()
                limit = gc.mem_free()
            else:
                limit = 1 << 28
        if need > limit:
            raise ModelError("tensors need %d bytes of arena, more than the %d available" % (need, limit))
        self._raw = {}
        if _MICRO and _uctypes():
            # one bytearray (no temporary copy) with signed uctypes views; _raw keeps byte offsets
            import gc
            gc.collect()
            mem = bytearray(total)
            for i, off in zip(int8, offsets):
                bufs[i] = _int8_view(mem, off, tensors[i].nbytes())
                self._raw[i] = off
        else:
            mem = array.array("b", bytes(total)) if total else array.array("b")
            view = memoryview(mem)
            for i, off in zip(int8, offsets):
                bufs[i] = view[off:off + tensors[i].nbytes()]
        extra = 0
        for i in dynamic:
            if bufs[i] is None:
                t = tensors[i]
                bufs[i] = array.array(schema.TYPE_CODES[t.type], bytes(t.nbytes()))
                extra += t.nbytes()
        self._arena = mem
        self.arena_bytes = total + extra

    def _const_buffer(self, t):
        if t.type == schema.INT8:
            if _MICRO and not isinstance(self._data, array.array):
                return _int8_view(self._data, t.offset, len(t.data))
            return t.data  # zero-copy signed slice of the model
        if t.type not in schema.TYPE_CODES:
            return t.data  # raw bytes; an op needing the values rejects the type in prepare
        fmt = schema.STRUCT_CODES[t.type]
        size = schema.TYPE_SIZES[t.type]
        a = array.array(schema.TYPE_CODES[t.type], bytes(len(t.data)))
        for k in range(len(t.data) // size):
            a[k] = struct.unpack_from(fmt, t.data, k * size)[0]
        return a

    def _setup_backend(self):
        self._fast = None
        if self.backend != "ref":
            from edgepoi.infer import backends
            self._fast = backends.setup(self, _FAST_PKG[self.backend])

    # -- running ------------------------------------------------------------------------------------
    def _need(self):
        if self._plan is None:
            raise RuntimeError("call allocate_tensors() first")

    def invoke(self):
        self._need()
        fast = self._fast
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
        for t in self._g.tensors:
            if t.is_variable:
                b = self._bufs[t.index]
                v = t.zero_point if t.type in (schema.INT8, schema.INT16) else 0
                for i in range(len(b)):
                    b[i] = v

    # -- tensors ------------------------------------------------------------------------------------
    def _details(self, indices):
        out = []
        for i in indices:
            t = self._g.tensors[i]
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
        return self._details(range(len(self._g.tensors)))

    def _buf(self, index):
        self._need()
        if not 0 <= index < len(self._bufs) or self._bufs[index] is None:
            raise ValueError("no tensor with index %r" % (index,))
        return self._bufs[index]

    def set_tensor(self, index, value):
        buf = self._buf(index)
        t = self._g.tensors[index]
        if t.data is not None and not t.is_variable:
            raise ValueError("tensor %d (%s) is a constant" % (index, t.name))
        n = t.numel()
        if not _MICRO and hasattr(value, "dtype"):
            import numpy as np
            from edgepoi.infer.backends import NP_DTYPES
            want = np.dtype(NP_DTYPES[t.type])
            if value.dtype != want:
                raise ValueError("tensor %d (%s) wants %s, got %s" % (index, t.name, want, value.dtype))
            if value.size != n:
                raise ValueError("tensor %d (%s) wants shape %s, got %s"
                                 % (index, t.name, t.shape, list(value.shape)))
            from edgepoi.infer import backends
            backends.np_view(np, t, buf).reshape(-1)[:] = value.reshape(-1)
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
        t = self._g.tensors[index]
        if not _MICRO:
            try:
                import numpy as np
            except ImportError:
                np = None
            if np is not None:
                from edgepoi.infer import backends
                return backends.np_view(np, t, buf).copy()
        off = self._raw.get(index)
        if off is not None:
            return array.array("b", self._arena[off:off + t.nbytes()])
        return array.array(schema.TYPE_CODES.get(t.type, "B"), buf)
