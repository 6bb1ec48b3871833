"""Interpreter.allocate_tensors: checks, arena plan, weight streaming plan, op prepare, buffer binding.

Kept apart from the interpreter so a MicroPython heap holds this code only while allocating (the
interpreter forgets the module afterwards). The order is chosen for small, fragmenting heaps: first
everything that only computes sizes (its garbage collected), then the two large buffers (the arena
and the weight scratch) on a freshly collected heap, then the per-op params and views.

Usage (the Interpreter does this)::

    from edgepoi.infer import loader
    loader.allocate(interpreter)
"""
import array
import struct
import sys

from edgepoi.infer import ops, schema
from edgepoi.infer.flatbuf import ModelError
from edgepoi.infer.interpreter import _FAST_PKG, _int8_view, _uctypes

_MICRO = sys.implementation.name == "micropython"
_ZP_RANGE = {schema.INT8: (-128, 127), schema.INT16: (-32768, 32767), schema.UINT8: (0, 255)}


def _collect():
    if _MICRO:
        import gc
        gc.collect()


def _param_only(op, k):
    """Input k of op is decoded into params by prepare (bias of FC/CONV/DW): eval never reads it."""
    return k == 2 and op.opcode in (schema.FULLY_CONNECTED, schema.CONV_2D, schema.DEPTHWISE_CONV_2D)


def _check(it, tensors, operators):
    """(dynamic tensor indices, constants read at eval time); ModelError on unsupported tensors."""
    dynamic = []
    for t in tensors:
        if t.data is not None and not t.is_variable:
            continue
        if t.type not in schema.TYPE_CODES:
            users = [op for op in operators if t.index in op.inputs or t.index in op.outputs]
            who = "op %d (%s): " % (users[0].index, users[0].name) if users else ""
            raise ModelError("%stensor %d (%s) has unsupported type %s" % (who, t.index, t.name, t.type_name))
        lo_hi = _ZP_RANGE.get(t.type)
        if lo_hi and t.nq and not lo_hi[0] <= t.zero_point <= lo_hi[1]:
            raise ModelError("tensor %d (%s): zero point %d outside %s" % (t.index, t.name, t.zero_point,
                                                                        t.type_name))
        dynamic.append(t.index)
    read = set()
    for op in operators:
        for i in op.outputs:
            if tensors[i].data is not None and not tensors[i].is_variable:
                raise ModelError("op %d (%s): output tensor %d is a constant" % (op.index, op.name, i))
        for k, i in enumerate(op.inputs):
            if i >= 0 and not (it.stream_weights and _param_only(op, k)):
                read.add(i)
    return dynamic, read


def _plan_arena(it, g, operators, dynamic, check=True):
    """(int8 arena tensors, their offsets, arena bytes, sizes of the other dynamic tensors)."""
    from edgepoi.infer import arena
    tensors = it._tl
    used = set(g.inputs) | set(g.outputs)
    io = []
    for op in operators:
        ins = [i for i in op.inputs if i >= 0]
        used.update(ins)
        used.update(op.outputs)
        io.append((ins, op.outputs))
    sizes = {}
    for i in dynamic:
        t = tensors[i]
        sizes[i] = (t.nbytes(), t.type == schema.INT8 and not t.is_variable and i in used)
    int8 = [i for i in dynamic if sizes[i][1]]
    first, last = arena.lifetimes(set(g.inputs), set(g.outputs), io, len(operators), set(int8))
    offsets, total = arena.plan([(sizes[i][0], first.get(i, 0), last.get(i, 0)) for i in int8])
    other = [(i, sizes[i][0]) for i in dynamic if not sizes[i][1]]
    need = total + sum(n for _, n in other)
    limit = it._max_arena if check else 1 << 62
    if limit is None:
        if _MICRO:
            import gc
            gc.collect()
            limit = gc.mem_free()
        else:
            limit = 1 << 28
    if need > limit:
        raise ModelError("tensors need %d bytes of arena, more than the %d available" % (need, limit))
    return [(i, off, sizes[i][0]) for i, off in zip(int8, offsets)], total, other


def _scratch(stream, it, tensors, operators):
    return stream.Streamer(it._data, tensors, operators, chunk_fc=it.backend != "numpy")


def reserve(it):
    """Allocate the arena and the weight scratch now (pass 1: sizes only), before anything else
    scatters small objects over the heap; allocate_tensors() then uses them. Returns
    (arena, scratch, scratch size)."""
    g = it._g
    tensors = it._tl
    operators = g.operators if _MICRO else list(g.operators)
    stream = None
    if it.stream_weights:
        from edgepoi.infer import stream
    # only two sizes survive this pass: its many small results, interleaved with the garbage of
    # decoding tensors, would otherwise scatter over a small heap and leave no block for the arena
    total = _plan_arena(it, g, operators, _check(it, tensors, operators)[0])[1]
    size = _scratch(stream, it, tensors, operators).size if stream else 0
    operators = tensors = g = None
    _collect()
    if _MICRO and _uctypes():
        mem = bytearray(total)  # no temporary copy; int8 tensors are signed uctypes views
        scratch = bytearray(size) if stream else None
    else:
        mem = array.array("b", bytes(total)) if total else array.array("b")
        scratch = array.array("b", bytes(size)) if stream else None
    return mem, scratch, size


def allocate(it):
    """Everything but the ops' prepare: returns (operators, op modules, Streamer or None)."""
    g = it._g
    tensors = it._tl
    # MicroPython decodes each Operator when iterated (none stays on the heap); CPython keeps them
    operators = g.operators if _MICRO else list(g.operators)
    mods = [ops.module_for(op) for op in operators]  # unsupported ops fail first
    stream = None
    if it.stream_weights:
        from edgepoi.infer import stream
    res, it._reserved = it._reserved, None
    mem, scratch, size = res if res is not None else reserve(it)
    res = None
    # pass 2: the same plan again (deterministic), now with its lists
    dynamic, read = _check(it, tensors, operators)
    int8, total, other = _plan_arena(it, g, operators, dynamic, False)
    dynamic = None
    st = None
    if stream:
        st = _scratch(stream, it, tensors, operators)
        st.scratch = scratch
        it.scratch_bytes = size
    raw = {}
    bufs = [None] * len(tensors)
    if _MICRO and _uctypes():
        for i, off, n in int8:
            bufs[i] = _int8_view(mem, off, n)
            raw[i] = off
    else:
        view = memoryview(mem)
        for i, off, n in int8:
            bufs[i] = view[off:off + n]
    int8 = None
    extra = 0
    for i, n in other:
        bufs[i] = array.array(schema.TYPE_CODES[tensors[i].type], bytes(n))
        extra += n
    it._arena = mem
    it._raw = raw
    it.arena_bytes = total + extra
    for i in (read if st is not None else range(len(tensors))):
        t = tensors[i]
        if t.data is not None and not t.is_variable and (st is None or t.type != schema.INT8):
            bufs[i] = const_buffer(it, t)  # streamed: only small non-int8 constants stay in RAM
    it._bufs = bufs
    return operators, mods, st


def const_buffer(it, t):
    """The buffer ops read for constant tensor t (zero-copy where the model is in RAM)."""
    if hasattr(t.data, "readinto"):  # model.Const: still in the file
        data = t.data.read()
        if t.type != schema.INT8:
            return _decode(t, data)
        if _MICRO:
            return array.array("b", data)
        a = array.array("b")
        a.frombytes(data)
        return a
    if t.type == schema.INT8:
        if _MICRO and not isinstance(it._data, array.array):
            return _int8_view(it._data, t.offset, len(t.data))
        return t.data  # zero-copy signed slice of the model
    return _decode(t, t.data)


def _decode(t, data):
    if t.type not in schema.TYPE_CODES:
        return data  # raw bytes; an op needing the values rejects the type in prepare
    fmt = schema.STRUCT_CODES[t.type]
    size = schema.TYPE_SIZES[t.type]
    a = array.array(schema.TYPE_CODES[t.type], bytes(len(data)))
    for k in range(len(data) // size):
        a[k] = struct.unpack_from(fmt, data, k * size)[0]
    return a


def load_bytes(model_path, model_content):
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


def _has_pkg(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def resolve_backend(backend):
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
