"""Weights streamed from the model file: constant int8 tensors read per op into one scratch buffer.

Used by ``Interpreter(model_path=..., stream_weights=True)`` (the default on MicroPython when a path
is given): the model file stays open and only its metadata is parsed (``flatbuf.FileBuf``); right
before an op runs, its constant int8 inputs (filters, constant operands) are read with seek/readinto
into a scratch bytearray sized to the largest op's need. A FULLY_CONNECTED layer larger than that is
run in chunks of whole weight rows (``eval_rows`` of its op module); with batch 1 and rows longer than
FC_MIN bytes, in segments of a row (``eval_seg``: the partial sum carried from one to the next), so
micro_speech's 16,000-byte layer needs no more scratch than its depthwise conv's 640-byte filter.
Biases and other per-channel constants are decoded into the op's params by ``prepare`` and never kept
as buffers. Results are bit-exact with the in-RAM path.

Usage (the Interpreter does this)::

    s = Streamer(fb, tensors, operators, chunk_fc=True)
    s.scratch = bytearray(s.size)      # (array('b') on CPython)
    s.bind(k, step_bufs)               # per op k = 0, 1, ...: point its inputs at the scratch
    s.run(k, mod, params, step_bufs, fast_entry)   # read op k's weights, then eval it
"""
import array
import sys

_MICRO = sys.implementation.name == "micropython"
_ALIGN = 8
FC_MIN = 512


def _up(n):
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _seg(depth, most):
    """Length of the equal segments (the last one may be shorter) a row of depth values is read in,
    none longer than most."""
    parts = (depth + most - 1) // most
    return (depth + parts - 1) // parts


def param_only(op, k):
    """Input k of op is decoded into params by prepare (the bias of FC/CONV/DW): eval never reads it."""
    from edgepoi.infer import schema  # (not at module level: the running interpreter keeps this module)
    return k == 2 and op.opcode in (schema.FULLY_CONNECTED, schema.CONV_2D, schema.DEPTHWISE_CONV_2D)


def _view(scratch, off, n):
    """A signed int8 view of scratch[off:off+n] for the kernels, also what readinto fills (a uctypes
    view on MicroPython; on CPython scratch is array('b'): its memoryview is signed and writable)."""
    if _MICRO:
        from edgepoi.infer.interpreter import _int8_view
        return _int8_view(scratch, off, n)
    return memoryview(scratch)[off:off + n]


class Streamer:
    """Per-op plan of constant reads into one shared scratch buffer (see the module docstring)."""

    def __init__(self, fb, tensors, operators, chunk_fc=True, copy=None):
        if copy is not None:  # a fresh copy of a planned Streamer (see arena.bind)
            self.f, self.items, self.size, self.scratch, self.ops = copy
            self._at = 0
            return
        from edgepoi.infer import schema
        self.f = fb.f
        self.ops = []  # per op: None, ("c", off, view, off, view...) or ("r", k, [(u0, u1, off, view), ...])
        # per op, flat: count, fc units, fc depth (0, 0: no row chunks), then (input k, file offset,
        # nbytes) per streamed input (one array, not a few small objects per op on a small heap)
        self.items = array.array("I")
        self._at = 0  # where bind reads the next op's items
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
            if fc and fc[1] > FC_MIN and op.inputs[0] >= 0 and tensors[op.inputs[0]].numel() == fc[1]:
                # batch 1, rows longer than FC_MIN: a row in segments of at most FC_MIN bytes
                rows = max(rows, _seg(fc[1], FC_MIN))
            elif fc:  # at least one row; whole layers up to FC_MIN bytes (no needless chunking)
                rows = max(rows, fc[1], min(items[0][2], FC_MIN))
            else:
                need = max(need, sum(_up(n) for _, _, n in items))
            self.items.extend([len(items)] + list(fc or (0, 0)))
            for it in items:
                self.items.extend(it)
        self.size = max(need, rows)
        self.scratch = None

    def bind(self, k, bufs):
        """Point op k's streamed inputs (bufs[k] entries) at the scratch; remember what to read.
        Called for k = 0, 1, ... in order."""
        a, at = self.items, self._at
        count, units, depth = a[at], a[at + 1], a[at + 2]
        items = [(a[j], a[j + 1], a[j + 2]) for j in range(at + 3, at + 3 + 3 * count, 3)]
        self._at = at + 3 + 3 * count
        if not items:
            self.ops.append(None)
            return
        sc = self.scratch
        if units and len(sc) < depth:  # segments of a row (batch 1): ("s", off, units, depth, length,
            kin, off0, _ = items[0]   # view, last view, partial sum)
            n = _seg(depth, len(sc))
            v = _view(sc, 0, n)
            bufs[kin] = v
            last = depth - (depth - 1) // n * n
            self.ops.append(("s", off0, units, depth, n, v, v if last == n else _view(sc, 0, last), [0]))
            return
        if units:
            kin, off0, _ = items[0]
            per = max(1, len(sc) // depth)
            chunks = []
            for u0 in range(0, units, per):
                u1 = min(units, u0 + per)
                chunks.append((u0, u1, off0 + u0 * depth, _view(sc, 0, (u1 - u0) * depth)))
            bufs[kin] = chunks[0][3]
            self.ops.append(("r", kin, chunks))
            return
        reads, pos = ["c"], 0
        for kin, off, n in items:
            v = _view(sc, pos, n)
            bufs[kin] = v
            reads += [off, v]
            pos += _up(n)
        self.ops.append(tuple(reads))  # one flat tuple per op: a few objects less on a small heap

    def done(self):
        """Drop the per-op sizes once every op is bound."""
        self.items = None

    def run(self, k, mod, params, bufs, fast):
        """Read op k's constants and evaluate it (fast = (module, args) or None)."""
        plan = self.ops[k]
        f = self.f
        if plan is None or plan[0] == "c":
            if plan is not None:
                for i in range(1, len(plan), 2):
                    f.seek(plan[i])
                    f.readinto(plan[i + 1])
            if fast is not None:
                fast[0].eval(params, fast[1])
            else:
                mod.eval(params, bufs)
            return
        if plan[0] == "s":
            m, args = (fast[0], fast[1]) if fast is not None and hasattr(fast[0], "eval_seg") else (mod, bufs)
            _, off0, units, depth, n, v, last, acc = plan
            for u in range(units):
                for d0 in range(0, depth, n):
                    d1 = min(depth, d0 + n)
                    f.seek(off0 + u * depth + d0)
                    f.readinto(v if d1 - d0 == n else last)
                    m.eval_seg(params, args, u, d0, d1, acc)
            return
        m, args = (fast[0], fast[1]) if fast is not None and hasattr(fast[0], "eval_rows") else (mod, bufs)
        for u0, u1, off, mv in plan[2]:
            f.seek(off)
            f.readinto(mv)
            m.eval_rows(params, args, u0, u1)
