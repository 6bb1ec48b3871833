"""UNIDIRECTIONAL_SEQUENCE_LSTM, integer, as TFLM runs it: int8 activations x int8 weights with an
int16 cell state and int32 biases, or int16 activations (zero points 0) with int64 biases (16x8).

TFLM supports the standard LSTM only (all four gates, no CIFG, peephole, projection or layer norm); so
does this op, and it refuses the variants, float and hybrid models with a ModelError. Per time step
and batch row, every gate is ``act(sat16(FC(x) + FC(h)))`` with both FCs requantized to int16 at scale
2**-12 (sigmoid for the input, forget and output gates, tanh -- the op's fused activation, the only
one TFLM runs -- for the cell gate; ``act16``); then ``c = sat16(f*c + i*g)`` (clipped if
cell_clip > 0), ``h = tanh(c) * o`` requantized to the hidden state, which is also written to the output. The hidden state (input 18)
and cell state (input 19) are variable tensors updated in place.

params: batch, steps, n_in, n_cell, time_major, int16 (activations), gates: per gate in input order
(input, forget, cell, output) a tuple (m_in, s_in, bias_in[n_cell], m_rec, s_rec, bias_rec[n_cell]):
the two FC multipliers and biases folded with the input / hidden offsets (bias + offset * row sum);
m_fc, s_fc (forget * cell -> cell), m_ic,
s_ic (input * cell gate -> cell), m_h, s_h, h_zp, h_min, h_max (tanh(cell) * output -> hidden);
clip (quantized cell clip, -1 = none); t_mult, t_shift, t_round (scaling of the cell state for tanh);
macs.
"""
from edgepoi.infer import act16
from edgepoi.infer import quant, schema

_BITS_2M12 = 0x39800000   # float 0.00024414062 in TFLM: exactly 2**-12 (FC output, gate input scale)
_BITS_NOS = 0x38000000    # float 0.000030517578125 in TFLM: 2**-15 (gate output scale)
_NAMES = ("input gate", "forget gate", "cell gate", "output gate")


def _absent(op, tensors, ks, what):
    from edgepoi.infer.ops import common as c
    for k in ks:
        if c.inp(op, tensors, k, optional=True) is not None:
            op.fail("%s (input %d) is not supported (TFLM runs the standard LSTM only)" % (what, k))


def _weights(op, tensors, k, rows, cols, what):
    from edgepoi.infer.ops import common as c
    t = c.inp(op, tensors, k, (c.INT8,), optional=True)
    if t is None:
        op.fail("%s (input %d) is missing: CIFG LSTM is not supported" % (what, k))
    if list(t.shape) != [rows, cols]:
        op.fail("%s (input %d) has shape %s, expected %s" % (what, k, t.shape, [rows, cols]))
    if len(t.scale_bits) != 1:
        op.fail("%s (input %d): per-channel weights are not supported" % (what, k))
    bits, zp = c.qparams(op, t, what)
    if zp:
        op.fail("%s (input %d) has zero point %d, must be 0" % (what, k, zp))
    return t, bits


def _bias(op, tensors, k, n, wide):
    """The int32 (int64 for int16 activations) bias k of n values, as a list."""
    from edgepoi.infer.ops import common as c
    b = c.inp(op, tensors, k, (schema.INT64 if wide else c.INT32,), optional=True)
    if b is None:
        op.fail("%s bias (input %d) is missing" % (_NAMES[k - 12], k))
    vals = c.const_ints(op, b, "bias")
    if len(vals) != n:
        op.fail("bias (input %d) has %d values for %d cells" % (k, len(vals), n))
    return vals


def _fold(op, vals, offset, w, rows, depth):
    """vals + offset * (row sums of the constant weights w): the input offset moved into the bias."""
    from edgepoi.infer.ops import common as c
    if offset:
        sums = c.row_sums(op, w, rows, depth, "weights")
        vals = [vals[u] + offset * sums[u] for u in range(rows)]
    return c.ints(vals)


def prepare(op, tensors):
    from edgepoi.infer.ops import common as c
    if len(op.inputs) != 24 or len(op.outputs) != 1:
        op.fail("needs 24 inputs and 1 output, has %d and %d" % (len(op.inputs), len(op.outputs)))
    x = c.inp(op, tensors, 0, (c.INT8, c.INT16))
    wide = x.type == c.INT16
    _absent(op, tensors, (9, 10, 11), "peephole weights")
    _absent(op, tensors, (16, 17), "projection")
    _absent(op, tensors, (20, 21, 22, 23), "layer normalization")
    h = c.inp(op, tensors, 18, (x.type,))
    cs = c.inp(op, tensors, 19, (c.INT16,))
    y = c.out(op, tensors, 0, (x.type,))
    if not h.is_variable or not cs.is_variable:
        op.fail("the hidden and cell states (inputs 18, 19) must be variable tensors")
    tm = op.options.get("time_major", 0)
    d0, d1, n_in = c.rank(op, x, 3, "input")
    batch, steps = (d1, d0) if tm else (d0, d1)
    n_cell = c.rank(op, c.inp(op, tensors, 2, (c.INT8,)), 2, "forget gate input weights")[0]
    if list(y.shape) != [d0, d1, n_cell]:
        op.fail("output shape %s, expected %s" % (y.shape, [d0, d1, n_cell]))
    if c.numel(h.shape) != batch * n_cell or c.numel(cs.shape) != batch * n_cell:
        op.fail("states %s / %s do not hold %dx%d values" % (h.shape, cs.shape, batch, n_cell))
    xb, xzp = c.qparams(op, x, "input")
    hb, hzp = c.qparams(op, h, "hidden state")
    cb, czp = c.qparams(op, cs, "cell state")
    if czp or (wide and (xzp or hzp)):
        op.fail("cell state (and int16 activations) must have zero point 0")
    gates = []
    for g in range(4):
        w, wb = _weights(op, tensors, 1 + g, n_cell, n_in, _NAMES[g] + " input weights")
        r, rb = _weights(op, tensors, 5 + g, n_cell, n_cell, _NAMES[g] + " recurrent weights")
        # TFLM's LSTM multiplies the two scales in double precision (not the float32 product of
        # per-tensor FULLY_CONNECTED): the products differ in the last bits and flip rare roundings
        mi, si = quant.conv_multiplier(xb, wb, _BITS_2M12)
        mr, sr = quant.conv_multiplier(hb, rb, _BITS_2M12)
        gates.append((mi, si, _fold(op, _bias(op, tensors, 12 + g, n_cell, wide), -xzp, w, n_cell, n_in),
                      mr, sr, _fold(op, [0] * n_cell, -hzp, r, n_cell, n_cell)))
    act = op.options.get("activation", 0)
    if act != schema.ACT_TANH:  # the schema has no sigmoid; TFLM asserts on anything else
        op.fail("cell gate activation %d is not supported (TFLM runs TANH only)" % act)
    p2, _ = act16.checked_log2(cb)   # TFLM uses the rounded power even for a non-POT scale
    left = p2 + 12
    if left > 14:
        op.fail("cell state scale is too large (2**%d)" % p2)
    t_mult, t_shift = (3 << left, 0) if left >= 0 else (3, -left)
    m_fc, s_fc = quant.conv_multiplier(_BITS_NOS, cb, cb)
    m_ic, s_ic = quant.conv_multiplier(_BITS_NOS, _BITS_NOS, cb)
    m_h, s_h = quant.conv_multiplier(_BITS_NOS, _BITS_NOS, hb)
    lo, hi = c.QRANGE[h.type]
    return {"batch": batch, "steps": steps, "n_in": n_in, "n_cell": n_cell, "time_major": bool(tm),
            "int16": wide, "gates": gates,
            "m_fc": m_fc, "s_fc": s_fc, "m_ic": m_ic, "s_ic": s_ic, "m_h": m_h, "s_h": s_h,
            "h_zp": hzp, "h_min": lo, "h_max": hi, "clip": _cell_clip(op, cb),
            "t_mult": t_mult, "t_shift": t_shift, "t_round": (1 << (t_shift - 1)) if t_shift else 0,
            "macs": batch * steps * 4 * n_cell * (n_in + n_cell)}


def _cell_clip(op, cell_bits):
    """TFLM: int16(min(double(cell_clip) / double(scale), 32767)) when cell_clip > 0, else -1."""
    bits = op.options.get("cell_clip_bits", 0)
    if bits >> 31 or not bits & 0x7FFFFFFF or bits > 0x7F800000:   # <= 0 or nan: no clipping
        return -1
    if bits == 0x7F800000:
        return 32767
    m, e = quant.round_ratio(quant.f32(bits), quant.f32(cell_bits), 53)
    v = m << e if e >= 0 else m >> -e
    return 32767 if v > 32767 else v


def _gate(p, g, x, xo, w, r, h, ho, out, sig):
    """out[j] = act(sat16(FC_in + FC_rec)) for every cell j of gate g (one batch row)."""
    ni, nc = p["n_in"], p["n_cell"]
    mi, si, bi, mr, sr, br = p["gates"][g]
    mb = quant.multiply_by_quantized_multiplier64 if p["int16"] else quant.multiply_by_quantized_multiplier
    fn = act16.sigmoid if sig else act16.tanh
    for j in range(nc):
        acc = bi[j]
        wb = j * ni - xo
        for k in range(xo, xo + ni):
            acc += w[wb + k] * x[k]
        a = mb(acc, mi, si)
        a = -32768 if a < -32768 else (32767 if a > 32767 else a)
        acc = br[j]
        rb = j * nc - ho
        for k in range(ho, ho + nc):
            acc += r[rb + k] * h[k]
        v = mb(acc, mr, sr)
        v = a + (-32768 if v < -32768 else (32767 if v > 32767 else v))
        out[j] = fn(3 * (-32768 if v < -32768 else (32767 if v > 32767 else v)))


def _step(p, bufs, xo, ho, yo, ig, fg, cg, og):
    x, h, cs, y = bufs[0], bufs[18], bufs[19], bufs[-1]
    for g, out in enumerate((ig, fg, cg, og)):
        _gate(p, g, x, xo, bufs[1 + g], bufs[5 + g], h, ho, out, g != 2)
    mb = quant.multiply_by_quantized_multiplier
    m_fc, s_fc, m_ic, s_ic, m_h, s_h = p["m_fc"], p["s_fc"], p["m_ic"], p["s_ic"], p["m_h"], p["s_h"]
    clip, tm, ts, tr = p["clip"], p["t_mult"], p["t_shift"], p["t_round"]
    hzp, lo, hi = p["h_zp"], p["h_min"], p["h_max"]
    for j in range(p["n_cell"]):
        a = mb(fg[j] * cs[ho + j], m_fc, s_fc)
        b = mb(ig[j] * cg[j], m_ic, s_ic)
        v = (-32768 if a < -32768 else (32767 if a > 32767 else a)) + \
            (-32768 if b < -32768 else (32767 if b > 32767 else b))
        v = -32768 if v < -32768 else (32767 if v > 32767 else v)
        if clip >= 0:
            v = clip if v > clip else (-clip if v < -clip else v)
        cs[ho + j] = v
        v = hzp + mb(act16.tanh((v * tm + tr) >> ts) * og[j], m_h, s_h)   # tanh(c) * o -> hidden
        v = lo if v < lo else (hi if v > hi else v)
        h[ho + j] = v
        y[yo + j] = v


def eval(p, bufs):
    nb, nt, ni, nc = p["batch"], p["steps"], p["n_in"], p["n_cell"]
    ig, fg, cg, og = [0] * nc, [0] * nc, [0] * nc, [0] * nc
    for b in range(nb):
        for t in range(nt):
            row = t * nb + b if p["time_major"] else b * nt + t
            _step(p, bufs, row * ni, b * nc, row * nc, ig, fg, cg, og)
