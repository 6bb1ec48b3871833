"""CONCATENATION along one axis (int8 needs equal quantization on all inputs and the output).

params: axis, outer (product of dims before axis), inner_sizes (per input: axis dim * inner), macs.
"""


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    y = c.out(op, tensors, 0, (c.INT8, c.INT16, c.INT32, c.FLOAT32))
    r = len(y.shape)
    axis = op.options.get("axis", 0)
    if axis < 0:
        axis += r
    if axis < 0 or axis >= r:
        op.fail("axis %d out of range for rank %d" % (op.options.get("axis", 0), r))
    if op.options.get("activation", 0):
        op.fail("fused activation on concatenation is not supported")
    inner = c.numel(y.shape[axis + 1:])
    sizes = []
    total = 0
    for k in range(len(op.inputs)):
        t = c.inp(op, tensors, k, (y.type,))
        if len(t.shape) != r or any(t.shape[d] != y.shape[d] for d in range(r) if d != axis):
            op.fail("input %d shape %s does not fit output %s on axis %d" % (k, t.shape, y.shape, axis))
        if y.type in (c.INT8, c.INT16) and c.qparams(op, t, "input") != c.qparams(op, y, "output"):
            op.fail("input %d quantization differs from the output's" % k)
        sizes.append(t.shape[axis] * inner)
        total += t.shape[axis]
    if total != y.shape[axis]:
        op.fail("inputs add up to %d on axis %d, output has %d" % (total, axis, y.shape[axis]))
    return {"axis": axis, "outer": c.numel(y.shape[:axis]), "inner_sizes": sizes, "macs": 0}


def eval(p, bufs):
    sizes = p["inner_sizes"]
    y = bufs[len(sizes)]
    yi = 0
    for o in range(p["outer"]):
        for k in range(len(sizes)):
            x = bufs[k]
            s = sizes[k]
            base = o * s
            for i in range(s):
                y[yi] = x[base + i]
                yi += 1
