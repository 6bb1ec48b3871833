"""STRIDED_SLICE (int8/int16/int32/float32) with begin/end/shrink masks and the offset flag.

params: in_shape, starts, stops, strides (resolved per input dim), count, macs.
Ellipsis and new-axis masks are not supported (TFLM rejects them too).
"""


def _clamp(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0, (c.INT8, c.INT16, c.INT32, c.FLOAT32))
    begin = c.const_ints(op, c.inp(op, tensors, 1), "begin")
    end = c.const_ints(op, c.inp(op, tensors, 2), "end")
    strides = c.const_ints(op, c.inp(op, tensors, 3), "strides")
    y = c.out(op, tensors, 0, (x.type,))
    o = op.options
    if o.get("ellipsis_mask") or o.get("new_axis_mask"):
        op.fail("ellipsis and new-axis masks are not supported")
    r = len(x.shape)
    if not (len(begin) == len(end) == len(strides)) or len(begin) > r:
        op.fail("begin/end/strides lengths %d/%d/%d do not fit rank %d"
                % (len(begin), len(end), len(strides), r))
    starts, stops, steps = [], [], []
    count = 1
    for d in range(r):
        size = x.shape[d]
        if d >= len(begin):
            starts.append(0)
            stops.append(size)
            steps.append(1)
            count *= size
            continue
        st = strides[d]
        if st == 0:
            op.fail("stride 0 on axis %d" % d)
        b = begin[d]
        if o.get("begin_mask", 0) & (1 << d):
            b = 0 if st > 0 else size - 1
        else:
            if b < 0:
                b += size
            b = _clamp(b, 0, size) if st > 0 else _clamp(b, -1, size - 1)
        if o.get("shrink_axis_mask", 0) & (1 << d):
            e, st = b + 1, 1
        else:
            e = end[d]
            if o.get("offset"):
                e = b + e
            if o.get("end_mask", 0) & (1 << d):
                e = size if st > 0 else -1
            else:
                if e < 0 and not o.get("offset"):
                    e += size
                e = _clamp(e, 0, size) if st > 0 else _clamp(e, -1, size - 1)
        n = (e - b + st - (1 if st > 0 else -1)) // st
        n = n if n > 0 else 0
        starts.append(b)
        stops.append(e)
        steps.append(st)
        count *= n
    if count != c.numel(y.shape):
        op.fail("slice has %d elements, output shape %s" % (count, y.shape))
    return {"in_shape": list(x.shape), "starts": starts, "stops": stops, "strides": steps,
            "count": count, "macs": 0}


def eval(p, bufs):
    x, y = bufs[0], bufs[-1]
    shape, starts, stops, steps = p["in_shape"], p["starts"], p["stops"], p["strides"]
    r = len(shape)
    mul = [1] * r
    for d in range(r - 2, -1, -1):
        mul[d] = mul[d + 1] * shape[d + 1]
    yi = [0]

    def walk(d, base):
        i, e, s = starts[d], stops[d], steps[d]
        while (i < e) if s > 0 else (i > e):
            if d == r - 1:
                y[yi[0]] = x[base + i]
                yi[0] += 1
            else:
                walk(d + 1, base + i * mul[d])
            i += s
    if r == 0:
        y[0] = x[0]
    elif p["count"]:
        walk(0, 0)
