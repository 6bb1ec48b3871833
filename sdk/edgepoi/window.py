"""The agent's model input: a sliding window of quantized readings, and the inputs of recent inferences.

Usage (what the agent does)::

    inputs = Inputs(n, step, keep, budget)    # allocated with the model, never again
    inputs.slide(k)                           # a reading of k bytes: its place is win[n - k:]
    quantize_into(frame, inputs.win, n - k, (scale, zero_point))
    inputs.mark(seq)                          # the window is the input attestation seq signed
    inputs.get(seq)                           # -> its bytes for a cmd/reveal audit, or None
    inputs.parts(seq)                         # -> the same as views of the buffers (no copy), or None
"""


def quantize_into(values, dst, off, quantization):
    """Quantize readings with the input tensor's (scale, zero point) into dst[off:] as int8 bytes."""
    scale, zp = quantization
    for v in values:
        q = int(round(v / scale)) + zp
        dst[off] = (-128 if q < -128 else 127 if q > 127 else q) & 0xFF
        off += 1


class Inputs:
    """The model's input window (``win``: the newest n bytes of quantized readings) and the inputs of the
    newest attested inferences, for cmd/reveal audits. Consecutive windows overlap, so only the bytes that
    slid out of the window are kept (``hist``, a ring): the input of an inference whose window has since
    slid by a bytes is the last a bytes of the ring followed by the front of the window. Both buffers are
    allocated with the model: the ring for the ``keep`` newest inputs (keep - 1 readings that slid out,
    a reading taken to fill one step of the input's second dimension; refitted at the first reading when
    it is of another size) within ``budget`` bytes in all. An input is held while its bytes are: the
    newest ``keep`` of them, fewer while readings go unattested (no beacon yet, queue full)."""

    def __init__(self, n, step, keep, budget):
        self.win = bytearray(n)
        self.budget = budget
        self.seqs = [-1] * keep   # attested inputs, and by how many bytes the window slid since each
        self.ages = [0] * keep
        self.next = 0
        self.used = False
        self._fit(step)

    def _fit(self, k):
        self.hist = bytearray(max(0, min(self.budget - len(self.win), (len(self.seqs) - 1) * k)))
        self.w = 0                # where the next byte that slides out goes
        self.step = k

    def slide(self, k):
        """Slide the window by k (<= n) bytes, its first k into the ring; the caller writes the last k."""
        if not self.used:
            self.used = True
            if k != self.step:
                try:
                    self._fit(k)
                except MemoryError:
                    pass          # the ring allocated with the model still works, for fewer inputs
        win = memoryview(self.win)
        h = len(self.hist)
        if h:
            src = win[max(0, k - h):k]
            m = len(src)
            ring = memoryview(self.hist)
            first = min(m, h - self.w)
            ring[self.w:self.w + first] = src[:first]
            ring[0:m - first] = src[first:]
            self.w = (self.w + m) % h
        n = len(self.win)
        win[0:n - k] = win[k:n]
        ages = self.ages
        for i in range(len(ages)):
            if ages[i] <= h:
                ages[i] += k

    def mark(self, seq):
        """The window is the input attestation ``seq`` signed."""
        i = self.next
        self.seqs[i] = seq
        self.ages[i] = 0
        self.next = (i + 1) % len(self.seqs)

    def parts(self, seq):
        """The input of inference ``seq`` as views of the ring and the window that joined are its bytes
        (no copy: valid until the next slide), or None when it is no longer held."""
        if not isinstance(seq, int) or seq < 0 or seq not in self.seqs:
            return None
        a = self.ages[self.seqs.index(seq)]
        h = len(self.hist)
        if a > h:
            return None
        n = len(self.win)
        t = min(a, n)             # bytes from the ring, oldest first, from where they start in it
        at = (self.w - a) % h if h else 0
        first = min(t, h - at)
        ring = memoryview(self.hist)
        return [ring[at:at + first], ring[0:t - first], memoryview(self.win)[0:n - t]]

    def get(self, seq):
        """The input of inference ``seq`` (bytes), or None when it is no longer held."""
        views = self.parts(seq)
        if views is None:
            return None
        out = bytearray()
        for v in views:
            out.extend(v)
        return bytes(out)
