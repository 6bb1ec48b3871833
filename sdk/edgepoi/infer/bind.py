"""The buffers of an allocated interpreter: the arena, the weight scratch, and every op's buffer list.

``buffer`` makes the arena (and the weight scratch); ``bind`` the views of a layout from
``loader.plan``: int8 tensors as views into the arena, the other dynamic tensors, and the per-op buffer
lists. On MicroPython the interpreter imports this module after the parser has left the heap.

Usage::

    mem = buffer(nbytes)
    bind(interpreter, layout, params)   # sets its _arena, _raw, _bufs, _plan, _stream, arena_bytes
"""
import array
import sys

_MICRO = sys.implementation.name == "micropython"


def buffer(n):
    """n zero bytes for the arena or the weight scratch: on MicroPython a bytearray (no temporary copy;
    int8 tensors are signed uctypes views into it), elsewhere an array('b') (signed memoryviews)."""
    if _MICRO:
        try:
            import uctypes  # noqa: F401
            return bytearray(n)
        except ImportError:
            pass
    return array.array("b", bytes(n)) if n else array.array("b")


def reserve(it, total, size):
    """Interpreter() on MicroPython: the arena and the weight scratch (size < 0: none) now, while the
    heap is still compact (allocate_tensors() then uses them), and the fast package's per-op state
    block (its ``reserve(operators, tensors)``, optional). Nothing on MemoryError: allocate_tensors()
    retries and reports."""
    try:
        it._reserved = buffer(total), (buffer(size) if size >= 0 else None)
    except MemoryError:
        it._reserved = None
        return
    from edgepoi.infer.interpreter import _FAST_PKG
    fast = _FAST_PKG.get(it.backend)
    if fast is not None:
        pkg = __import__(fast, None, None, ["reserve"])
        try:
            if hasattr(pkg, "reserve"):
                pkg.reserve(it._g.operators, it._tl)
        except MemoryError:
            pass


def repack(x):
    """A copy of the lists, tuples, dicts, bytearrays and arrays in x (other objects shared), to be
    made right after a collection: the copies pack into the lowest free blocks, so what outlives the
    allocation does not pin small islands all over a fragmented heap (large buffers need large
    blocks, on MicroPython a heap is never compacted)."""
    if isinstance(x, list):
        return [repack(e) for e in x]
    if isinstance(x, tuple):
        return tuple(repack(e) for e in x)
    if isinstance(x, dict):
        return dict((k, repack(v)) for k, v in x.items())
    if isinstance(x, (bytearray, array.array)):
        return x[:]
    return x


def bind(it, layout, params):
    """Make the layout's buffers (the arena and the weight scratch unless reserved) and every op's
    buffer list (inputs in op order, None for an absent one, then outputs; streamed weights point at
    the scratch). Sets the interpreter's arena, buffers and plan ((op, module, params[k], buffers))."""
    from edgepoi.infer.interpreter import _int8_view
    total, int8, other, consts, st, mods, ops, ios, res = layout
    if _MICRO:  # the parser just left: what stays moves down into the space it freed
        import gc
        gc.collect()
        consts = repack(consts)
        it._vars = repack(it._vars)
        if st is not None:
            st = type(st)(None, None, None, copy=(st.f, repack(st.items), st.size, None, []))
        for k in range(len(params)):
            gc.collect()
            params[k] = repack(params[k])
    if res is None:
        if _MICRO:
            import gc
            gc.collect()  # (a retry: Interpreter() could not reserve them)
        res = buffer(total), (buffer(st.size) if st is not None else None)
    mem = res[0]
    if st is not None:
        st.scratch = res[1]
    views = isinstance(mem, bytearray)
    raw = {}  # arena offsets of the graph's int8 inputs and outputs (set_tensor/get_tensor copy bytes)
    io = it._inputs + it._outputs
    bufs = [None] * it._nt
    mv = None if views else memoryview(mem)
    for j in range(0, len(int8), 3):
        i, off, n = int8[j], int8[j + 1], int8[j + 2]
        if views:
            bufs[i] = _int8_view(mem, off, n)
            if i in io:
                raw[i] = off
        else:
            bufs[i] = mv[off:off + n]
    extra = 0
    for i, code, n in other:
        bufs[i] = array.array(code, bytes(n))
        extra += n
    for i, b in consts:
        bufs[i] = b
    it._arena = mem
    it._raw = raw
    it._bufs = bufs
    it.arena_bytes = total + extra
    plan = []
    j = 0
    for k, mod in enumerate(mods):
        io = []
        for _ in range(2):  # the inputs (-1: absent), then the outputs
            n = ios[j]
            for i in ios[j + 1:j + 1 + n]:
                io.append(bufs[i] if i >= 0 else None)
            j += 1 + n
        if st is not None:
            st.bind(k, io)  # its streamed inputs point at the weight scratch
        plan.append((None if ops is None else ops[k], mod, params[k], tuple(io)))
    if st is not None:
        st.done()
    it._stream = st
    it._plan = plan
