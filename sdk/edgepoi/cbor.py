"""Deterministic CBOR (RFC 8949) for MicroPython and CPython, with a bounded, strict decoder.

Usage::

    from edgepoi import cbor
    b = cbor.dumps({"t": 21.5, "seq": 7, "id": b"\x01\x02"})   # deterministic bytes
    cbor.loads(b)                                   # -> {'t': 21.5, 'seq': 7, 'id': b'\x01\x02'}
    cbor.loads(b, canonical=True)                   # also rejects non-deterministic input
    cbor.dumps(cbor.CBORTag(18, [b"", {}, b"", b""]))   # tagged item (e.g. COSE_Sign1)

dumps (RFC 8949 section 4.2.1): shortest heads, definite lengths, map keys sorted by their encoded bytes,
the shortest float that keeps the value (NaN as f97e00, +-inf as halves), bignums (tags 2/3) beyond 64
bits. Types: int, bool, None, float, str, bytes/bytearray/memoryview, list/tuple, dict, CBORTag.
loads: all major types, indefinite lengths, tags 2/3 -> int, other tags -> CBORTag. CBORError (never
another exception) for malformed, truncated or trailing input; duplicate map keys (also keys Python
cannot tell apart: 1, 1.0, true); array or map keys (unhashable; so tuple keys do not round-trip);
``undefined`` and unassigned simple values (no faithful Python value: rejected, not guessed); and
input beyond the limits: max_depth nested arrays/maps/tags, max_items data items (each element, key
and value, plus the top item), max_length bytes. Declared lengths are checked against the remaining
input before anything is allocated. ``CBORError.offset`` is the offset of the offending item's first
byte (or where an item was expected), and the message names it.
"""
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_MAX64 = const(0xFFFFFFFFFFFFFFFF)
_MIN_ARG = (24, 0x100, 0x10000, 0x100000000)  # smallest value that needs ai 24, 25, 26, 27
MAX_DEPTH = const(64)  # dumps: nested arrays, maps and tags (a cyclic structure stops here, on any heap)
_DEEP = "structure nested more than 64 deep (or cyclic): not encoded"


class CBORError(ValueError):
    """Invalid CBOR, a limit exceeded, or a value that cannot be encoded.

    ``offset``: the byte offset in the input where decoding failed (None for encoding errors).
    """

    def __init__(self, msg, offset=None):
        if offset is not None:
            msg = "%s at byte offset %d" % (msg, offset)
        super().__init__(msg)
        self.offset = offset


class CBORTag:
    """A tagged data item: ``CBORTag(18, [...])``. Equal when tag and value are equal."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, CBORTag) and self.tag == other.tag and self.value == other.value

    def __hash__(self):
        return hash((self.tag, self.value))

    def __repr__(self):
        return "CBORTag(%r, %r)" % (self.tag, self.value)


def _head(buf, mt, n):
    if n < 24:
        buf.append(mt | n)
    elif n < 0x100:
        buf.append(mt | 24)
        buf.append(n)
    elif n < 0x10000:
        buf.extend(struct.pack(">BH", mt | 25, n))
    elif n < 0x100000000:
        buf.extend(struct.pack(">BI", mt | 26, n))
    else:
        buf.extend(struct.pack(">BQ", mt | 27, n))


def _half(h):
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    if e == 0:
        v = m / 16777216.0
    elif e == 31:
        v = float("nan") if m else float("inf")
    else:
        v = (m | 0x400) * 2.0 ** (e - 25)
    return -v if h & 0x8000 else v


def _float(buf, x):
    if x != x:
        buf.extend(b"\xf9\x7e\x00")
        return
    try:
        fb = struct.pack(">f", x)
        ok = struct.unpack(">f", fb)[0] == x
    except OverflowError:
        ok = False
    if not ok:
        buf.append(0xFB)
        buf.extend(struct.pack(">d", x))
        return
    bits = struct.unpack(">I", fb)[0]
    sign = (bits >> 16) & 0x8000
    e = ((bits >> 23) & 0xFF) - 112  # the half-precision biased exponent
    if e >= 31:
        h = sign | 0x7C00
    elif e > 0:
        h = sign | (e << 10) | ((bits >> 13) & 0x3FF)
    elif e > -10:  # a half subnormal
        h = sign | (((bits & 0x7FFFFF) | 0x800000) >> (14 - e))
    else:
        h = sign
    if _half(h) == x:  # the candidate (truncated) half keeps the value
        buf.append(0xF9)
        buf.append(h >> 8)
        buf.append(h & 0xFF)
    else:
        buf.append(0xFA)
        buf.extend(fb)


def _enc(buf, obj, depth=0):
    if depth > MAX_DEPTH:  # (items inside MAX_DEPTH nested arrays, maps and tags are still written)
        raise CBORError(_DEEP)
    t = type(obj)
    if t is int:
        if obj >= 0:
            mt, n = 0x00, obj
        else:
            mt, n = 0x20, -1 - obj
        if n < 24:
            buf.append(mt | n)
        elif n <= _MAX64:
            _head(buf, mt, n)
        else:  # bignum, tag 2 or 3, no leading zero bytes
            b = n.to_bytes((len("%x" % n) + 1) // 2, "big")
            buf.append(0xC3 if mt else 0xC2)
            _head(buf, 0x40, len(b))
            buf.extend(b)
    elif t is str:
        try:
            b = obj.encode("utf-8")
        except UnicodeError:
            raise CBORError("text is not encodable as UTF-8")
        if len(b) < 24:
            buf.append(0x60 | len(b))
        else:
            _head(buf, 0x60, len(b))
        buf.extend(b)
    elif t is float:
        _float(buf, obj)
    elif t is bool:
        buf.append(0xF5 if obj else 0xF4)
    elif obj is None:
        buf.append(0xF6)
    elif t is bytes or t is bytearray or t is memoryview:
        _head(buf, 0x40, len(obj))
        buf.extend(obj)
    elif t is list or t is tuple:
        _head(buf, 0x80, len(obj))
        for v in obj:
            _enc(buf, v, depth + 1)
    elif t is dict:
        _map(buf, obj, depth + 1)
    elif t is CBORTag:
        tag = obj.tag
        if type(tag) is not int or tag < 0 or tag > _MAX64:
            raise CBORError("tag number must be an int in 0..2**64-1, not %r" % (tag,))
        _head(buf, 0xC0, tag)
        _enc(buf, obj.value, depth + 1)
    else:
        # subclasses (IntEnum, OrderedDict, namedtuple...); the table is built here, not kept: rare path
        for base, conv in ((int, int), (float, float), (str, str), (bytes, bytes), (bytearray, bytes),
                           (tuple, list), (list, list), (dict, dict)):
            if isinstance(obj, base):
                return _enc(buf, conv(obj), depth)
        raise CBORError("cannot encode type %s" % t.__name__)


def _map(buf, obj, depth):
    n = len(obj)
    _head(buf, 0xA0, n)
    pairs = []
    for k, v in obj.items():
        kb = bytearray()
        _enc(kb, k, depth)
        pairs.append((bytes(kb), v))
    pairs.sort(key=lambda p: p[0])
    prev = None
    for kb, v in pairs:
        if kb == prev:
            raise CBORError("two map keys have the same encoding")
        prev = kb
        buf.extend(kb)
        _enc(buf, v, depth)


def dumps(obj):
    """Encode obj as deterministic CBOR. Returns bytes.

    Raises:
        CBORError: unsupported type, tag number out of range, unencodable text, nested more than
            MAX_DEPTH (64) deep.
    """
    buf = bytearray()
    try:
        _enc(buf, obj)
    except RuntimeError:  # RecursionError: a deep structure inside map keys
        raise CBORError(_DEEP)
    return bytes(buf)


class _Decoder:
    def __init__(self, data, max_depth, max_items, canonical):
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.max_depth = max_depth
        self.max_items = max_items
        self.items = 1
        self.canonical = canonical

    def count(self, n, start):
        self.items += n
        if self.items > self.max_items:
            raise CBORError("more than max_items=%d data items" % self.max_items, start)

    def item(self, depth, brk=False):
        """Decode one item at self.pos; where brk is set, a break returns _BREAK.

        Arrays and maps are decoded here, not in helpers: one frame per nesting level keeps the
        recursion cheap in time and in MicroPython heap."""
        data = self.data
        start = pos = self.pos
        if pos >= self.end:
            raise CBORError("unexpected end of input", pos)
        ib = data[pos]
        mt = ib >> 5
        ai = ib & 31
        pos += 1
        if ai < 24:
            val = ai
        elif ai < 28:
            k = 1 << (ai - 24)
            if pos + k > self.end:
                raise CBORError("truncated %d-byte argument" % k, start)
            val = data[pos] if k == 1 else int.from_bytes(data[pos:pos + k], "big")
            pos += k
            if self.canonical and mt != 7 and val < _MIN_ARG[ai - 24]:
                raise CBORError("non-shortest argument (not deterministic)", start)
        elif ai == 31 and mt > 1 and mt != 6:
            val = -1
            if self.canonical and mt != 7:
                raise CBORError("indefinite length (not deterministic)", start)
        else:
            raise CBORError("invalid additional information %d for major type %d" % (ai, mt), start)
        self.pos = pos
        if mt == 0:
            return val
        if mt == 1:
            return -1 - val
        if mt < 4:
            if val < 0 or val > self.end - pos:
                return self.string(mt, val, start, depth)
            self.pos = pos + val
            if mt == 2:
                return data[pos:pos + val]
            try:
                return data[pos:pos + val].decode("utf-8")
            except UnicodeError:
                raise CBORError("invalid UTF-8 in text string", start)
        if mt == 7:
            return self.simple(ai, val, start, brk)
        if depth >= self.max_depth:
            raise CBORError("nested deeper than max_depth=%d" % self.max_depth, start)
        depth += 1
        if mt == 6:
            return self.tag(val, self.item(depth), start)
        if val > (self.end - pos) >> (mt - 4):  # each element takes at least a byte
            raise CBORError("truncated: %d elements declared" % val, start)
        if mt == 4:
            if val >= 0:
                self.count(val, start)
                out = [None] * val
                for i in range(val):
                    out[i] = self.item(depth)
                return out
            out = []
            while True:
                v = self.item(depth, True)
                if v is _BREAK:
                    return out
                self.count(1, start)
                out.append(v)
        self.count(2 * val if val > 0 else 0, start)
        out = {}
        prev = None
        while val != 0:
            ks = self.pos
            k = self.item(depth, val < 0)
            if k is _BREAK:
                break
            if self.canonical:
                kb = data[ks:self.pos]
                if prev is not None and kb <= prev:
                    raise CBORError("map keys not in deterministic order", ks)
                prev = kb
            try:
                dup = k in out
                if not out:  # an empty dict does not hash what it is asked about
                    hash(k)
            except TypeError:
                raise CBORError("unhashable map key (array or map)", ks)
            if dup:
                raise CBORError("duplicate map key (or keys Python treats as equal)", ks)
            if val < 0:
                self.count(2, start)
            out[k] = self.item(depth)
            val -= 1
        return out

    def string(self, mt, n, start, depth):
        """An indefinite-length string (n < 0: definite chunks of its own type, then a break)."""
        if n >= 0:
            raise CBORError("truncated string of %d bytes" % n, start)
        chunks = []
        data = self.data
        while True:
            c = self.pos
            if c < self.end and data[c] == 0xFF:
                self.pos = c + 1
                return (b"" if mt == 2 else "").join(chunks)
            if c < self.end and (data[c] >> 5 != mt or data[c] & 31 == 31):
                raise CBORError("bad chunk in an indefinite-length string", c)
            chunks.append(self.item(depth))

    def tag(self, tag, v, start):
        if tag != 2 and tag != 3:
            return CBORTag(tag, v)
        if type(v) is not bytes:
            raise CBORError("bignum tag on a non-byte-string", start)
        if self.canonical and (len(v) < 9 or v[0] == 0):
            raise CBORError("bignum not in preferred form (not deterministic)", start)
        n = int.from_bytes(v, "big") if v else 0
        return n if tag == 2 else -1 - n

    def simple(self, ai, val, start, brk):
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        if ai == 31:
            if brk:
                return _BREAK
            raise CBORError("break outside an indefinite-length item", start)
        if ai > 24:
            if ai == 25:
                f = _half(val)
            else:
                f = struct.unpack(">f" if ai == 26 else ">d", self.data[start + 1:self.pos])[0]
            if self.canonical and dumps(f) != self.data[start:self.pos]:
                raise CBORError("float not in shortest form (not deterministic)", start)
            return f
        if ai == 24 and val < 32:
            raise CBORError("invalid two-byte simple value %d" % val, start)
        raise CBORError("unsupported simple value %d" % val, start)


_BREAK = CBORTag(-1, None)  # sentinel; never returned to callers


def loads(data, max_depth=32, max_items=100000, max_length=1 << 20, canonical=False):
    """Decode exactly one CBOR item from data (bytes, bytearray or memoryview).

    Args:
        max_depth: nesting limit for arrays, maps and tags. max_items: data items in all.
        max_length: input size limit in bytes. canonical: also reject input that is not in
            deterministic encoding (RFC 8949 section 4.2.1) - use it before checking signatures.
    Returns:
        the decoded value.
    Raises:
        CBORError: malformed, truncated, trailing bytes, unsupported, or over a limit (with .offset).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CBORError("expected bytes, bytearray or memoryview, not %s" % type(data).__name__, 0)
    if len(data) > max_length:  # checked before the copy below
        raise CBORError("input of %d bytes exceeds max_length=%d" % (len(data), max_length), 0)
    if type(data) is not bytes:
        data = bytes(data)
    d = _Decoder(data, max_depth, max_items, canonical)
    try:
        v = d.item(0)
    except RuntimeError:  # RecursionError (only when max_depth exceeds the interpreter's stack)
        raise CBORError("nested too deeply for this interpreter", d.pos)
    except MemoryError:
        raise CBORError("out of memory while decoding", d.pos)
    if d.pos != len(data):
        raise CBORError("%d trailing bytes after the item" % (len(data) - d.pos), d.pos)
    return v
