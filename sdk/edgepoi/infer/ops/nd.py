"""N-d index helpers: broadcast strides and a row-major walk yielding flat input offsets.

Usage::

    from edgepoi.infer.ops import nd
    strides = nd.broadcast_strides([1, 4], [3, 4])      # [0, 1]
    for off in nd.iter_offsets([3, 4], strides): ...
"""


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def broadcast_strides(shape, out_shape):
    """Strides of ``shape`` aligned to out_shape (0 on broadcast dims); fails on mismatch."""
    r = len(out_shape)
    s = [1] * (r - len(shape)) + list(shape)
    strides = [0] * r
    acc = 1
    for i in range(r - 1, -1, -1):
        if s[i] == out_shape[i]:
            strides[i] = acc if s[i] != 1 else 0
        elif s[i] != 1:
            return None
        acc *= s[i]
    return strides


def iter_offsets(out_shape, strides):
    """Yield the input flat offset for every output element in row-major order."""
    r = len(out_shape)
    if r == 0:
        yield 0
        return
    idx = [0] * r
    off = 0
    total = numel(out_shape)
    for _ in range(total):
        yield off
        i = r - 1
        while i >= 0:
            idx[i] += 1
            off += strides[i]
            if idx[i] < out_shape[i]:
                break
            off -= strides[i] * idx[i]
            idx[i] = 0
            i -= 1
