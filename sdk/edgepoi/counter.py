"""Crash-safe persisted monotonic counter: numbers may skip after a crash, never repeat.

    from edgepoi.counter import FileCounter
    c = FileCounter("/flash/seq")        # created at `start` (default 1) when no file exists yet
    n = c.next()                          # 1, 2, 3, ... ; after a crash: a jump, never a repeat
    c.peek()                              # the number next() will return

How: the file holds a reservation R ("all numbers below R may have been handed out"). Before handing
out a number >= R the counter persists R' = number + block: it writes R' with a checksum to PATH.tmp,
flushes (and fsyncs on CPython), closes, renames it over PATH (fsyncing the directory on CPython), and
only then returns numbers below R'. A process killed at any moment leaves PATH either old or new,
both complete; a torn PATH.tmp is ignored and removed on the next open. If the rename replaced PATH
non-atomically (FAT removes the target first) and PATH is missing, a complete PATH.tmp is used.
A corrupt PATH is an error (CounterError), never a silent restart: that could repeat numbers.

Any object with next() and peek() serves the Attester, e.g. a secure element's hardware counter.
"""
import os
import sys

import hashlib

_CPYTHON = sys.implementation.name == "cpython"
_MAGIC = "edgepoi-counter-v1"


class CounterError(Exception):
    """The counter file is corrupt or cannot be written."""


def _encode(value):
    body = "%s %d" % (_MAGIC, value)
    return (body + " " + hashlib.sha256(body.encode()).digest()[:8].hex() + "\n").encode()


def _decode(data):
    """Reservation stored in data, or None when data is not one complete, checksummed record."""
    try:
        text = data.decode()
    except UnicodeError:
        return None
    parts = text.split(" ")
    if len(parts) != 3 or parts[0] != _MAGIC or not text.endswith("\n"):
        return None
    body = parts[0] + " " + parts[1]
    if hashlib.sha256(body.encode()).digest()[:8].hex() != parts[2].strip():
        return None
    try:
        value = int(parts[1])
    except ValueError:
        return None
    return value if value >= 0 else None


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read(256)
    except OSError:
        return None


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class FileCounter:
    """A monotonic counter persisted in a file.

    Args:
        path: the counter file.
        block: how many numbers one write reserves (more = fewer writes, bigger jumps after a crash).
        start: the first number of a new counter (used only when neither PATH nor PATH.tmp exists).
    Raises:
        CounterError: PATH exists but is corrupt (never silently reset).
    """

    def __init__(self, path, block=16, start=1):
        if block < 1:
            raise CounterError("block must be at least 1")
        self.path = path
        self.tmp = path + ".tmp"
        self.block = block
        data = _read(path)
        if data is not None:
            value = _decode(data)
            if value is None:
                raise CounterError("counter file %s is corrupt; refusing to reuse numbers" % path)
        else:
            data = _read(self.tmp)          # PATH missing: a rename interrupted after unlinking it
            value = _decode(data) if data is not None else None
            if value is not None:
                os.rename(self.tmp, path)   # recover it before anything else
            else:
                value = start
        if _exists(self.tmp):
            os.remove(self.tmp)
        self._next = value
        self._limit = value           # nothing reserved in this process yet

    def peek(self):
        """The number the next call to next() returns."""
        return self._next

    def next(self):
        """A number never returned before by this counter file (strictly increasing)."""
        n = self._next
        if n >= self._limit:
            self._persist(n + self.block)
        self._next = n + 1
        return n

    __next__ = next

    def _persist(self, limit):
        data = _encode(limit)
        try:
            with open(self.tmp, "wb") as f:
                f.write(data)
                if _CPYTHON:
                    f.flush()
                    os.fsync(f.fileno())
            try:
                os.rename(self.tmp, self.path)
            except OSError:
                if not _exists(self.path):
                    raise
                os.remove(self.path)          # VFS without replacing rename (FAT)
                os.rename(self.tmp, self.path)
            if _CPYTHON:
                d = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
                try:
                    os.fsync(d)
                finally:
                    os.close(d)
        except OSError as e:
            raise CounterError("cannot persist counter %s: %s" % (self.path, e))
        self._limit = limit


class MemoryCounter:
    """A volatile counter (tests, simulators): next() and peek() like FileCounter."""

    def __init__(self, start=1):
        self._next = start

    def peek(self):
        return self._next

    def next(self):
        n = self._next
        self._next = n + 1
        return n
