"""FULLY_CONNECTED, int8 weights (per-tensor or per-channel) with int8 activations and int32 bias, or
int16 activations (zero points 0) and int32/int64 bias (TFLM 16x8: int64 MultiplyByQuantizedMultiplier).

params: in_offset, w_offset, out_offset, mults[oc], shifts[oc], act_min, act_max, batches,
depth (accumulation depth), units (output channels), macs, bias[oc] (the model's int32 bias) and
folded_bias[oc] = bias + in_offset * sum(w + w_offset) over the row, so eval accumulates (w + w_offset) * x.
int16 (True for 16x8). Weights are [units, depth] row-major; input is flattened to [batches, depth].
"""
from edgepoi.infer.quant import multiply_by_quantized_multiplier as _mbqm
from edgepoi.infer.quant import multiply_by_quantized_multiplier64 as _mbqm64


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    x, y, wide = c.activations(op, tensors)
    w = c.inp(op, tensors, 1, (c.INT8,))
    if op.options.get("weights_format", 0) != 0:
        op.fail("shuffled weights format is not supported")
    if len(w.shape) != 2:
        op.fail("weights must be 2-D, have shape %s" % w.shape)
    units, depth = w.shape
    n = c.numel(x.shape)
    if depth <= 0 or n % depth:
        op.fail("input of %d values is not a multiple of depth %d" % (n, depth))
    batches = n // depth
    if c.numel(y.shape) != batches * units:
        op.fail("output shape %s does not hold %dx%d values" % (y.shape, batches, units))
    _, izp = c.qparams(op, x, "input")
    _, wzp = c.qparams(op, w, "weights")
    _, ozp = c.qparams(op, y, "output")
    mults, shifts = c.channel_multipliers(op, x, w, y, units, per_tensor_fc=True)
    # sum_i (w + w_off)(x + in_off) = sum_i (w + w_off) x + in_off * sum_i (w + w_off): the second
    # term is a constant folded into the bias
    sums = c.row_sums(op, w, units, depth, "weights")
    bias = c.bias_list(op, tensors, 2, units)
    folded = c.ints([bias[u] - izp * (sums[u] - wzp * depth) for u in range(units)])
    lo, hi = c.act_range(op, op.options.get("activation", 0), y)
    return {"in_offset": -izp, "w_offset": -wzp, "out_offset": ozp, "mults": mults, "shifts": shifts,
            "bias": bias, "folded_bias": folded, "act_min": lo, "act_max": hi, "int16": wide,
            "batches": batches, "depth": depth, "units": units, "macs": batches * depth * units}


def eval(p, bufs):
    eval_rows(p, bufs, 0, p["units"])


def eval_rows(p, bufs, u0, u1):
    """Output units u0..u1-1 only, bufs[1] holding just their weight rows (streamed weights)."""
    x, w, y = bufs[0], bufs[1], bufs[-1]
    depth, units = p["depth"], p["units"]
    woff, ooff = p["w_offset"], p["out_offset"]
    mults, shifts, bias = p["mults"], p["shifts"], p["folded_bias"]
    lo, hi = p["act_min"], p["act_max"]
    mb = _mbqm64 if p["int16"] else _mbqm
    for b in range(p["batches"]):
        xb = b * depth
        for u in range(u0, u1):
            wb = (u - u0) * depth - xb
            acc = bias[u]
            if woff:
                for i in range(xb, xb + depth):
                    acc += (w[wb + i] + woff) * x[i]
            else:
                for i in range(xb, xb + depth):
                    acc += w[wb + i] * x[i]
            v = mb(acc, mults[u], shifts[u]) + ooff
            y[b * units + u] = lo if v < lo else (hi if v > hi else v)


def eval_seg(p, bufs, u, d0, d1, acc):
    """Unit u over depth d0..d1-1 only, batch 1, bufs[1] holding just w[u, d0:d1] (streamed weights
    of a row longer than the scratch): the partial sum goes to acc[0]; the last segment (d1 = depth)
    writes y[u]."""
    x, w, y = bufs[0], bufs[1], bufs[-1]
    woff = p["w_offset"]
    s = acc[0] if d0 else p["folded_bias"][u]
    for i in range(d1 - d0):
        s += (w[i] + woff) * x[d0 + i]
    if d1 < p["depth"]:
        acc[0] = s
        return
    mb = _mbqm64 if p["int16"] else _mbqm
    v = mb(s, p["mults"][u], p["shifts"][u]) + p["out_offset"]
    lo, hi = p["act_min"], p["act_max"]
    y[u] = lo if v < lo else (hi if v > hi else v)
