"""TFLite model reader (schema.fbs) over the flatbuffer reader: zero-copy, validated, portable.

Usage::

    from edgepoi.infer.model import Model
    m = Model(open("hello_world_int8.tflite", "rb").read())
    g = m.subgraphs[0]
    for op in g.operators:
        print(op.index, op.name, op.inputs, op.outputs, op.options)
    t = g.tensors[g.inputs[0]]
    print(t.name, t.shape, t.type_name, t.scales, t.zero_points)

Constant tensors expose ``data``: a memoryview slice of the model buffer (no copy), and ``offset``, its
position in the file. When the model is a signed-byte buffer (``memoryview.cast('b')`` or
``array('b')``, what the Interpreter uses on CPython) int8 slices read as signed values directly.
Every structural problem raises ``ModelError`` (a ValueError) naming the op / tensor and the fault.

``g.tensors`` / ``g.operators`` are read-only sequences decoding each object from its table when
indexed (no per-tensor objects stay on a small heap). ``Model(FileBuf(f, size))`` parses a file that
stays on disk: constants are then ``Const`` objects (``len``, ``read``, ``readinto``).
"""
import array
import sys

_MICRO = sys.implementation.name == "micropython"

from edgepoi.infer.flatbuf import FlatBuf, ModelError, Table  # noqa: F401 (ModelError re-exported)
from edgepoi.infer import schema

_MAX_ELEMS = 1 << 31


class Tensor:
    """A tensor of a subgraph: shape, type, constant data (or None) and quantization."""

    # Quantization and the name stay in the flatbuffer and are decoded on access: per-channel lists
    # of boxed floats for every tensor would take ~100 KB of a MicroPython heap for a KWS model.
    def __init__(self):
        self.index = 0
        self.shape = []
        self.type = 0
        self.buffer = 0
        self.data = None
        self.offset = 0
        self.is_variable = False
        self.qdim = 0
        self.nq = 0  # number of scales
        self._fb = None
        self._q = (0, 0, 0)  # positions of the name string, scale vector, zero point vector

    def _vec(self, k, fmt, size):
        pos = self._q[k]
        if not pos:
            return []
        n = self.nq if k else 1
        fb = self._fb
        return [fb.unpack(fmt, pos + i * size) for i in range(n)]

    @property
    def name(self):
        pos, n = self._q[0], 0
        if pos:
            n = self._fb.unpack("<I", pos - 4)
        return str(self._fb.bytes(pos, n), "utf-8") if n else ""

    @property
    def scales(self):
        return self._vec(1, "<f", 4)

    @property
    def scale_bits(self):
        return self._vec(1, "<I", 4)

    def scale_bits_at(self, i):
        """scale_bits[i] without decoding the whole vector (i < nq)."""
        return self._fb.unpack("<I", self._q[1] + 4 * i)

    @property
    def zero_points(self):
        return self._vec(2, "<q", 8)

    @property
    def shape_signature(self):
        return self._sig if self._sig is not None else list(self.shape)

    @property
    def type_name(self):
        return schema.TYPE_NAMES.get(self.type, "TYPE_%d" % self.type)

    @property
    def scale(self):
        return self._fb.unpack("<f", self._q[1]) if self._q[1] else 0.0

    @property
    def scale_bits0(self):
        return self._fb.unpack("<I", self._q[1]) if self._q[1] else 0

    @property
    def zero_point(self):
        return self._fb.unpack("<q", self._q[2]) if self._q[2] else 0

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def nbytes(self):
        return self.numel() * schema.TYPE_SIZES.get(self.type, 0)


class Operator:
    """One operator: builtin opcode, tensor indices (-1 = optional absent) and parsed options."""

    def __init__(self):
        self.index = 0
        self.opcode = 0
        self.name = ""
        self.custom_code = ""
        self.version = 1
        self.inputs = []
        self.outputs = []
        self.intermediates = []
        self.options = {}

    def fail(self, msg):
        raise ModelError("op %d (%s): %s" % (self.index, self.name, msg))


class Tensors:
    """The tensors (or operators) of a subgraph as a read-only sequence: each ``Tensor`` /
    ``Operator`` is decoded from its table when indexed (a few hundred bytes per object would
    otherwise stay on a small heap). Parsing validated every one of them already."""

    def __init__(self, model, fb, positions, nt=-1):
        self._m = model
        self._fb = fb
        self._nt = nt  # operators: the subgraph's tensor count; -1: tensors
        self._pos = positions if isinstance(positions, array.array) else array.array("I", positions)

    def __len__(self):
        return len(self._pos)

    def __getitem__(self, i):
        n = len(self._pos)
        i = i + n if i < 0 else i
        if not 0 <= i < n:
            raise IndexError("tensor index out of range")
        t = Table(self._fb, self._pos[i])
        return self._m._read_tensor(t, i, False) if self._nt < 0 else self._m._read_op(t, i, self._nt)

    def __iter__(self):
        for i in range(len(self._pos)):
            yield self[i]


class Subgraph:
    def __init__(self):
        self.name = ""
        self.tensors = []
        self.inputs = []
        self.outputs = []
        self.operators = []


class Const:
    """A constant tensor's bytes left in the model file (``FileBuf``): ``len``, ``read``, ``readinto``."""

    def __init__(self, fb, offset, n):
        self.fb = fb
        self.offset = offset
        self.n = n

    def __len__(self):
        return self.n

    def read(self, start=0, n=-1):
        """A copy of n bytes (all by default) from start."""
        return self.fb.bytes(self.offset + start, n if n >= 0 else self.n - start)

    def readinto(self, buf, start=0):
        self.fb.readinto(self.offset + start, buf)


class Model:
    """A parsed .tflite model. ``data`` is kept and sliced, never copied.

    ``data`` may also be a ``FileBuf`` (the file stays on disk): constant tensors are then ``Const``
    objects read on demand and ``self.data`` is None.
    """

    def __init__(self, data):
        fb = data if isinstance(data, FlatBuf) else FlatBuf(data)
        self.data = fb.data
        if fb.n >= 8 and fb.bytes(4, 4) != b"TFL3":
            fb.fail("not a TFLite flatbuffer (identifier %r, expected b'TFL3')" % fb.bytes(4, 4))
        root = fb.root()
        self.version = root.scalar(0, "<I", 0)
        self.description = root.string(3)
        self._fb = fb
        start, n = root.vector(4, 4)
        # buffers are sliced / wrapped on demand (no object per buffer); the long-lived tables of the
        # parse are allocated at their final size before its garbage (a small heap stays compact)
        code, size = ("I", 4) if fb.n < 1 << 32 else ("Q", 8)
        self.buffer_offsets = array.array(code, bytes(size * n))
        self._buffer_sizes = array.array(code, bytes(size * n))
        for k in range(n):
            if _MICRO and k % 16 == 0:
                _collect()
            _read_buffer(fb, Table(fb, fb.deref(start + 4 * k)), k, self.buffer_offsets, self._buffer_sizes)
        if _MICRO:  # (what is kept goes into the lowest free blocks, below the garbage to come)
            _collect()
        self.opcodes = [_read_opcode(t) for t in root.tables(1)]
        self.metadata = {}
        for t in root.tables(6):
            self.metadata[t.string(0)] = self._buffer(t.scalar(1, "<I", 0), "metadata")
        if _MICRO:
            _collect()
        self.subgraphs = [self._read_subgraph(fb, t, k) for k, t in enumerate(root.tables(2))]
        if not self.subgraphs:
            fb.fail("model has no subgraph")

    @property
    def buffers(self):
        """Each buffer's bytes: a memoryview of the model (a ``Const`` for a FileBuf), or None."""
        return [self._buffer(k, "") for k in range(len(self._buffer_sizes))]

    def _buffer(self, k, who):
        if k >= len(self._buffer_sizes):
            raise ModelError("%s: buffer index %d out of range (%d buffers)" % (who, k, len(self._buffer_sizes)))
        n = self._buffer_sizes[k]
        if not n:
            return None
        off, fb = self.buffer_offsets[k], self._fb
        return memoryview(fb.data)[off:off + n] if fb.data is not None else Const(fb, off, n)

    def _read_subgraph(self, fb, t, k):
        # what the subgraph keeps is allocated first, the validation's garbage after it: on a small
        # heap its long-lived objects then do not end up as islands in the space that garbage used
        g = Subgraph()
        g.name = t.string(4)
        start, nt = t.vector(0, 4)
        ostart, no = t.vector(3, 4)
        tpos, opos = array.array("I", bytes(4 * nt)), array.array("I", bytes(4 * no))
        g.tensors = Tensors(self, fb, tpos)
        g.operators = Tensors(self, fb, opos, nt)
        g.inputs = _indices(t.scalars(1, "<i"), nt, "subgraph %d inputs" % k, False)
        g.outputs = _indices(t.scalars(2, "<i"), nt, "subgraph %d outputs" % k, False)
        pos = tpos
        for i in range(nt):
            if _MICRO and i % 8 == 0:
                _collect()
            p = pos[i] = fb.deref(start + 4 * i)
            self._read_tensor(Table(fb, p), i)  # validates; kept as its table position only
        pos = opos
        for i in range(no):
            if _MICRO and i % 8 == 0:
                _collect()
            p = pos[i] = fb.deref(ostart + 4 * i)
            self._read_op(Table(fb, p), i, nt)
        return g

    def _read_tensor(self, t, i, check=True):
        x = Tensor()
        x.index = i
        x._fb = t.fb
        name_pos, name_len = t.vector(3, 1)
        x.shape = t.scalars(0, "<i")
        x._sig = t.scalars(7, "<i") or None
        x.type = t.scalar(1, "<b", 0)
        x.buffer = t.scalar(2, "<I", 0)
        x.is_variable = bool(t.scalar(5, "<B", 0))
        who = "tensor %d" % i
        n = 1
        for d in x.shape:
            if d < 0:
                raise ModelError("%s: negative dimension in shape %s" % (who, x.shape))
            n *= d
            if n > _MAX_ELEMS:
                raise ModelError("%s: shape %s too large" % (who, x.shape))
        data = self._buffer(x.buffer, who)
        if data is not None and len(data):
            size = schema.TYPE_SIZES.get(x.type, 0)
            if size and len(data) != n * size:
                raise ModelError("%s: buffer holds %d bytes, shape %s of %s needs %d"
                                 % (who, len(data), x.shape, x.type_name, n * size))
            x.data = data
            x.offset = self.buffer_offsets[x.buffer]
        q = t.table(4)
        s_pos = z_pos = 0
        if q is not None:
            s_pos, x.nq = q.vector(2, 4)
            z_pos, nz = q.vector(3, 8)
            x.qdim = q.scalar(6, "<i", 0)
            if nz and nz != x.nq:
                raise ModelError("%s: %d scales but %d zero points" % (who, x.nq, nz))
            if not x.nq:
                z_pos = 0
        if name_len and check:  # (validated by the parse: not again on each lazy decode)
            try:
                str(t.fb.bytes(name_pos, name_len), "utf-8")
            except (UnicodeError, ValueError):  # a decoding problem (not MemoryError) is a model error
                raise ModelError("%s: name is not UTF-8" % who)
        x._q = (name_pos if name_len else 0, s_pos if x.nq else 0, z_pos)
        return x

    def _read_op(self, t, i, nt):
        op = Operator()
        op.index = i
        k = t.scalar(0, "<I", 0)
        if k >= len(self.opcodes):
            raise ModelError("op %d: opcode index %d out of range (%d opcodes)" % (i, k, len(self.opcodes)))
        op.opcode, op.custom_code, op.version = self.opcodes[k]
        op.name = op.custom_code or schema.op_name(op.opcode)
        who = "op %d (%s)" % (i, op.name)
        op.inputs = _indices(t.scalars(1, "<i"), nt, who + " inputs", True)
        op.outputs = _indices(t.scalars(2, "<i"), nt, who + " outputs", False)
        op.intermediates = _indices(t.scalars(8, "<i"), nt, who + " intermediates", True)
        op.options = schema.read_options(op, t)
        return op


def _collect():
    # parsing makes short-lived garbage; collecting often keeps the long-lived objects packed at the
    # bottom of a small heap, so large buffers (the arena) still find a contiguous block later
    import gc
    gc.collect()


def _indices(values, n, who, optional):
    for v in values:
        if v >= n or v < (-1 if optional else 0):
            raise ModelError("%s: tensor index %d out of range (%d tensors)" % (who, v, n))
    return values


def _read_opcode(t):
    dep = t.scalar(0, "<b", 0)
    code = t.scalar(3, "<i", 0)
    # Old files only set deprecated_builtin_code (< 127); new ones set builtin_code.
    return max(dep, code), t.string(1), t.scalar(2, "<i", 1)


def _read_buffer(fb, t, k, offsets, sizes):
    start, n = t.bytes_range(0)
    offsets[k] = start
    sizes[k] = n
    if n:
        return
    off = t.scalar(1, "<Q", 0)
    size = t.scalar(2, "<Q", 0)
    if off > 1:  # >2 GB format: data stored after the flatbuffer, offset from the file start
        if off + size > fb.n:
            fb.fail("buffer %d: offset %d + size %d beyond the %d-byte file" % (k, off, size, fb.n))
        offsets[k] = off
        sizes[k] = size
