"""Interpreter allocation, the parts that need the parsed model: checks, arena plan, weight streaming
plan, constant buffers; also model loading and backend resolution. (The ops' prepare runs in the
interpreter; ``edgepoi.infer.bind`` makes the buffers.)

Kept apart from the interpreter so a MicroPython heap holds this code only while allocating (the
interpreter forgets the module afterwards). The order is chosen for small, fragmenting heaps: first
``sizes`` (pass 1, in Interpreter(); its garbage collected, then the arena and the weight scratch are
allocated on a compact heap), then ``plan`` (pass 2, in allocate_tensors()), whose long-lived results
are copied after a collection so they pack low.

Usage (the Interpreter does this)::

    from edgepoi.infer import loader
    total, scratch = loader.sizes(interpreter)  # in Interpreter(), on MicroPython
    layout = loader.plan(interpreter)           # in allocate_tensors(), then bind.bind(...)
"""
import array
import struct
import sys

from edgepoi.infer import ops, schema
from edgepoi.infer.flatbuf import ModelError
from edgepoi.infer.interpreter import _FAST_PKG, _int8_view

_MICRO = sys.implementation.name == "micropython"
_ZP_RANGE = {schema.INT8: (-128, 127), schema.INT16: (-32768, 32767), schema.UINT8: (0, 255)}


def _collect():
    if _MICRO:
        import gc
        gc.collect()


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
    param_only = None
    if it.stream_weights:
        from edgepoi.infer.stream import param_only
    for op in operators:
        for i in op.outputs:
            if tensors[i].data is not None and not tensors[i].is_variable:
                raise ModelError("op %d (%s): output tensor %d is a constant" % (op.index, op.name, i))
        for k, i in enumerate(op.inputs):
            if i >= 0 and not (param_only is not None and param_only(op, k)):
                read.add(i)
    return dynamic, read


def _plan_arena(it, g, operators, dynamic, check=True):
    """([(tensor, offset, bytes)] of int8 arena tensors, arena bytes, [(tensor, bytes)] of the other
    dynamic tensors); ModelError when they need more than max_arena_bytes (default: the free heap)."""
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
    # a RESHAPE's output is its input's bytes: it shares them (one buffer from the input's first op to the
    # output's last; the kernels' copy is then onto itself) instead of holding a copy
    alias = {}
    for k, op in enumerate(operators):
        if op.opcode == schema.RESHAPE and len(io[k][0]) and len(op.outputs) == 1:
            x, y = io[k][0][0], op.outputs[0]
            if x in first and y in first and sizes[x][0] == sizes[y][0] and y not in alias:
                root = alias.get(x, x)
                alias[y] = root
                last[root] = max(last[root], last[y])
    own = [i for i in int8 if i not in alias]
    offsets, total = arena.plan([(sizes[i][0], first.get(i, 0), last.get(i, 0)) for i in own])
    at = dict(zip(own, offsets))
    offsets = [at[alias.get(i, i)] for i in int8]
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


def sizes(it):
    """(arena bytes, weight scratch bytes or -1): pass 1 of the plan, sizes only."""
    g = it._g
    tensors = it._tl
    operators = g.operators if _MICRO else list(g.operators)
    # only two sizes survive this pass: its many small results, interleaved with the garbage of
    # decoding tensors, would otherwise scatter over a small heap and leave no block for the arena
    total = _plan_arena(it, g, operators, _check(it, tensors, operators)[0])[1]
    size = _streamer(it, tensors, operators).size if it.stream_weights else -1
    return total, size


def _streamer(it, tensors, operators):
    from edgepoi.infer import stream
    return stream.Streamer(it._data, tensors, operators, chunk_fc=it.backend != "numpy")


def plan(it):
    """Everything of allocate_tensors() but the ops' prepare: op modules (unsupported ops fail first),
    tensor checks, the arena plan, the weight streaming plan, constant buffers, and the _Info of the
    graph's inputs and outputs. Returns the layout ``bind.bind`` turns into buffers:
    (arena bytes, int8 arena tensors as a flat array (tensor, offset, bytes, ...), [(tensor,
    typecode, bytes)] of other dynamic tensors, [(tensor, buffer)] of constants, Streamer or None,
    the op modules, the operators (CPython; None on MicroPython), the ops' tensors as a flat array
    (count, inputs..., count, outputs... per op), the reserved (arena, scratch) or None)."""
    g = it._g
    tensors = it._tl
    # MicroPython decodes each Operator when iterated (none stays on the heap); CPython keeps them
    operators = g.operators if _MICRO else list(g.operators)
    mods = [ops.module_for(op) for op in operators]  # unsupported ops fail first
    dynamic, read = _check(it, tensors, operators)
    # (the free heap is no limit once the arena is reserved: pass 1 checked it)
    int8, total, other = _plan_arena(it, g, operators, dynamic, it._reserved is None)
    other = [(i, schema.TYPE_CODES[tensors[i].type], n) for i, n in other]
    dynamic = None
    ios = array.array("i")
    for op in operators:
        ios.extend([len(op.inputs)] + op.inputs + [len(op.outputs)] + op.outputs)
    flat = array.array("I")
    for x in int8:
        flat.extend(x)
    int8 = flat
    st = None
    if it.stream_weights:
        st = _streamer(it, tensors, operators)
        it.scratch_bytes = st.size
    consts = []
    for i in (read if st is not None else range(len(tensors))):
        t = tensors[i]
        if t.data is not None and not t.is_variable and (st is None or t.type != schema.INT8):
            consts.append((i, const_buffer(it, t)))  # streamed: only small non-int8 constants stay in RAM
    it._vars = [(t.index, t.zero_point if t.type in (schema.INT8, schema.INT16) else 0)
                for t in tensors if t.is_variable]
    for i in it._inputs + it._outputs:
        it._t(i)  # kept: the tensor calls need nothing else of the model
    res, it._reserved = it._reserved, None
    layout = (total, int8, other, consts, st, mods, None if _MICRO else operators, ios)
    operators = g = tensors = int8 = other = consts = mods = ios = read = flat = None
    if st is not None:
        st.items = st.items[:]
    _collect()
    return _repack(layout) + (res,)


def _repack(x):
    """Fresh copies of the lists, tuples and arrays in x, made right after a collection: they pack into
    the lowest free blocks (what outlives the allocation pins no islands all over the heap)."""
    if isinstance(x, list):
        return [_repack(e) for e in x]
    if isinstance(x, tuple):
        return tuple(_repack(e) for e in x)
    if isinstance(x, array.array):
        return x[:]
    return x


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
