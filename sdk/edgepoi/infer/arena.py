"""Lifetime-based arena planner (greedy by size, like TFLM's GreedyMemoryPlanner).

Each buffer has a size and a lifetime [first op, last op]; buffers whose lifetimes overlap never
share bytes, others may. Largest buffers are placed first at the lowest aligned offset that does not
collide with an already placed, lifetime-overlapping buffer.

The buffers themselves are made by ``edgepoi.infer.bind``.

Usage::

    offsets, total = plan([(size, first, last), ...], align=16)
"""


def _up(n, align):
    return (n + align - 1) // align * align


def plan(requests, align=16):
    """Returns (offsets list in request order, total arena bytes)."""
    order = sorted(range(len(requests)), key=lambda i: (-requests[i][0], requests[i][1], i))
    placed = []  # (offset, end, first, last)
    offsets = [0] * len(requests)
    total = 0
    for i in order:
        size, first, last = requests[i]
        size = _up(size, align)
        live = sorted((o, e) for (o, e, f, l) in placed if not (l < first or f > last))
        off = 0
        for o, e in live:
            if off + size <= o:
                break
            if e > off:
                off = e
        offsets[i] = off
        placed.append((off, off + size, first, last))
        if off + size > total:
            total = off + size
    return offsets, total


def lifetimes(graph_inputs, graph_outputs, op_ios, n_ops, candidates):
    """First/last op index of each candidate tensor (graph inputs live from 0, outputs to the end)."""
    first, last = {}, {}
    for t in candidates:
        if t in graph_inputs:
            first[t] = 0
            last[t] = 0
        if t in graph_outputs:
            last[t] = n_ops - 1
    for k, (ins, outs) in enumerate(op_ios):
        for t in outs:
            if t in candidates:
                if t not in first:
                    first[t] = k
                last[t] = max(last.get(t, k), k)
        for t in ins:
            if t in candidates:
                if t not in first:
                    first[t] = 0
                last[t] = max(last.get(t, k), k)
    return first, last
