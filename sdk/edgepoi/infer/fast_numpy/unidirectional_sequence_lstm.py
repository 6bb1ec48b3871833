"""UNIDIRECTIONAL_SEQUENCE_LSTM fast path (int8 and int16 activations), bit-exact with the reference
``ops.unidirectional_sequence_lstm`` (whose ``prepare`` params it consumes).

Before the time loop, the input FCs of all time steps are one exact matmul, requantized and clamped to
int16 in a few whole-array calls. Each time step then is a fixed sequence of about 19 numpy calls on
preallocated buffers (no Python loop over cells or gates; constants shaped like the operands, since
numpy's broadcasting and casting paths cost more than the work on arrays this small):

- one matmul ``[h - h_min, 1] @ W`` gives the four recurrent FCs already multiplied by their
  requantization multipliers (float64; float32 ``h @ w`` then ``* M + B`` for large layers), so the
  requantization is ``trunc(Y + copysign(K, Y))`` (``_lstm``; int16 activations: ``trunc``);
- the gate activations are one table lookup: ``FC_in + FC_rec`` indexes per-gate tables of
  ``act16.sigmoid`` / ``tanh`` over the reachable sums (saturation included), the input and forget
  gate tables pre-multiplied by the cell multipliers, so that ``[i, f] * [g, c]`` is one product
  followed by the same trunc requantization;
- the new cell state indexes a tanh table directly; ``tanh(c) * o`` becomes the hidden state by
  ``searchsorted`` in the exact thresholds of its requantization (``_lstm.thresholds``).

Every float holds an exact integer or dyadic fraction: the bounds are checked from the weights at the
first call; layers that fail them run the int64 path (``_lstm_int``, int8) or the reference (int16).

    from edgepoi.infer.fast_numpy import unidirectional_sequence_lstm as lstm
    lstm.eval(params, arrays)       # arrays: 24 inputs (None where absent), then the output
"""
import numpy as np

from edgepoi.infer.fast_numpy import _lstm, _lstm_int

try:                    # the clip ufunc itself: np.clip's wrapper costs more than the work here
    from numpy._core.umath import clip as _uclip
except ImportError:
    from numpy.core.umath import clip as _uclip

SUPPORTS_INT16 = True
FLOAT_PATH = True       # False: int8 layers take the int64 path (tests compare both with TFLM)
_ORDER = (0, 1, 3, 2)   # column blocks: input, forget, output, cell gate
_BIG = 40000            # recurrent weights from this many elements on: float32 matmul when exact
_SMALL_IN = 1 << 17     # input FCs up to this many MACs: float64 matmul with folded multipliers
_THR = {}               # (m, s, zp, lo, hi) -> hidden-state thresholds


def _cols(p, arrays, base, depth, i):
    nc, g = p["n_cell"], p["gates"]
    w = np.concatenate([np.asarray(arrays[base + k], np.int64).reshape(nc, depth).T for k in _ORDER], 1)
    return w, np.concatenate([np.asarray(g[k][i], np.int64) for k in _ORDER])


def _rep(p, i):
    return np.repeat(np.array([p["gates"][k][i] for k in _ORDER], np.int64), p["n_cell"])


def _rows(v, n):
    """v (a row of constants) repeated on n rows, contiguous: ufuncs on equal shapes skip broadcasting."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.float64), (n, np.size(v))))


def _prep_float(p, arrays):
    nb, nt, ni, nc = p["batch"], p["steps"], p["n_in"], p["n_cell"]
    wide = p["int16"]
    xlo, xhi = (-32768, 32767) if wide else (-128, 127)
    hlo, hhi = p["h_min"], p["h_max"]
    w_in, b_in = _cols(p, arrays, 1, ni, 2)
    w_rec, b_rec = _cols(p, arrays, 5, nc, 5)
    m_in, s_in, m_rec, s_rec = _rep(p, 0), _rep(p, 1), _rep(p, 3), _rep(p, 4)
    # input FCs (once per invoke): exact accumulators, requantized like the recurrent ones below
    lo_i, hi_i, part_i = _lstm.acc_bounds(w_in, b_in, xlo, xhi)
    if wide:
        red, tot = _lstm.rq64_consts(m_in, s_in)
        if (tot < 1).any() or int((part_i * red).max()) + (1 << int(tot.max())) >= 1 << 52:
            return None
        sc = np.array([2.0 ** -t for t in tot.tolist()])
        fin = (red * sc, (b_in * red + (np.int64(1) << (tot - 1))) * sc, None)     # floor
    else:
        fi = _lstm.float_consts(m_in, s_in, part_i)
        if fi is None:
            return None
        fin = (fi[0], b_in * fi[0] + fi[1], fi[2])
    a_lo, a_hi = _lstm.rq_exact(lo_i, m_in, s_in, wide), _lstm.rq_exact(hi_i, m_in, s_in, wide)
    aclip = int(a_lo.min()) < -32768 or int(a_hi.max()) > 32767
    a_lo, a_hi = _lstm.clamp16(a_lo), _lstm.clamp16(a_hi)
    # small input FCs: one float64 matmul [x, 1] @ [w * M; B]; large ones: exact float32 x @ w, * M + B
    xpart = int((np.abs(w_in).sum(0) * max(-xlo, xhi)).max())
    fold = xpart >= 1 << 24 or nt * nb * (ni + 1) * 4 * nc <= _SMALL_IN
    if fold:
        w_in = np.concatenate([w_in * fin[0], fin[1][None, :]], 0)
        fin = (None, None, fin[2])
    # recurrent FCs of k = h - h_min (the hidden state as searchsorted gives it; h_min moves into the
    # bias): Y = [k, 1] @ W in float64, or float32 k @ W then * M + B
    lo_r, hi_r, _ = _lstm.acc_bounds(w_rec, b_rec, hlo, hhi)
    b_k = b_rec + hlo * w_rec.sum(0)
    part_r = _lstm.acc_bounds(w_rec, b_k, 0, hhi - hlo)[2]
    big = (nc + 1) * 4 * nc >= _BIG and int((np.abs(w_rec).sum(0) * (hhi - hlo)).max()) < 1 << 24
    if wide:
        red, tot = _lstm.rq64_consts(m_rec, s_rec)
        if (tot < 1).any():
            return None
        r_lo, r_hi = _lstm.rq_exact(lo_r, m_rec, s_rec, True), _lstm.rq_exact(hi_r, m_rec, s_rec, True)
        roff = 1 << int(max(-r_lo.min(), r_hi.max(), 1)).bit_length()
        if int((part_r * red).max()) + (roff + 1 << int(tot.max())) >= 1 << 52:
            return None
        sc = np.array([2.0 ** -t for t in tot.tolist()])
        M = red * sc
        B = (b_k * red + (np.int64(1) << (tot - 1)) + (np.int64(roff) << tot)) * sc
        K = None
    else:
        fc = _lstm.float_consts(m_rec, s_rec, part_r)
        if fc is None:
            return None
        M, E, K = fc
        B = b_k * M + E
        r_lo, r_hi, roff = _lstm.rq_exact(lo_r, m_rec, s_rec, False), _lstm.rq_exact(hi_r, m_rec, s_rec, False), 0
    rclip = int(r_lo.min()) < -32768 or int(r_hi.max()) > 32767
    r_lo, r_hi = _lstm.clamp16(r_lo), _lstm.clamp16(r_hi)
    # cell state: [i*g, f*c] requantized by (m_ic, s_ic) and (m_fc, s_fc)
    cm = np.repeat(np.array([p["m_ic"], p["m_fc"]], np.int64), nc)
    cs = np.repeat(np.array([p["s_ic"], p["s_fc"]], np.int64), nc)
    cc = _lstm.float_consts(cm, cs, 1 << 30)
    if cc is None or p["s_h"] > 0:
        return None
    Mc, Ec, Kc = cc
    clip = p["clip"]
    clo, chi = (-clip, clip) if clip >= 0 else (-32768, 32767)
    ext = np.array([-32768 * 32767, 32768 * 32767], np.int64)
    q_ext = _lstm.rq_exact(ext, p["m_ic"], p["s_ic"], False).tolist() + \
        _lstm.rq_exact(ext, p["m_fc"], p["s_fc"], False).tolist()
    qclip = min(q_ext) < -32768 or max(q_ext) > 32767
    # gate tables over the reachable FC sums; i and f pre-multiplied by the cell multipliers
    v_lo, v_hi = a_lo + r_lo, a_hi + r_hi
    parts, off, start = [], np.empty(4 * nc, np.int64), 0
    for q, scale in enumerate((Mc[0], Mc[nc], 1.0, 1.0)):
        lo, hi = int(v_lo[q * nc:(q + 1) * nc].min()), int(v_hi[q * nc:(q + 1) * nc].max())
        v3 = 3 * _lstm.clamp16(np.arange(lo, hi + 1, dtype=np.int64))
        parts.append((_lstm.tanh(v3) if q == 3 else _lstm.sigmoid(v3)) * scale)
        off[q * nc:(q + 1) * nc] = start - lo
        start += hi - lo + 1
    s_all = np.arange(-65536, 65536, dtype=np.int64)      # q_ic + q_fc, indexed mod 2**17
    tc = np.clip(s_all, clo, chi) * p["t_mult"] + p["t_round"] >> p["t_shift"]
    key = (p["m_h"], p["s_h"], p["h_zp"], hlo, hhi)
    thr = _THR.get(key)
    if thr is None:
        thr = _THR[key] = _lstm.thresholds(p["m_h"], p["s_h"], p["h_zp"], hlo, hhi)
    hdt = np.float32 if big else np.float64
    H = np.ones((nt + 1, nb, nc + (0 if big else 1)), hdt)
    A = np.empty((nt, nb, 4 * nc), np.int64)
    GG = np.zeros((nb, 5 * nc))
    P = np.empty((nb, 2 * nc))
    n = nt * nb if nt * nb * 4 * nc <= 1 << 16 else 1     # rows of the input stage's constants
    c = {"w_in": w_in.astype(np.float64 if fold else np.float32),
         "fin": tuple(None if v is None else _rows(v, n) for v in fin), "a_off": _rows(off - roff, n),
         "i16": (_rows(np.full(4 * nc, -32768.0), n), _rows(np.full(4 * nc, 32767.0), n)) if aclip else None,
         "xs": np.ones((nt, nb, ni + fold), np.float64 if fold else np.float32), "tab": np.concatenate(parts),
         "tanh_c": np.roll(np.asarray(_lstm.tanh(tc), np.float64), -65536), "thr": thr,
         "W": w_rec.astype(np.float32) if big else np.concatenate([w_rec * M, B[None, :]], 0),
         "M": _rows(M, nb) if big else None, "B": _rows(B, nb) if big else None,
         "K": None if K is None else _rows(K, nb),
         "H": H, "A": A, "GG": GG, "P": P, "T4": np.empty((nb, 4 * nc)), "T2": np.empty((nb, 2 * nc)),
         "S": np.empty((nb, nc)), "X": np.empty((nb, nc)),
         "rclip": (np.full((nb, 4 * nc), roff - 32768), np.full((nb, 4 * nc), roff + 32767)) if rclip else None,
         "qclip": (np.full((nb, 2 * nc), -32768.0), np.full((nb, 2 * nc), 32767.0)) if qclip else None,
         "Ec": _rows(Ec, nb), "Kc": _rows(Kc, nb), "clo": np.full((nb, nc), float(clo)),
         "chi": np.full((nb, nc), float(chi)), "hlo": hlo,
         "views": [(H[t], H[t + 1, :, :nc], A[t]) for t in range(nt)]}
    return c


def _inputs(p, c, x):
    """A[t] = table offset + sat16(requantized input FC) for every time step."""
    nt, nb, nc = p["steps"], p["batch"], p["n_cell"]
    xs = c["xs"]
    xs[:, :, :p["n_in"]] = x
    M, B, K = c["fin"]
    Y = np.dot(xs.reshape(nt * nb, -1), c["w_in"])
    if M is not None:
        Y = np.multiply(Y, M)
        np.add(Y, B, Y)
    if K is None:                                         # int16: floor
        np.floor(Y, Y)
    else:
        np.add(Y, np.copysign(K, Y), Y)
        np.trunc(Y, Y)
    lo, hi = c["i16"] or (None, None)
    if lo is None:
        pass
    elif Y.size < 2048:
        _uclip(Y, lo, hi, Y)
    else:                                                 # (float clip is slow on long arrays)
        np.minimum(Y, hi, Y)
        np.maximum(Y, lo, Y)
    np.add(Y, c["a_off"], Y)
    np.copyto(c["A"].reshape(nt * nb, -1), Y, casting="unsafe")


def _eval_float(p, c, arrays):
    nb, nt, ni, nc = p["batch"], p["steps"], p["n_in"], p["n_cell"]
    tm = p["time_major"]
    x = arrays[0].reshape(nt, nb, ni) if tm else arrays[0].reshape(nb, nt, ni).transpose(1, 0, 2)
    y = arrays[-1].reshape(nt, nb, nc) if tm else arrays[-1].reshape(nb, nt, nc).transpose(1, 0, 2)
    h_state, c_state = arrays[18].reshape(nb, nc), arrays[19].reshape(nb, nc)
    _inputs(p, c, x)
    H, GG, P, S, X, T4, T2 = c["H"], c["GG"], c["P"], c["S"], c["X"], c["T4"], c["T2"]
    hlo = c["hlo"]
    np.subtract(h_state, float(hlo), H[0, :, :nc])
    GG[:, 4 * nc:] = c_state
    W, M, B, K = c["W"], c["M"], c["B"], c["K"]
    tab, tanh_c, thr, Ec, Kc = c["tab"], c["tanh_c"], c["thr"], c["Ec"], c["Kc"]
    rclip, qclip, clo, chi = c["rclip"], c["qclip"], c["clo"], c["chi"]
    G4, IF, GC, O, C = GG[:, :4 * nc], GG[:, :2 * nc], GG[:, 3 * nc:], GG[:, 2 * nc:3 * nc], GG[:, 4 * nc:]
    P1, P2 = P[:, :nc], P[:, nc:]
    dot, add, mul, copysign, take, trunc, i64 = np.dot, np.add, np.multiply, np.copysign, tab.take, np.trunc, np.int64
    for h, h_next, a in c["views"]:
        Y = dot(h, W)
        if M is not None:                                 # float32 matmul: scale in float64
            Y = mul(Y, M)
            add(Y, B, Y)
        if K is not None:                                 # int8: trunc(Y + copysign(K, Y))
            add(Y, copysign(K, Y, T4), Y)
        R = Y.astype(i64)                                 # the requantized recurrent FCs
        if rclip is not None:
            _uclip(R, rclip[0], rclip[1], R)
        add(R, a, R)                                      # + input FCs + table offsets
        take(R, out=G4, mode="clip")                      # i', f', o, g (i', f' pre-multiplied)
        mul(IF, GC, P)                                    # [i*g, f*c] * multipliers
        add(P, Ec, P)
        add(P, copysign(Kc, P, T2), P)
        trunc(P, P)
        if qclip is not None:
            _uclip(P, qclip[0], qclip[1], P)
        add(P1, P2, S)
        _uclip(S, clo, chi, C)                            # sat16 and the cell clip
        mul(tanh_c[S.astype(i64)], O, X)
        h_next[...] = thr.searchsorted(X, "right")        # h - h_min
    np.add(H[1:, :, :nc], hlo, y, casting="unsafe")
    h_state[...] = y[nt - 1]
    np.copyto(c_state, C, casting="unsafe")


def eval(p, arrays):
    c = p.get("_np")
    if c is None:
        c = _prep_float(p, arrays) if FLOAT_PATH else None
        if c is None:
            c = False if p["int16"] else _lstm_int.prepare(p, arrays)
        p["_np"] = c
    if c is False:
        from edgepoi.infer.ops import unidirectional_sequence_lstm as ref
        ref.eval(p, [None if a is None else memoryview(a.reshape(-1)) for a in arrays])
    elif "int" in c:
        _lstm_int.run(p, c, arrays)
    else:
        _eval_float(p, c, arrays)
