"""Derive the 256-entry uint16 sigmoid table of TFLM's int16 LOGISTIC / TANH / LSTM gates from TFLM's
*behaviour* (never from its source) and write ``sdk/edgepoi/infer/lut16.py``.

How: TFLM's int16 TANH scales its input to ``v`` (for input scale 1/6144 the prepare step picks
multiplier 16384 with shift 13, so ``v == 2 * x`` exactly), splits ``|v|`` into ``uh = |v| >> 8`` and
``ut = |v| & 0xFF`` and returns ``((T[uh] << 8) + ut * (T[uh+1] - T[uh]) - (1 << 23) + 128) >> 8`` for
``v >= 0``. At ``ut == 0`` that is ``T[uh] - 32768``: the inputs ``x = 128 * uh`` read entries 0..254
directly. ``T[255]`` only enters through interpolation in the last segment (``uh == 254``); the outputs
at ``x = 32512 .. 32639`` (``ut = 0, 2, .., 254``) pin it down uniquely (the script checks that).

The same table also follows from a closed formula (checked here and in tests/test_infer_lstm.py):
with ``s(i) = 65536 * sigmoid(i / 24)`` (float64), entry ``i < 255`` is
``floor(s(i) - e(i) / 2 + 0.5)`` where ``e(i) = (s(i) + s(i+1)) / 2 - s(i + 1/2)`` is the error of linear
interpolation at the middle of segment i (the entry is raised by half of it), and entry 255 is 65535.
Device code never evaluates the formula (single-precision floats there); it uses the stored table.

    python scripts/derive_sigmoid_table.py           # measure, compare with the formula, write lut16.py
    python scripts/derive_sigmoid_table.py --check   # exit 1 if lut16.py differs from TFLM's table
"""
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "sdk", "edgepoi", "infer", "lut16.py")
SCALE = 1.0 / 6144     # TanhPrepare: 12288 * scale doubled past 16383.5 -> multiplier 16384, shift 13
LAST = list(range(32512, 32640))   # v = 65024 + 2j: uh = 254, ut = 0, 2, .., 254


def _tanh_outputs(xs):
    """TFLM's int16 TANH of the int16 values xs (input scale SCALE, output scale 2**-15)."""
    import numpy as np
    from edgepoi.infer import schema as S
    from edgepoi_host.tflite_writer import ModelWriter
    from tflite_micro.python.tflite_micro import runtime
    w = ModelWriter("derive_sigmoid_table")
    x = w.tensor("x", [len(xs)], S.INT16, scale=SCALE, zero_point=0)
    y = w.tensor("y", [len(xs)], S.INT16, scale=1.0 / 32768, zero_point=0)
    w.op(S.TANH, [x], [y])
    it = runtime.Interpreter.from_bytes(w.finish([x], [y]))
    it.set_input(np.array(xs, dtype=np.int16), 0)
    it.invoke()
    return [int(v) for v in it.get_output(0)]


def _interp(ua, ub, ut):
    """The kernel's output for v >= 0 in segment (ua, ub) at fraction ut (int32/uint32 arithmetic)."""
    r = ((ua << 8) + ut * ((ub - ua) & 0xFFFFFFFF)) & 0xFFFFFFFF
    r = r - (1 << 32) if r & 0x80000000 else r
    return (r - (1 << 23) + (1 << 7)) >> 8


def measure():
    """The table read off TFLM's int16 TANH (list of 256 ints); ValueError if it is not determined."""
    out = _tanh_outputs([128 * u for u in range(255)] + LAST)
    table = [v + 32768 for v in out[:255]]
    for x, o in zip([128 * u for u in range(255)], out):
        if not 0 <= o + 32768 <= 65535:
            raise ValueError("output %d at x=%d is no table entry" % (o, x))
    samples = [(2 * x - 65024, o) for x, o in zip(LAST, out[255:])]
    last = [t for t in range(65536) if all(_interp(table[254], t, ut) == o for ut, o in samples)]
    if len(last) != 1:
        raise ValueError("entry 255 is not determined by the samples: candidates %s" % last[:8])
    return table + last


def formula():
    """The closed form described in the module docstring (float64, host only)."""
    def s(v):
        return 65536.0 / (1.0 + math.exp(-v / 24.0))
    out = []
    for i in range(255):
        err = (s(i) + s(i + 1)) / 2 - s(i + 0.5)
        out.append(int(math.floor(s(i) - err / 2 + 0.5)))
    return out + [65535]


def render(table):
    raw = b"".join(bytes((v & 0xFF, v >> 8)) for v in table)
    lines = []
    for k in range(0, len(raw), 16):
        lines.append('    b"%s"' % "".join("\\x%02x" % c for c in raw[k:k + 16]))
    return ('"""sigmoid(i/24), i = 0..255, in unsigned 0.16 fixed point: the table TFLM\'s int16 LOGISTIC,\n'
            'TANH and LSTM gates interpolate linearly (tanh(x) = 2*sigmoid(2x) - 1). Generated file.\n\n'
            'Provenance: measured from TFLM\'s own int16 TANH kernel (the tflite_micro package), not copied\n'
            'from its source: at input scale 1/6144 the kernel reads entry i unmixed at x = 128*i (output =\n'
            'entry - 32768), and entry 255 is fixed by the interpolated outputs of the last segment. It equals\n'
            'round(s(i) - e(i)/2) with s(i) = 65536*sigmoid(i/24) and e(i) the midpoint error of linear\n'
            'interpolation on segment i (entry 255: 65535). Regenerate with\n'
            '``python scripts/derive_sigmoid_table.py``; tests/test_infer_lstm.py re-derives it from TFLM.\n'
            'Little-endian uint16 (every supported port is little-endian).\n\n'
            '    from edgepoi.infer.lut16 import SIGMOID_U16\n'
            '    SIGMOID_U16[0], SIGMOID_U16[255]      # 32768, 65535\n'
            '"""\n'
            'from array import array\n\n'
            'SIGMOID_U16 = array("H", (\n%s))\n' % "\n".join(lines))


def main(argv):
    table = measure()
    f = formula()
    diff = [i for i in range(256) if f[i] != table[i]]
    print("measured from TFLM: %d entries, first %s, last %s" % (len(table), table[:4], table[-4:]))
    print("closed formula: %s" % ("reproduces all 256 entries" if not diff else "differs at %s" % diff))
    if "--check" in argv:
        sys.path.insert(0, os.path.join(ROOT, "sdk"))
        from edgepoi.infer.lut16 import SIGMOID_U16
        ok = list(SIGMOID_U16) == table
        print("%s %s TFLM's table" % (OUT, "equals" if ok else "DIFFERS FROM"))
        return 0 if ok else 1
    with open(OUT, "w") as fh:
        fh.write(render(table))
    print("wrote %s" % OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
