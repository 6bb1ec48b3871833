"""A store-and-forward queue on flash: append-only records with a CRC, crash-safe, bounded.

Usage::

    q = FlashQueue("/q", max_bytes=64 * 1024)
    q.append(7, b"record bytes")          # ids strictly increase; the append is the durable act
    rec = q.read_after(q.acked)            # oldest unacknowledged (id, payload), read from flash
    q.ack(7)                               # everything up to id 7 is delivered
    q.last()                               # (id, payload) of the newest record, even once acknowledged

File format (``queue.dat``), one record after another::

    0xEB | id: u32 BE | length: u32 BE | crc32(id ‖ length ‖ payload): u32 BE | payload

``queue.ack`` holds the highest acknowledged id (written to a temp file, then renamed). A power cut can
tear only the record being appended: at open, the file is scanned and everything from the first invalid
record on is cut away. Acknowledgements are persisted lazily (every ``ack_every`` acks and at ``flush()``),
so after a power cut a few delivered records may be sent again: they are QoS 1 duplicates that their ids
identify. Compaction rewrites the unacknowledged records (and the newest record, which callers use to
recover their state) into a new file and renames it over the old one.

Full-queue policy: ``append`` raises ``QueueFull`` and stores nothing. The caller (the agent) then pauses
producing work until the link drains the queue, so sequence numbers never have gaps and the attestation
hash chain is never cut.
"""
import os

try:
    from binascii import crc32 as _crc  # _crc(data, value=0): CRC-32, unsigned
except ImportError:  # pragma: no cover - a port without binascii.crc32
    def _crc(data, value=0):
        value = ~value & 0xFFFFFFFF
        for b in data:
            value ^= b
            for _ in range(8):
                value = (value >> 1) ^ (0xEDB88320 if value & 1 else 0)
        return ~value & 0xFFFFFFFF

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_MAGIC = const(0xEB)
_HDR = const(13)
_SCRATCH = const(128)  # bytes read at a time when checking or copying records


class QueueError(Exception):
    """The queue was used wrongly (e.g. an id that does not increase)."""


class QueueFull(QueueError):
    """No room for the record, even after compaction; nothing was stored."""


def _u32(b, at):
    return (b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]


def _put32(buf, at, v):
    buf[at] = (v >> 24) & 0xFF
    buf[at + 1] = (v >> 16) & 0xFF
    buf[at + 2] = (v >> 8) & 0xFF
    buf[at + 3] = v & 0xFF


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _sync(f):
    f.flush()
    if hasattr(os, "fsync"):
        os.fsync(f.fileno())


class FlashQueue:
    Full = QueueFull  # what append raises when there is no room (so callers need not import this module)

    def __init__(self, directory, max_bytes=64 * 1024, ack_every=16, max_record=16384):
        self.dir = directory
        self.data_path = directory + "/queue.dat"
        self.ack_path = directory + "/queue.ack"
        self.max_bytes = max_bytes
        self.max_record = max_record
        self.ack_every = ack_every
        self.torn_bytes = 0       # bytes cut away at open (a torn record after a power cut)
        self.compactions = 0
        self._hdr = bytearray(_HDR)
        # for checking and copying records: allocated once, so a scan or a compaction in the middle of a
        # long run never needs a contiguous block from a fragmented heap
        self._scratch = memoryview(bytearray(_SCRATCH))
        self._cur_gen = -1       # read_after's cached position: compaction count, record id, offset after
        self._cur_id = self._cur_off = 0
        self._fa = None            # the data file, open for reading and writing (one handle: no cache
                                   # of another handle to go stale on a FAT or littlefs volume)
        if not _exists(directory):
            os.mkdir(directory)
        self.acked = self._read_ack()
        self._acked_saved = self.acked
        self._open()

    # -- recovery ------------------------------------------------------------------------------
    def _read_ack(self):
        for path in (self.ack_path, self.ack_path + ".tmp"):
            try:
                with open(path, "rb") as f:
                    b = f.read(8)
            except OSError:
                continue
            if len(b) == 8 and _crc(b[:4]) & 0xFFFFFFFF == _u32(b, 4):
                return _u32(b, 0)
        return 0

    def _open(self):
        """Scan the data file: find the head, the tail and the newest record; cut a torn tail."""
        self.size = 0
        self.last_id = self.acked
        self.last_off = -1
        self.head_off = -1         # offset of the first unacknowledged record, -1 if none
        self.pending_count = 0
        end = 0
        if _exists(self.data_path):
            with open(self.data_path, "rb") as f:
                while True:
                    got = self._read_record_header(f)
                    if got is None:
                        break
                    rec_id, length, ok = got
                    if not ok or (self.last_off >= 0 and rec_id <= self.last_id):
                        break
                    if rec_id > self.acked:
                        if self.head_off < 0:
                            self.head_off = end
                        self.pending_count += 1
                    self.last_id = rec_id
                    self.last_off = end
                    end += _HDR + length
                f.seek(0, 2)
                total = f.tell()
            if total != end:
                self.torn_bytes = total - end
                self._compact(keep_from=end)  # rewrite without the torn tail
                return
        self.size = end
        if not _exists(self.data_path):
            open(self.data_path, "wb").close()
        self._fa = open(self.data_path, "r+b")

    def _read_record_header(self, f):
        """Return (id, length, crc_ok) for the record at the file position, or None at a clean end."""
        hdr = f.read(_HDR)
        if not hdr:
            return None
        if len(hdr) < _HDR or hdr[0] != _MAGIC:
            return (0, 0, False)
        rec_id = _u32(hdr, 1)
        length = _u32(hdr, 5)
        if length > self.max_record:
            return (rec_id, length, False)
        crc = _crc(hdr[1:9])
        left = length
        mv = self._scratch
        while left:
            n = f.readinto(mv[:min(left, _SCRATCH)])
            if not n:
                return (rec_id, length, False)
            crc = _crc(mv[:n], crc)
            left -= n
        return (rec_id, length, crc == _u32(hdr, 9))

    # -- writing -------------------------------------------------------------------------------
    def append(self, rec_id, payload):
        """Durably append one record: bytes, or a list of byte strings that make it up when joined (written
        one after another: the record never needs one contiguous buffer). Ids must strictly increase.
        Raises QueueFull when there is no room."""
        if rec_id <= self.last_id or rec_id > 0xFFFFFFFF:
            raise QueueError("record id %d must be greater than %d" % (rec_id, self.last_id))
        parts = payload if isinstance(payload, list) else (payload,)
        n = 0
        for p in parts:
            n += len(p)
        if n > self.max_record:
            raise QueueError("record of %d bytes exceeds %d" % (n, self.max_record))
        need = _HDR + n
        if self.size + need > self.max_bytes:
            self._compact()
            if self.size + need > self.max_bytes:
                raise QueueFull("queue full: %d of %d bytes pending" % (self.size, self.max_bytes))
        h = self._hdr
        h[0] = _MAGIC
        _put32(h, 1, rec_id)
        _put32(h, 5, n)
        crc = _crc(memoryview(h)[1:9])
        for p in parts:
            crc = _crc(p, crc)
        _put32(h, 9, crc)
        self._fa.seek(self.size)
        self._fa.write(h)
        for p in parts:
            self._fa.write(p)
        _sync(self._fa)
        if self.head_off < 0:
            self.head_off = self.size
        self.last_off = self.size
        self.last_id = rec_id
        self.size += need
        self.pending_count += 1

    def ack(self, rec_id):
        """Mark every record with id <= rec_id delivered (persisted every ``ack_every`` acks)."""
        if rec_id <= self.acked:
            return
        if rec_id > self.last_id:
            raise QueueError("ack of id %d beyond the newest record %d" % (rec_id, self.last_id))
        self.acked = rec_id
        off = self.head_off
        f = self._fa
        hdr = self._scratch[:_HDR]
        while 0 <= off < self.size:
            f.seek(off)
            f.readinto(hdr)
            if _u32(hdr, 1) > rec_id:
                break
            self.pending_count -= 1
            off += _HDR + _u32(hdr, 5)
        self.head_off = off if off < self.size else -1
        if self.acked - self._acked_saved >= self.ack_every or self.head_off < 0:
            self.flush()

    def flush(self):
        """Persist the acknowledgement position (temp file + rename)."""
        if self.acked == self._acked_saved:
            return
        b = bytearray(8)
        _put32(b, 0, self.acked)
        _put32(b, 4, _crc(b[:4]))
        tmp = self.ack_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b)
            _sync(f)
        os.rename(tmp, self.ack_path)
        self._acked_saved = self.acked

    def _compact(self, keep_from=None):
        """Rewrite the file with the unacknowledged records and the newest one; drop a torn tail."""
        self.flush()
        if getattr(self, "_fa", None) is not None:
            self._fa.close()
            self._fa = None
        valid_end = keep_from if keep_from is not None else self.size
        start = self.head_off if self.head_off >= 0 else self.last_off
        tmp = self.data_path + ".tmp"
        if start >= 0:
            with open(self.data_path, "rb") as src, open(tmp, "wb") as dst:
                src.seek(start)
                left = valid_end - start
                mv = self._scratch
                while left:
                    n = src.readinto(mv[:min(left, _SCRATCH)])
                    if not n:
                        break
                    dst.write(mv[:n])
                    left -= n
                _sync(dst)
            os.rename(tmp, self.data_path)
        elif _exists(self.data_path):
            os.remove(self.data_path)
        self.compactions += 1
        self._open()

    # -- reading -------------------------------------------------------------------------------
    def read_after(self, after):
        """(id, payload) of the oldest unacknowledged record with id > ``after``, or None.

        Sequential calls (after = the id just returned) continue from a cached file position.
        """
        if self.head_off < 0:
            return None
        off = self.head_off
        if self._cur_gen == self.compactions and self._cur_id == after and self._cur_off >= off:
            off = self._cur_off
        f = self._fa
        hdr = self._scratch[:_HDR]
        while off < self.size:
            f.seek(off)
            f.readinto(hdr)
            rec_id, length = _u32(hdr, 1), _u32(hdr, 5)
            off += _HDR + length
            if rec_id > after:
                payload = f.read(length)
                # (ints, not a tuple: nothing long-lived is allocated while the loop runs)
                self._cur_gen, self._cur_id, self._cur_off = self.compactions, rec_id, off
                return rec_id, payload
        return None

    def pending(self):
        """List the unacknowledged records as (id, payload), oldest first (tests and tools)."""
        out = []
        rec = self.read_after(self.acked)
        while rec is not None:
            out.append(rec)
            rec = self.read_after(rec[0])
        return out

    def last(self):
        """(id, payload) of the newest record (kept through compaction), or None for a new queue."""
        if self.last_off < 0:
            return None
        f = self._fa
        f.seek(self.last_off)
        hdr = f.read(_HDR)
        return _u32(hdr, 1), f.read(_u32(hdr, 5))

    def close(self):
        self.flush()
        if getattr(self, "_fa", None) is not None:
            self._fa.close()
            self._fa = None
