"""SVDF, int8 input/output with int8 or int16 weights_time and activation state (TFLM integer path).

params: batch, n_input, n_filter, n_unit, n_memory, rank, in_zp, state_zp, out_zp, mult1, shift1
(input * feature weights -> state), mult2, shift2 (state * time weights -> output), state_min,
state_max, state_mask (type range - 1, for the wrap), bias[n_unit], macs. The activation state (input 4) is a variable tensor updated in place.
"""
from edgepoi.infer import quant


def _scale(op, a, b, d):
    """float32(float32(a * b) / d) as TFLM computes it, then QuantizeMultiplier."""
    prod = quant.to_float32(quant.mul(quant.f32(a), quant.f32(b)))
    return quant.quantize_multiplier(quant.round_ratio(prod, quant.f32(d), 24))


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    x = c.inp(op, tensors, 0, (c.INT8,))
    wf = c.inp(op, tensors, 1, (c.INT8,))
    wt = c.inp(op, tensors, 2, (c.INT8, c.INT16))
    st = c.inp(op, tensors, 4, (c.INT8, c.INT16))
    y = c.out(op, tensors, 0, (c.INT8,))
    rank = op.options.get("rank", 0)
    batch, n_input = c.rank(op, x, 2, "input")
    n_filter, fin = c.rank(op, wf, 2, "feature weights")
    if rank <= 0 or n_filter % rank or fin != n_input:
        op.fail("rank %d / feature weights %s do not fit input %s" % (rank, wf.shape, x.shape))
    n_unit = n_filter // rank
    tf, n_memory = c.rank(op, wt, 2, "time weights")
    if tf != n_filter or list(st.shape) != [batch, n_memory * n_filter] or not st.is_variable:
        op.fail("time weights %s / state %s do not fit %d filters" % (wt.shape, st.shape, n_filter))
    if list(y.shape) != [batch, n_unit]:
        op.fail("output shape %s, expected %s" % (y.shape, [batch, n_unit]))
    if wt.type != st.type:
        op.fail("time weights and state types differ")
    xb, xzp = c.qparams(op, x, "input")
    wfb, _ = c.qparams(op, wf, "feature weights")
    wtb, _ = c.qparams(op, wt, "time weights")
    sb, szp = c.qparams(op, st, "state")
    yb, yzp = c.qparams(op, y, "output")
    m1, s1 = _scale(op, xb, wfb, sb)
    m2, s2 = _scale(op, sb, wtb, yb)
    lo, hi = c.QRANGE[st.type]
    return {"batch": batch, "n_input": n_input, "n_filter": n_filter, "n_unit": n_unit,
            "n_memory": n_memory, "rank": rank, "in_zp": xzp, "state_zp": szp, "out_zp": yzp,
            "mult1": m1, "shift1": s1, "mult2": m2, "shift2": s2, "state_min": lo, "state_max": hi,
            "state_mask": hi - lo,
            "bias": c.bias_list(op, tensors, 3, n_unit),
            "macs": batch * n_filter * (n_input + n_memory), "int16": st.type == c.INT16}


def eval(p, bufs):
    x, wf, wt, st, y = bufs[0], bufs[1], bufs[2], bufs[4], bufs[-1]
    nb, ni, nf, nu, nm, rank = p["batch"], p["n_input"], p["n_filter"], p["n_unit"], p["n_memory"], p["rank"]
    mb = quant.multiply_by_quantized_multiplier
    izp, szp, ozp = p["in_zp"], p["state_zp"], p["out_zp"]
    lo, hi = p["state_min"], p["state_max"]
    total = nb * nf * nm
    for i in range(total - 1):  # shift the whole state left by one
        st[i] = st[i + 1]
    for b in range(nb):
        for r in range(nf):
            acc = 0
            wb, xb = r * ni, b * ni
            for k in range(ni):
                acc += wf[wb + k] * (x[xb + k] - izp)
            v = mb(acc, p["mult1"], p["shift1"])
            # the installed TFLM clamps before adding the state zero point and then narrows with
            # wrap-around (later TFLM versions add first, then clamp)
            v = (lo if v < lo else (hi if v > hi else v)) + szp
            st[(b * nf + r) * nm + nm - 1] = ((v - lo) & p["state_mask"]) + lo
    bias = p["bias"]
    for b in range(nb):
        for u in range(nu):
            acc = bias[u]
            for f in range(u * rank, (u + 1) * rank):
                sb, wb = (b * nf + f) * nm, f * nm
                for j in range(nm):
                    acc += wt[wb + j] * (st[sb + j] - szp)
            v = mb(quant.wrap32(acc), p["mult2"], p["shift2"]) + ozp
            y[b * nu + u] = -128 if v < -128 else (127 if v > 127 else v)
