"""Weights streamed from the model file: constant int8 tensors read per op into one scratch buffer.

Used by ``Interpreter(model_path=..., stream_weights=True)`` (the default on MicroPython when a path
is given): the model file stays open and only its metadata is parsed (``flatbuf.FileBuf``); right
before an op runs, its constant int8 inputs (filters, constant operands) are read with seek/readinto
into a scratch bytearray sized to the largest op's need. A FULLY_CONNECTED layer larger than that is
run in chunks of whole weight rows (``eval_rows`` of its op module), so micro_speech's 16,000-byte
layer needs only one 4,000-byte row in RAM. Biases and other per-channel constants are decoded into
the op's params by ``prepare`` and never kept as buffers. Results are bit-exact with the in-RAM path.

Usage (the Interpreter does this)::

    s = Streamer(fb, tensors, operators, chunk_fc=True)
    s.allocate()                       # the scratch bytearray of s.size (or set s.scratch yourself)
    s.bind(k, step_bufs)               # per op k, after allocation: point inputs at the scratch
    s.run(k, mod, params, step_bufs, fast_entry)   # read op k's weights, then eval it
"""
import array
import sys

from edgepoi.infer import schema

_MICRO = sys.implementation.name == "micropython"
_ALIGN = 8
FC_MIN = 1024
# inputs that prepare() decodes into params (bias): eval never reads their buffers
PARAM_ONLY = {schema.FULLY_CONNECTED: (2,), schema.CONV_2D: (2,), schema.DEPTHWISE_CONV_2D: (2,)}


def _up(n):
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def param_only(op, k):
    return k in PARAM_ONLY.get(op.opcode, ())


def _view(scratch, off, n):
    """(signed int8 buffer for the kernels, writable bytes view for readinto) over scratch[off:off+n]."""
    mv = memoryview(scratch)[off:off + n]
    if _MICRO:
        from edgepoi.infer.interpreter import _int8_view
        return _int8_view(scratch, off, n), mv
    return mv, mv  # CPython: scratch is array('b'), its memoryview is signed and writable


class Streamer:
    """Per-op plan of constant reads into one shared scratch buffer (see the module docstring)."""

    def __init__(self, fb, tensors, operators, chunk_fc=True):
        self.f = fb.f
        self.ops = []  # per op: None, ("c", [(off, mv), ...]) or ("r", k, [(u0, u1, off, mv), ...])
        self.items = []  # per op: (fc rows (units, depth) or None, [(k, file offset, nbytes), ...])
        need = rows = 0
        for op in operators:
            items = []
            fc = None
            for k, i in enumerate(op.inputs):
                t = tensors[i] if i >= 0 else None
                if (t is None or t.data is None or t.is_variable or t.type != schema.INT8
                        or param_only(op, k)):
                    continue
                items.append((k, t.data.offset, len(t.data)))
                if k == 1 and len(t.shape) == 2:
                    fc = (t.shape[0], t.shape[1])
            if not (chunk_fc and op.opcode == schema.FULLY_CONNECTED and len(items) == 1
                    and items[0][0] == 1 and fc and fc[1] > 0):
                fc = None
            if fc:  # at least one row; whole layers up to FC_MIN bytes (no needless chunking)
                rows = max(rows, fc[1], min(items[0][2], FC_MIN))
            else:
                need = max(need, sum(_up(n) for _, _, n in items))
            self.items.append((fc, items))
        self.size = max(need, rows)
        self.scratch = None

    def allocate(self):
        """The scratch buffer (call while the heap is least fragmented: right after the arena)."""
        if _MICRO:
            import gc
            gc.collect()
            self.scratch = bytearray(self.size)
        else:
            self.scratch = array.array("b", bytes(self.size))
        return self.size

    def bind(self, k, bufs):
        """Point op k's streamed inputs (bufs[k] entries) at the scratch; remember what to read."""
        fc, items = self.items[k]
        if not items:
            self.ops.append(None)
            return
        sc = self.scratch
        if fc:
            kin, off0, _ = items[0]
            units, depth = fc
            per = max(1, len(sc) // depth)
            chunks = []
            for u0 in range(0, units, per):
                u1 = min(units, u0 + per)
                chunks.append((u0, u1, off0 + u0 * depth, _view(sc, 0, (u1 - u0) * depth)[1]))
            bufs[kin] = _view(sc, 0, min(per, units) * depth)[0]
            self.ops.append(("r", kin, chunks))
            return
        reads, pos = [], 0
        for kin, off, n in items:
            v, mv = _view(sc, pos, n)
            bufs[kin] = v
            reads.append((off, mv))
            pos += _up(n)
        self.ops.append(("c", reads))

    def done(self):
        """Drop the per-op sizes once every op is bound."""
        self.items = None

    def run(self, k, mod, params, bufs, fast):
        """Read op k's constants and evaluate it (fast = (module, args) or None)."""
        plan = self.ops[k]
        f = self.f
        if plan is None or plan[0] == "c":
            if plan is not None:
                for off, mv in plan[1]:
                    f.seek(off)
                    f.readinto(mv)
            if fast is not None:
                fast[0].eval(params, fast[1])
            else:
                mod.eval(params, bufs)
            return
        m, args = (fast[0], fast[1]) if fast is not None and hasattr(fast[0], "eval_rows") else (mod, bufs)
        for u0, u1, off, mv in plan[2]:
            f.seek(off)
            f.readinto(mv)
            m.eval_rows(params, args, u0, u1)
