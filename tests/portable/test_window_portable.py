# heapsize: 64K
# The agent's input window and audit inputs (edgepoi.window): every held input is byte for byte the window
# an inference saw, for readings of any size, across the ring's wrap-around, within the byte budget.
from edgepoi.window import Inputs, quantize_into


def _run(n, step, keep, budget, sizes, marks=None, remember=12):
    """Slide readings of the given sizes (byte values counting up); mark every window (or those whose
    index is in marks). Returns (inputs, {seq: the window as it was} of the last ``remember`` marked,
    [those seqs in order])."""
    ins = Inputs(n, step, keep, budget)
    seen = {}
    order = []
    v = 0
    for seq, k in enumerate(sizes):
        ins.slide(k)
        for j in range(k):
            ins.win[n - k + j] = v & 0xFF
            v += 1
        if marks is None or seq in marks:
            ins.mark(seq)
            seen[seq] = bytes(ins.win)
            order.append(seq)
            if len(order) > remember:
                del seen[order.pop(0)]
    return ins, seen, order


def _held(ins, seen):
    out = []
    for seq in sorted(seen):
        got = ins.get(seq)
        if got is not None:
            assert got == seen[seq], (seq, got, seen[seq])
            out.append(seq)
    return out


def test_frames_keep_the_newest_windows_in_little_memory():
    # micro_speech-like: 49 steps of 40 bytes, 8 inputs: the window and 7 frames, not 8 windows
    ins, seen, order = _run(1960, 40, 8, 8192, [40] * 70)
    assert len(ins.win) == 1960 and len(ins.hist) == 7 * 40
    assert _held(ins, seen) == order[-8:]


def test_scalar_readings_and_wrap_around():
    ins, seen, order = _run(16, 1, 5, 8192, [1] * 50)
    assert len(ins.hist) == 4 and _held(ins, seen) == order[-5:]


def test_reading_size_unlike_the_shape_refits_the_ring_at_the_first_reading():
    ins, seen, order = _run(16, 1, 3, 8192, [4] * 12)   # the shape said 1 byte per step; readings are 4
    assert ins.step == 4 and len(ins.hist) == 8 and _held(ins, seen) == order[-3:]


def test_budget_bounds_the_ring_and_whole_window_readings():
    ins, seen, order = _run(16, 4, 8, 28, [4] * 12)     # 28 bytes: the window and 3 readings
    assert len(ins.hist) == 12 and _held(ins, seen) == order[-4:]
    ins, seen, order = _run(8, 8, 3, 64, [8] * 6)        # each reading is a whole window
    assert len(ins.hist) == 16 and _held(ins, seen) == order[-3:]
    ins, seen, order = _run(8, 8, 3, 8, [8] * 4)         # no room beyond the window: only the newest
    assert len(ins.hist) == 0 and _held(ins, seen) == order[-1:]


def test_unmarked_readings_age_the_held_inputs():
    ins, seen, order = _run(16, 4, 4, 8192, [4] * 10, marks=(5, 6, 7, 8))
    assert _held(ins, seen) == [6, 7, 8]                # the ring holds 12 bytes: 5's window slid 16
    for seq in (9, -1, "x", None, 5):
        assert ins.get(seq) is None


def test_quantize_clamps_and_rounds():
    dst = bytearray(5)
    quantize_into([0.0, 0.26, -100.0, 100.0, -0.26], dst, 0, (0.25, -84))
    assert bytes(dst) == bytes(((-84) & 0xFF, (-83) & 0xFF, 0x80, 0x7F, (-85) & 0xFF))
