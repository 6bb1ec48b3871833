"""Zero-copy, bounds-checked FlatBuffers table reader (MicroPython-safe).

Reads tables, scalars, vectors and strings straight out of a buffer (bytes, bytearray, array or
memoryview) with ``struct.unpack_from``; nothing is copied. Every offset is checked against the buffer
length before it is followed, so a truncated or corrupted file raises ``ModelError`` -- never
IndexError, struct.error or a hang (there are no unbounded loops: vector lengths are checked against
the bytes that remain).

Usage::

    fb = FlatBuf(data)                 # data: the whole .tflite file
    root = fb.root()                   # Table of the root object
    version = root.scalar(0, "<I", 0)  # field 0, uint32, default 0
    start, n = root.vector(2, 4)       # vector of 4-byte items
"""
import struct

from edgepoi.infer import ModelError  # noqa: F401 (one class for every copy of this module)


_SIZES = {"<b": 1, "<B": 1, "<h": 2, "<H": 2, "<i": 4, "<I": 4, "<f": 4, "<q": 8, "<Q": 8, "<d": 8}


class FlatBuf:
    """A flatbuffer over ``data``; ``what`` names the file in error messages."""

    def __init__(self, data, what="model"):
        self.data = data
        self.n = len(data) if data is not None else 0
        self.what = what

    def fail(self, msg):
        raise ModelError("%s: %s" % (self.what, msg))

    def check(self, pos, size):
        if pos < 0 or size < 0 or pos + size > self.n:
            self.fail("offset %d (+%d bytes) outside the %d-byte buffer" % (pos, size, self.n))

    def read(self, fmt, pos):
        self.check(pos, _SIZES[fmt])
        return self.unpack(fmt, pos)

    def unpack(self, fmt, pos):
        """One scalar at pos, unchecked (callers checked the range)."""
        return struct.unpack_from(fmt, self.data, pos)[0]

    def bytes(self, pos, n):
        """A copy of n bytes at pos, unchecked."""
        return bytes(self.data[pos:pos + n])

    def deref(self, pos):
        """Follow the uoffset stored at ``pos``; returns the absolute target position."""
        off = self.read("<I", pos)
        target = pos + off
        self.check(target, 4)
        return target

    def root(self):
        if self.n < 8:
            self.fail("file too short (%d bytes)" % self.n)
        return Table(self, self.deref(0))

    def identifier(self):
        self.check(4, 4)
        return self.bytes(4, 4)


class FileBuf(FlatBuf):
    """A flatbuffer read from an open binary file through a small window (the file never in RAM).

    Scalars come from a ``window``-byte cache refilled with seek/readinto; ``bytes`` of a range
    outside it reads the file directly. ``data`` is None: code reads through unpack/bytes.
    """

    def __init__(self, f, n, what="model", window=256):
        FlatBuf.__init__(self, None, what)
        self.f = f
        self.n = n
        self._win = bytearray(window)
        self._mv = memoryview(self._win)
        self._ws = 0
        self._wl = 0

    def _fill(self, pos):
        start = pos - (pos & 63)
        k = min(len(self._win), self.n - start)
        self.f.seek(start)
        got = self.f.readinto(self._mv[:k]) if k > 0 else 0
        self._ws, self._wl = start, got or 0

    def unpack(self, fmt, pos):
        off = pos - self._ws
        if off < 0 or off + _SIZES[fmt] > self._wl:
            self._fill(pos)
            off = pos - self._ws
            if off + _SIZES[fmt] > self._wl:
                self.fail("short read at offset %d" % pos)
        return struct.unpack_from(fmt, self._win, off)[0]

    def bytes(self, pos, n):
        off = pos - self._ws
        if 0 <= off and off + n <= self._wl:
            return bytes(self._mv[off:off + n])
        self.f.seek(pos)
        b = self.f.read(n)
        if len(b) != n:
            self.fail("short read of %d bytes at offset %d" % (n, pos))
        return b

    def readinto(self, pos, buf):
        """Fill buf (any writable buffer) from the file at pos."""
        self.f.seek(pos)
        if self.f.readinto(buf) != len(buf):
            self.fail("short read of %d bytes at offset %d" % (len(buf), pos))


class Table:
    """One flatbuffer table: field access by field index (schema order, 0-based)."""

    def __init__(self, fb, pos):
        self.fb = fb
        self.pos = pos
        fb.check(pos, 4)
        vt = pos - fb.read("<i", pos)
        fb.check(vt, 4)
        self.vt = vt
        self.vtsize = fb.read("<H", vt)
        self.tsize = fb.read("<H", vt + 2)
        if self.vtsize < 4 or self.vtsize & 1:
            fb.fail("bad vtable size %d at %d" % (self.vtsize, vt))
        fb.check(vt, self.vtsize)
        fb.check(pos, self.tsize)

    def field(self, i, size):
        """Absolute position of field ``i`` (``size`` bytes), or 0 when absent."""
        o = 4 + 2 * i
        if o + 2 > self.vtsize:
            return 0
        off = self.fb.read("<H", self.vt + o)
        if off == 0:
            return 0
        if off + size > self.tsize:
            self.fb.fail("field %d of table at %d overruns the table" % (i, self.pos))
        return self.pos + off

    def has(self, i):
        return self.field(i, 1) != 0

    def scalar(self, i, fmt, default):
        p = self.field(i, _SIZES[fmt])
        if not p:
            return default
        return self.fb.read(fmt, p)

    def table(self, i):
        p = self.field(i, 4)
        if not p:
            return None
        return Table(self.fb, self.fb.deref(p))

    def vector(self, i, itemsize):
        """(start, length) of a vector field; (0, 0) when absent."""
        p = self.field(i, 4)
        if not p:
            return 0, 0
        v = self.fb.deref(p)
        n = self.fb.read("<I", v)
        self.fb.check(v + 4, n * itemsize)
        return v + 4, n

    def scalars(self, i, fmt):
        """A vector of scalars as a list (empty when absent)."""
        size = _SIZES[fmt]
        start, n = self.vector(i, size)
        fb = self.fb
        return [fb.unpack(fmt, start + k * size) for k in range(n)]

    def tables(self, i):
        start, n = self.vector(i, 4)
        return [Table(self.fb, self.fb.deref(start + 4 * k)) for k in range(n)]

    def bytes_range(self, i):
        """(start, length) of a [ubyte] vector, for zero-copy slicing."""
        return self.vector(i, 1)

    def string(self, i, default=""):
        start, n = self.vector(i, 1)
        if not start:
            return default
        try:
            return str(self.fb.bytes(start, n), "utf-8")
        except (UnicodeError, ValueError):  # a decoding problem (not MemoryError) is a model error
            self.fb.fail("string field %d is not UTF-8" % i)
