"""Direct requantization tables of the numpy fast path (``_q.Requant.direct``) and the
FULLY_CONNECTED kernel that uses them, against the scalar reference and TFLM, bit for bit.

The exactness argument: the clamped requantized value is a non-decreasing step function of the int32
accumulator (no left shift, multiplier >= 0), so a table of the exact outputs between the first and
the last step, indexed by the clamped accumulator, is exact everywhere. The tests sweep every
accumulator of that range (plus margins), both int32 extremes and random int32s.
"""
import numpy as np
import pytest

from edgepoi.infer import schema as S
from edgepoi.infer.fast_numpy._q import DIRECT_MAX, Requant
from edgepoi.infer.quant import multiply_by_quantized_multiplier as mbqm_ref
from edgepoi_host.tflite_writer import ModelWriter
from test_infer_fast_numpy import ACTS, check, rand8

I8, I32 = S.INT8, S.INT32


def _direct_out(d, acc, ch):
    """Output of a direct table (Requant.direct) for int accumulators ``acc`` of channel ``ch``."""
    off, lut, lo, hi = d
    return lut[np.clip(acc + off[ch], lo[ch], hi[ch])]


@pytest.mark.parametrize("case", range(14))
def test_direct_table_is_exact_for_every_int32_accumulator(case):
    """Requant.direct against the scalar reference: exhaustively over the whole range where the output
    is not clamped (plus margins: the clamp bounds), at both int32 extremes and on random int32s."""
    rng = np.random.default_rng(2400 + case)
    n = 1 if case % 3 == 0 else int(rng.integers(2, 5))
    uniform = case % 2 == 0
    e = int(rng.integers(0, 8)) if case < 12 else int(rng.integers(20, 31))
    m = rng.integers(1 << 30, 1 << 31, size=1 if uniform else n)
    m, s = (np.full(n, int(m[0])), np.full(n, -e)) if uniform else (m, np.full(n, -e))
    zp = int(rng.integers(-128, 128))
    lo, hi = (-128, 127) if case % 4 == 1 else sorted(rng.integers(-128, 128, size=2).tolist())
    if case == 4:
        m[:], zp = 0, hi + 3                       # a zero multiplier: the output is hi everywhere
    if case == 6:
        lo = hi                                    # a degenerate activation range
    rq = Requant(m, s, None, zp, lo, hi, n)
    d = rq.direct(limit=1 << 22)
    if case >= 12:                                 # 2**(31+e)/m accumulators per output step: too big
        assert d is None and rq.direct() is None and DIRECT_MAX < (1 << 22)
        return
    assert d is not None
    off, lut, lo_i, hi_i = d
    if uniform:
        assert len(set(lo_i.tolist())) == 1 and len(set(hi_i.tolist())) == 1 and int(lo_i[0]) == 0
        assert int(hi_i[0]) == len(lut) - 1
    for c in range(n):
        def ref(a, c=c):
            return min(hi, max(lo, mbqm_ref(int(a), int(m[c]), int(s[c])) + zp))
        first, last = int(lo_i[c] - off[c]), int(hi_i[c] - off[c])   # accumulators at the table ends
        assert ref(first) == lo or first < -(1 << 31)
        assert ref(last) == hi or last > (1 << 31) - 1
        sweep = np.arange(max(first - 3, -(1 << 31)), min(last + 4, 1 << 31), dtype=np.int64)
        extremes = np.array([-(1 << 31), -(1 << 31) + 1, -1, 0, 1, (1 << 31) - 2, (1 << 31) - 1])
        accs = np.concatenate([sweep, extremes, rng.integers(-(1 << 31), 1 << 31, size=3000)])
        got = _direct_out(d, accs, c)
        want = np.array([ref(a) for a in accs.tolist()])
        bad = int(np.count_nonzero(got != want))
        assert bad == 0, "channel %d: %d of %d differ" % (c, bad, len(accs))


@pytest.mark.parametrize("case", range(6))
def test_fully_connected_direct_tables_match_ref_and_tflm(case):
    """FULLY_CONNECTED requantizes through a direct table when it is small (uniform: one table;
    per channel: concatenated tables) and falls back to thresholds when it is not; all exact."""
    rng = np.random.default_rng(2500 + case)
    batch, depth, units = (1, 640, 128) if case < 2 else (int(rng.integers(1, 4)), 77, 9)
    per_channel = case in (2, 3)
    w = ModelWriter()
    s, z = 0.05, int(rng.integers(-100, 100))
    x = w.tensor("x", [batch, depth], I8, scale=s, zero_point=z)
    ws = rng.uniform(0.004, 0.006, size=units) if per_channel else np.full(1, 0.005)
    k = w.tensor("w", [units, depth], I8, data=rng.integers(-127, 128, size=(units, depth)),
                 scale=list(ws), quantized_dimension=0)
    bs = ws * s if per_channel else np.full(1, ws[0] * s)
    b = w.tensor("b", [units], I32, data=rng.integers(-3000, 3000, size=units),
                 scale=list(bs) if per_channel else [float(bs[0])])
    # accumulators per output step = so / (s * ws): 800 or ~80 (tables of 204K or 9 x ~20K entries),
    # or 4M (a table far over DIRECT_MAX)
    so = 0.2 if case < 2 else 0.02 if case < 5 else 1000.0
    y = w.tensor("y", [batch, units], I8, scale=so, zero_point=int(rng.integers(-20, 20)))
    w.op(S.FULLY_CONNECTED, [x, k, b], [y], activation=ACTS[case % 2])
    model = w.finish([x], [y])
    for seed in range(3):
        it = check(model, [rand8(np.random.default_rng(seed), [batch, depth])])
    kinds = [p["_np"][2] for _, _, p, _ in it._plan if "_np" in p]
    assert kinds == ["threshold" if case == 5 else "direct-channels" if per_channel else "direct"]
