"""TFLite schema constants: tensor types, builtin opcodes and the builtin-options tables we read.

Usage::

    from edgepoi.infer import schema
    schema.op_name(schema.CONV_2D)        # 'CONV_2D'
    schema.TYPE_SIZES[schema.INT8]        # 1
"""
FLOAT32 = 0
FLOAT16 = 1
INT32 = 2
UINT8 = 3
INT64 = 4
BOOL = 6
INT16 = 7
INT8 = 9
FLOAT64 = 10
UINT32 = 15
UINT16 = 16

TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
              7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
              13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16"}
TYPE_SIZES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 15: 4, 16: 2}
# array typecodes for the portable buffers of each supported type
TYPE_CODES = {0: "f", 2: "i", 3: "B", 4: "q", 6: "B", 7: "h", 9: "b", 10: "d", 15: "I", 16: "H"}
STRUCT_CODES = {0: "<f", 2: "<i", 3: "<B", 4: "<q", 6: "<B", 7: "<h", 9: "<b", 10: "<d", 15: "<I", 16: "<H"}

ADD = 0
AVERAGE_POOL_2D = 1
CONCATENATION = 2
CONV_2D = 3
DEPTHWISE_CONV_2D = 4
DEQUANTIZE = 6
FULLY_CONNECTED = 9
LOGISTIC = 14
MAX_POOL_2D = 17
MUL = 18
RELU = 19
RELU6 = 21
RESHAPE = 22
SOFTMAX = 25
SVDF = 27
TANH = 28
CUSTOM = 32
PAD = 34
TRANSPOSE = 39
MEAN = 40
UNIDIRECTIONAL_SEQUENCE_LSTM = 44
STRIDED_SLICE = 45
QUANTIZE = 114

# "code:NAME" pairs in one string: a dict of ~80 names costs several KB of a small heap pairs in one string: a dict of ~80 names costs several KB of a small heap
_NAMES = (
    "0:ADD 1:AVERAGE_POOL_2D 2:CONCATENATION 3:CONV_2D 4:DEPTHWISE_CONV_2D 5:DEPTH_TO_SPACE "
    "6:DEQUANTIZE 7:EMBEDDING_LOOKUP 8:FLOOR 9:FULLY_CONNECTED 11:L2_NORMALIZATION 12:L2_POOL_2D "
    "14:LOGISTIC 16:LSTM 17:MAX_POOL_2D 18:MUL 19:RELU 20:RELU_N1_TO_1 21:RELU6 22:RESHAPE "
    "23:RESIZE_BILINEAR 24:RNN 25:SOFTMAX 26:SPACE_TO_DEPTH 27:SVDF 28:TANH 31:CALL 32:CUSTOM 34:PAD "
    "36:GATHER 37:BATCH_TO_SPACE_ND 38:SPACE_TO_BATCH_ND 39:TRANSPOSE 40:MEAN 41:SUB 42:DIV "
    "43:SQUEEZE 44:UNIDIRECTIONAL_SEQUENCE_LSTM 45:STRIDED_SLICE 47:EXP 49:SPLIT 50:LOG_SOFTMAX "
    "53:CAST 55:MAXIMUM 56:ARG_MAX 57:MINIMUM 58:LESS 59:NEG 60:PADV2 61:GREATER 65:SLICE "
    "67:TRANSPOSE_CONV 70:EXPAND_DIMS 74:SUM 75:SQRT 76:RSQRT 77:SHAPE 78:POW 80:FAKE_QUANT "
    "82:REDUCE_MAX 83:PACK 88:UNPACK 92:SQUARE 97:RESIZE_NEAREST_NEIGHBOR 98:LEAKY_RELU 102:SPLIT_V "
    "114:QUANTIZE 117:HARD_SWISH 150:BATCH_MATMUL")


def op_name(code):
    key = "%d:" % code
    i = _NAMES.find(key)
    while i > 0 and _NAMES[i - 1] != " ":
        i = _NAMES.find(key, i + 1)
    if i < 0:
        return "BUILTIN_%d" % code
    j = _NAMES.find(" ", i)
    return _NAMES[i + len(key):j if j > 0 else len(_NAMES)]


# ActivationFunctionType
ACT_NONE = 0
ACT_RELU = 1
ACT_RELU_N1_TO_1 = 2
ACT_RELU6 = 3
ACT_TANH = 4

PADDING_SAME = 0
PADDING_VALID = 1

# opcode -> "union_type field:fmt:default ..." (schema order; fmt a struct code, "[i" an int vector).
# Strings, parsed when a model is read: tuples of tuples cost ~5 KB of a small MicroPython heap.
_CONV = "padding:b:0 stride_w:i:0 stride_h:i:0 activation:b:0 dilation_w:i:1 dilation_h:i:1"
_POOL = "5 padding:b:0 stride_w:i:0 stride_h:i:0 filter_w:i:0 filter_h:i:0 activation:b:0"
OPTIONS = {
    CONV_2D: "1 " + _CONV,
    DEPTHWISE_CONV_2D: "2 padding:b:0 stride_w:i:0 stride_h:i:0 depth_multiplier:i:0 activation:b:0 "
                       "dilation_w:i:1 dilation_h:i:1",
    AVERAGE_POOL_2D: _POOL,
    MAX_POOL_2D: _POOL,
    SVDF: "6 rank:i:0 activation:b:0 asymmetric_quantize_inputs:B:0",
    FULLY_CONNECTED: "8 activation:b:0 weights_format:b:0 keep_num_dims:B:0 asymmetric_quantize_inputs:B:0",
    SOFTMAX: "9 beta:f:0",
    CONCATENATION: "10 axis:i:0 activation:b:0",
    ADD: "11 activation:b:0 pot_scale_int16:B:1",
    RESHAPE: "17 new_shape:[i:-",
    MUL: "21 activation:b:0",
    PAD: "22",
    TRANSPOSE: "26",
    MEAN: "27 keep_dims:B:0",
    STRIDED_SLICE: "32 begin_mask:i:0 end_mask:i:0 ellipsis_mask:i:0 new_axis_mask:i:0 shrink_axis_mask:i:0 "
                   "offset:B:0",
    UNIDIRECTIONAL_SEQUENCE_LSTM: "71 activation:b:0 cell_clip:f:0 proj_clip:f:0 time_major:B:0 "
                                  "asymmetric_quantize_inputs:B:0 diagonal_recurrent_tensors:B:0",
}


def option_fields(opcode):
    """(union type, [(name, struct fmt, default), ...]) of an op's options, or None."""
    spec = OPTIONS.get(opcode)
    if spec is None:
        return None
    parts = spec.split()
    fields = []
    for p in parts[1:]:
        name, fmt, default = p.split(":")
        if fmt[0] == "[":
            fields.append((name, "[<" + fmt[1:], None))
        else:
            fields.append((name, "<" + fmt, float(default) if fmt == "f" else int(default)))
    return int(parts[0]), fields


def read_options(op, t):
    """Parse an operator table's builtin_options into a dict (defaults when absent).

    A float field ``x`` also yields ``x_bits``: its raw float32 bit pattern (exact on every port).
    """
    spec = option_fields(op.opcode)
    if spec is None:
        return {}
    want, fields = spec
    got = t.scalar(3, "<B", 0)
    opts = t.table(4) if got else None
    if got and got != want:
        op.fail("builtin_options type %d, expected %d" % (got, want))
    out = {}
    for k, (name, fmt, default) in enumerate(fields):
        if opts is None:
            out[name] = default
        elif fmt[0] == "[":
            out[name] = opts.scalars(k, fmt[1:]) if opts.has(k) else None
        else:
            out[name] = opts.scalar(k, fmt, default)
        if fmt == "<f":
            out[name + "_bits"] = opts.scalar(k, "<I", 0) if opts is not None else 0
    return out
