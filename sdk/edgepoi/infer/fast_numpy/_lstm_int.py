"""The int64 path of the numpy LSTM (int8 activations): the layers whose weights or multipliers rule
out the float path of ``unidirectional_sequence_lstm``. Per time step: one exact float64 matmul for the
four recurrent FCs, TFLM's requantization as one int64 floor shift per column (``_MB``), the gates as
lookups in tables of ``act16.sigmoid`` / ``tanh`` over all int16 inputs.

    c = prepare(params, arrays)     # False: shifts beyond the int64 formula (use the reference)
    run(params, c, arrays)
"""
import numpy as np

from edgepoi.infer.fast_numpy import _lstm

try:
    from numpy._core.umath import clip as _uclip
except ImportError:
    from numpy.core.umath import clip as _uclip


class _MB(object):
    """MultiplyByQuantizedMultiplier (int32 inputs) with per-column multipliers, as one floor shift
    (the formula of ``_q``): ``(x*m + 2**30 + 2**(30+e) - 2**31*[x < 0]) >> (31+e)`` for right shifts e."""

    def __init__(self, mults, shifts, n):
        m = np.broadcast_to(np.asarray(mults, np.int64), (n,))
        s = np.broadcast_to(np.asarray(shifts, np.int64), (n,))
        e = np.maximum(-s, 0)
        self.left = np.maximum(s, 0) if (s > 0).any() else None
        self.m = m.copy()
        self.c = (np.int64(1) << 30) + np.where(e > 0, np.int64(1) << (30 + e), 0)
        self.neg = np.where(e > 0, np.int64(1) << 31, 0)
        self.sh = 31 + e

    def __call__(self, x):
        if self.left is not None:     # C: int32 x << shift wraps
            x = (((x << self.left) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        z = x * self.m
        z += self.c
        np.subtract(z, self.neg, out=z, where=x < 0)
        z >>= self.sh
        return z


_LO, _HI, _MID = np.int64(-32768), np.int64(32767), np.int64(32768)


def _clamp(a, lo=_LO, hi=_HI):
    return _uclip(a, lo, hi, out=a)


def prepare(p, arrays):
    nc, ni = p["n_cell"], p["n_in"]
    g = p["gates"]
    shifts = [g[k][i] for k in range(4) for i in (1, 4)] + [p["s_fc"], p["s_ic"], p["s_h"]]
    if max(abs(s) for s in shifts) > 31:   # beyond the int64 formula: run the reference instead
        return False
    # columns: gate-major (input, forget, cell, output) x cells
    w_in = np.concatenate([np.asarray(arrays[1 + k], np.float64).reshape(nc, ni).T for k in range(4)], 1)
    w_rec = np.concatenate([np.asarray(arrays[5 + k], np.float64).reshape(nc, nc).T for k in range(4)], 1)
    b_rec = np.concatenate([np.asarray(g[k][5], np.float64) for k in range(4)])
    w_rec = np.concatenate([w_rec, b_rec[None, :]], 0)    # [h, 1] @ w_rec: the bias rides along (exact)
    rep = lambda i: np.repeat([g[k][i] for k in range(4)], nc)  # noqa: E731
    # one table for the gates: sigmoid(3v) at [v + 32768], tanh(3v) at [65536 + v + 32768] (cell gate)
    v3 = 3 * np.arange(-32768, 32768, dtype=np.int64)
    tab = np.concatenate([_lstm.sigmoid(v3), _lstm.tanh(v3)])
    off = np.full(4 * nc, 32768, np.int64)
    off[2 * nc:3 * nc] += 65536
    cs = np.arange(-32768, 32768, dtype=np.int64)
    return {"int": True, "w_in": w_in, "w_rec": w_rec,
            "b_in": np.concatenate([np.asarray(g[k][2], np.int64) for k in range(4)]),
            "mb_in": _MB(rep(0), rep(1), 4 * nc), "mb_rec": _MB(rep(3), rep(4), 4 * nc),
            "mb_cell": _MB(np.repeat([p["m_fc"], p["m_ic"]], nc), np.repeat([p["s_fc"], p["s_ic"]], nc), 2 * nc),
            "mb_h": _MB(p["m_h"], p["s_h"], nc), "tab": tab, "off": off, "lo": off + _LO, "hi": off + _HI,
            "tanh_c": _lstm.tanh(cs * p["t_mult"] + p["t_round"] >> p["t_shift"])}


def run(p, c, arrays):
    nb, nt, ni, nc = p["batch"], p["steps"], p["n_in"], p["n_cell"]
    x = arrays[0].reshape(nt, nb, ni) if p["time_major"] else arrays[0].reshape(nb, nt, ni).transpose(1, 0, 2)
    y = arrays[-1].reshape(nt, nb, nc) if p["time_major"] else arrays[-1].reshape(nb, nt, nc).transpose(1, 0, 2)
    h_state, c_state = arrays[18].reshape(nb, nc), arrays[19].reshape(nb, nc)
    acc = np.dot(x.reshape(nt * nb, ni).astype(np.float64), c["w_in"]).astype(np.int64)
    acc += c["b_in"]
    fc_in = _clamp(c["mb_in"](acc)).reshape(nt, nb, 4 * nc)
    fc_in += c["off"]                                    # table offsets, see prepare
    h = np.ones((nb, nc + 1), np.float64)
    h[:, :nc] = h_state
    cs = c_state.astype(np.int64)
    tab, glo, ghi, tanh_c = c["tab"], c["lo"], c["hi"], c["tanh_c"]
    mb_rec, mb_cell, mb_h, w_rec = c["mb_rec"], c["mb_cell"], c["mb_h"], c["w_rec"]
    clip, hzp, lo, hi = np.int64(p["clip"]), np.int64(p["h_zp"]), np.int64(p["h_min"]), np.int64(p["h_max"])
    prod = np.empty((nb, 2 * nc), np.int64)
    for t in range(nt):
        v = _clamp(mb_rec(np.dot(h, w_rec).astype(np.int64)))
        v += fc_in[t]
        _uclip(v, glo, ghi, out=v)                        # sat16(FC_in + FC_rec) + table offset
        gt = tab.take(v)                                  # input, forget, cell, output gates
        np.multiply(gt[:, nc:2 * nc], cs, out=prod[:, :nc])      # forget * cell
        np.multiply(gt[:, :nc], gt[:, 2 * nc:3 * nc], out=prod[:, nc:])   # input * cell gate
        q = _clamp(mb_cell(prod))
        cs = _clamp(q[:, :nc] + q[:, nc:])
        if clip >= 0:
            _clamp(cs, -clip, clip)
        hv = mb_h(tanh_c.take(cs + _MID) * gt[:, 3 * nc:])
        hv += hzp
        _clamp(hv, lo, hi)
        y[t] = hv
        h[:, :nc] = hv
    h_state[...] = y[nt - 1]
    c_state[...] = cs
