"""A small TFLite flatbuffer writer (host side): turns numpy weights into valid int8 .tflite files.

Used for per-op test models and small demo models. Options of builtin ops are written from the same
field table the reader uses (``edgepoi.infer.schema.option_fields``); TFLM reading these files is the
independent check that both agree with the real schema.

Usage::

    from edgepoi_host.tflite_writer import ModelWriter
    from edgepoi.infer import schema
    w = ModelWriter()
    x = w.tensor("x", [1, 8], schema.INT8, scale=0.05, zero_point=-3)
    k = w.tensor("w", [4, 8], schema.INT8, data=weights_int8, scale=[0.01] * 4, quantized_dimension=0)
    b = w.tensor("b", [4], schema.INT32, data=bias_int32, scale=[0.0005] * 4)
    y = w.tensor("y", [1, 4], schema.INT8, scale=0.1, zero_point=2)
    w.op(schema.FULLY_CONNECTED, [x, k, b], [y], activation=schema.ACT_RELU)
    data = w.finish(inputs=[x], outputs=[y])     # bytes of a .tflite file
"""
import flatbuffers
import numpy as np

from edgepoi.infer import schema

_NP = {schema.FLOAT32: np.float32, schema.INT32: np.int32, schema.UINT8: np.uint8, schema.INT64: np.int64,
       schema.INT16: np.int16, schema.INT8: np.int8, schema.BOOL: np.bool_}


class _T:
    def __init__(self, name, shape, ttype, data, scale, zero_point, qdim, is_variable):
        self.name, self.shape, self.type = name, list(shape), ttype
        self.data, self.scale, self.zero_point, self.qdim = data, scale, zero_point, qdim
        self.is_variable = is_variable


class ModelWriter:
    """Collects tensors and operators of one subgraph and serialises them as a TFLite model."""

    def __init__(self, description="edgepoi tflite_writer"):
        self.tensors = []
        self.ops = []
        self.description = description

    def tensor(self, name, shape, ttype, data=None, scale=None, zero_point=None, quantized_dimension=0,
               is_variable=False):
        """Add a tensor; returns its index. ``data`` makes it a constant (numpy-convertible)."""
        if data is not None:
            data = np.ascontiguousarray(np.asarray(data, dtype=_NP[ttype]).reshape(shape)).tobytes()
        if scale is not None and not isinstance(scale, (list, tuple, np.ndarray)):
            scale = [scale]
        if zero_point is not None and not isinstance(zero_point, (list, tuple, np.ndarray)):
            zero_point = [zero_point]
        if scale is not None and zero_point is None:
            zero_point = [0] * len(scale)
        self.tensors.append(_T(name, shape, ttype, data, scale, zero_point, quantized_dimension, is_variable))
        return len(self.tensors) - 1

    def op(self, opcode, inputs, outputs, **options):
        """Add an operator; ``options`` are fields of its builtin options table (reader names)."""
        self.ops.append((opcode, list(inputs), list(outputs), options))

    # -- serialisation ------------------------------------------------------------------------------
    def finish(self, inputs, outputs):
        b = flatbuffers.Builder(1024)
        b.ForceDefaults(True)
        codes = []
        for opcode, _, _, _ in self.ops:
            if opcode not in codes:
                codes.append(opcode)
        # buffers: 0 is the empty sentinel, then one per constant tensor
        buf_of = {}
        buf_data = [None]
        for i, t in enumerate(self.tensors):
            if t.data is not None:
                buf_of[i] = len(buf_data)
                buf_data.append(t.data)
        buffers = [self._buffer(b, d) for d in buf_data]
        tensors = [self._tensor(b, t, buf_of.get(i, 0)) for i, t in enumerate(self.tensors)]
        operators = [self._operator(b, codes.index(opc), ins, outs, opts, opc)
                     for opc, ins, outs, opts in self.ops]
        name = b.CreateString("main")
        t_vec = self._offsets(b, tensors)
        o_vec = self._offsets(b, operators)
        in_vec = self._ints(b, inputs)
        out_vec = self._ints(b, outputs)
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, t_vec, 0)
        b.PrependUOffsetTRelativeSlot(1, in_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, out_vec, 0)
        b.PrependUOffsetTRelativeSlot(3, o_vec, 0)
        b.PrependUOffsetTRelativeSlot(4, name, 0)
        sg = b.EndObject()
        opcodes = []
        for c in codes:
            b.StartObject(4)
            b.PrependInt8Slot(0, min(c, 127), 0)
            b.PrependInt32Slot(2, 1, 1)
            b.PrependInt32Slot(3, c, 0)
            opcodes.append(b.EndObject())
        desc = b.CreateString(self.description)
        oc_vec = self._offsets(b, opcodes)
        sg_vec = self._offsets(b, [sg])
        buf_vec = self._offsets(b, buffers)
        b.StartObject(5)
        b.PrependUint32Slot(0, 3, 0)
        b.PrependUOffsetTRelativeSlot(1, oc_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, sg_vec, 0)
        b.PrependUOffsetTRelativeSlot(3, desc, 0)
        b.PrependUOffsetTRelativeSlot(4, buf_vec, 0)
        root = b.EndObject()
        b.Finish(root, file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _offsets(b, offs):
        b.StartVector(4, len(offs), 4)
        for o in reversed(offs):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    @staticmethod
    def _ints(b, vals, fmt="i"):
        size = 8 if fmt == "q" else 4
        b.StartVector(size, len(vals), size)
        for v in reversed(list(vals)):
            if fmt == "q":
                b.PrependInt64(int(v))
            elif fmt == "f":
                b.PrependFloat32(float(v))
            else:
                b.PrependInt32(int(v))
        return b.EndVector()

    @staticmethod
    def _buffer(b, data):
        vec = None
        if data:
            b.StartVector(1, len(data), 16)
            b.head = b.head - len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector()
        b.StartObject(3)
        if vec is not None:
            b.PrependUOffsetTRelativeSlot(0, vec, 0)
        return b.EndObject()

    def _tensor(self, b, t, buf):
        name = b.CreateString(t.name)
        shape = self._ints(b, t.shape)
        q = None
        if t.scale is not None:
            sv = self._ints(b, t.scale, "f")
            zv = self._ints(b, t.zero_point, "q")
            b.StartObject(7)
            b.PrependUOffsetTRelativeSlot(2, sv, 0)
            b.PrependUOffsetTRelativeSlot(3, zv, 0)
            b.PrependInt32Slot(6, t.qdim, 0)
            q = b.EndObject()
        b.StartObject(6)
        b.PrependUOffsetTRelativeSlot(0, shape, 0)
        b.PrependInt8Slot(1, t.type, 0)
        b.PrependUint32Slot(2, buf, 0)
        b.PrependUOffsetTRelativeSlot(3, name, 0)
        if q is not None:
            b.PrependUOffsetTRelativeSlot(4, q, 0)
        b.PrependBoolSlot(5, t.is_variable, False)
        return b.EndObject()

    def _operator(self, b, code_index, ins, outs, opts, opcode):
        in_vec = self._ints(b, ins)
        out_vec = self._ints(b, outs)
        spec = schema.option_fields(opcode)
        ov = None
        if spec is not None:
            utype, fields = spec
            vecs = {}
            for k, (fname, fmt, default) in enumerate(fields):
                if fmt[0] == "[" and opts.get(fname) is not None:
                    vecs[k] = self._ints(b, opts[fname])
            b.StartObject(len(fields))
            for k, (fname, fmt, default) in enumerate(fields):
                v = opts.get(fname, default)
                if fmt[0] == "[":
                    if k in vecs:
                        b.PrependUOffsetTRelativeSlot(k, vecs[k], 0)
                elif fmt == "<f":
                    b.PrependFloat32Slot(k, float(v), 0.0)
                elif fmt in ("<b", "<B"):
                    b.PrependInt8Slot(k, int(v), 0)
                else:
                    b.PrependInt32Slot(k, int(v), 0)
            ov = b.EndObject()
        b.StartObject(9)
        b.PrependUint32Slot(0, code_index, 0)
        b.PrependUOffsetTRelativeSlot(1, in_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, out_vec, 0)
        if ov is not None:
            b.PrependUint8Slot(3, spec[0], 0)
            b.PrependUOffsetTRelativeSlot(4, ov, 0)
        return b.EndObject()
