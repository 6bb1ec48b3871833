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
"""
import struct
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
        return [struct.unpack_from(fmt, self._fb.data, pos + i * size)[0] for i in range(n)]

    @property
    def name(self):
        pos, n = self._q[0], 0
        if pos:
            n = struct.unpack_from("<I", self._fb.data, pos - 4)[0]
        return str(bytes(self._fb.data[pos:pos + n]), "utf-8") if n else ""

    @property
    def scales(self):
        return self._vec(1, "<f", 4)

    @property
    def scale_bits(self):
        return self._vec(1, "<I", 4)

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
        return struct.unpack_from("<f", self._fb.data, self._q[1])[0] if self._q[1] else 0.0

    @property
    def scale_bits0(self):
        return struct.unpack_from("<I", self._fb.data, self._q[1])[0] if self._q[1] else 0

    @property
    def zero_point(self):
        return struct.unpack_from("<q", self._fb.data, self._q[2])[0] if self._q[2] else 0

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


class Subgraph:
    def __init__(self):
        self.name = ""
        self.tensors = []
        self.inputs = []
        self.outputs = []
        self.operators = []


class Model:
    """A parsed .tflite model. ``data`` is kept and sliced, never copied."""

    def __init__(self, data):
        fb = FlatBuf(data)
        self.data = data
        if len(data) >= 8 and bytes(data[4:8]) != b"TFL3":
            fb.fail("not a TFLite flatbuffer (identifier %r, expected b'TFL3')" % bytes(data[4:8]))
        root = fb.root()
        self.version = root.scalar(0, "<I", 0)
        self.description = root.string(3)
        self.buffer_offsets = []
        self.buffers = [_read_buffer(fb, b, k, self.buffer_offsets) for k, b in enumerate(root.tables(4))]
        self.opcodes = [_read_opcode(t) for t in root.tables(1)]
        self.metadata = {}
        for t in root.tables(6):
            self.metadata[t.string(0)] = self._buffer(t.scalar(1, "<I", 0), "metadata")
        self.subgraphs = [self._read_subgraph(fb, t, k) for k, t in enumerate(root.tables(2))]
        if not self.subgraphs:
            fb.fail("model has no subgraph")

    def _buffer(self, k, who):
        if k >= len(self.buffers):
            raise ModelError("%s: buffer index %d out of range (%d buffers)" % (who, k, len(self.buffers)))
        return self.buffers[k]

    def _read_subgraph(self, fb, t, k):
        g = Subgraph()
        g.name = t.string(4)
        g.tensors = []
        start, n = t.vector(0, 4)
        for i in range(n):
            if _MICRO and i % 8 == 0:
                _collect()
            g.tensors.append(self._read_tensor(Table(fb, fb.deref(start + 4 * i)), i))
        nt = len(g.tensors)
        g.inputs = _indices(t.scalars(1, "<i"), nt, "subgraph %d inputs" % k, False)
        g.outputs = _indices(t.scalars(2, "<i"), nt, "subgraph %d outputs" % k, False)
        start, n = t.vector(3, 4)
        for i in range(n):
            if _MICRO and i % 8 == 0:
                _collect()
            g.operators.append(self._read_op(Table(fb, fb.deref(start + 4 * i)), i, nt))
        return g

    def _read_tensor(self, t, i):
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
        if name_len:
            try:
                str(bytes(t.fb.data[name_pos:name_pos + name_len]), "utf-8")
            except Exception:  # noqa: BLE001 - any decoding problem is a model error
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


def opcodes_of(data):
    """Builtin opcodes listed in a model (cheap: reads only operator_codes); [] if unreadable."""
    try:
        root = FlatBuf(data).root()
        return [_read_opcode(t)[0] for t in root.tables(1)]
    except ModelError:
        return []


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


def _read_buffer(fb, t, k, offsets):
    start, n = t.bytes_range(0)
    offsets.append(start)
    if n:
        return memoryview(fb.data)[start:start + n]
    off = t.scalar(1, "<Q", 0)
    size = t.scalar(2, "<Q", 0)
    if off > 1:  # >2 GB format: data stored after the flatbuffer, offset from the file start
        if off + size > fb.n:
            fb.fail("buffer %d: offset %d + size %d beyond the %d-byte file" % (k, off, size, fb.n))
        offsets[-1] = off
        return memoryview(fb.data)[off:off + size]
    return None


def unpack_list(fmt, data):
    """Decode a constant tensor's little-endian bytes into a list (fmt like '<i')."""
    size = struct.calcsize(fmt)
    return [struct.unpack_from(fmt, data, k * size)[0] for k in range(len(data) // size)]
