"""Output size and padding of windowed ops (TFLM ComputeOutSize / ComputePadding).

Usage::

    from edgepoi.infer.ops.geometry import out_size_and_pad
    out_h, pad_top = out_size_and_pad(schema.PADDING_SAME, 49, 10, 2, 1)
"""
from edgepoi.infer import schema


def out_size_and_pad(padding, in_size, fsize, stride, dilation):
    """TFLM ComputeOutSize + ComputePadding: (output size, padding before)."""
    eff = (fsize - 1) * dilation + 1
    if stride <= 0:
        return 0, 0
    if padding == schema.PADDING_SAME:
        o = (in_size + stride - 1) // stride
    else:
        o = (in_size + stride - eff) // stride
    p = ((o - 1) * stride + eff - in_size) // 2
    return o, (p if p > 0 else 0)


def conv_geometry(op, opts, in_h, in_w, fh, fw, out_shape):
    """Validate strides/dilation/padding against the output shape; returns (pad_h, pad_w)."""
    sh, sw = opts["stride_h"], opts["stride_w"]
    dh, dw = opts.get("dilation_h", 1), opts.get("dilation_w", 1)
    if sh <= 0 or sw <= 0 or dh <= 0 or dw <= 0:
        op.fail("strides %d,%d and dilations %d,%d must be positive" % (sh, sw, dh, dw))
    if opts["padding"] not in (schema.PADDING_SAME, schema.PADDING_VALID):
        op.fail("unknown padding %d" % opts["padding"])
    oh, ph = out_size_and_pad(opts["padding"], in_h, fh, sh, dh)
    ow, pw = out_size_and_pad(opts["padding"], in_w, fw, sw, dw)
    if oh != out_shape[1] or ow != out_shape[2] or oh <= 0 or ow <= 0:
        op.fail("output spatial size %dx%d expected, tensor has shape %s" % (oh, ow, out_shape))
    return ph, pw
