"""Replay recorded readings from a CSV or JSON-lines file on flash, one line per read(), streaming.

    from edgepoi.sensors.replay import ReplaySensor
    s = ReplaySensor("walk.csv")          # header "ts,temp_c,humidity", then one reading per line
    s.read()                               # {'temp_c': 21.5, 'humidity': 44.0}
    s.skipped, s.last_error                # malformed lines skipped so far, and why the last one was

Formats (by extension, or ``fmt="csv"`` / ``"jsonl"``): CSV with a header row of field names and
numeric values; JSON lines, one object of name -> number per line (the first valid line fixes the
fields; later lines must have them all, extra keys are ignored). Columns named ts/time/timestamp
are not readings. Blank lines and lines starting with ``#`` are ignored. A malformed line (wrong
column count, a value that is not a finite number, bad JSON, longer than ``max_line``) is skipped
and counted, never fatal. At the end of the file the replay starts over (``loop=True``, default) or
read() raises SensorError; a file with no valid line at all raises SensorError. Only one line is
ever held in memory.
"""
import json

from edgepoi.sensors.i2c import SensorError

SKIP_COLUMNS = ("ts", "time", "timestamp")


def _num(text):
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError("not a finite number: %r" % text)
    return v


class ReplaySensor:
    name = "replay"

    def __init__(self, path, loop=True, fmt=None, units=None, max_line=512, name=None):
        if name:
            self.name = name
        self.path = path
        self.loop = loop
        self.max_line = int(max_line)
        if fmt is None:
            fmt = "csv" if path.lower().endswith(".csv") else "jsonl"
        if fmt not in ("csv", "jsonl"):
            raise SensorError("replay %s: format must be 'csv' or 'jsonl', not %r" % (path, fmt))
        self.fmt = fmt
        self.skipped = 0
        self.last_error = None
        self.line_no = 0
        self.passes = 0
        self._good_this_pass = 0
        self._cols = None          # csv: [(column index, name)]
        self._ncols = 0
        self._pending = None
        try:
            self._f = open(path, "r")
        except OSError as e:
            raise SensorError("replay %s: cannot open: %s" % (path, e))
        if fmt == "csv":
            header = self._next_line()
            if header is None:
                raise SensorError("replay %s: no header line" % path)
            names = [c.strip() for c in header.split(",")]
            self._ncols = len(names)
            self._cols = [(i, n) for i, n in enumerate(names) if n and n not in SKIP_COLUMNS]
            if not self._cols:
                raise SensorError("replay %s: the header names no reading column" % path)
            keys = [n for _, n in self._cols]
        self._data_line = self.line_no
        self._data_pos = self._f.tell()
        if fmt == "jsonl":
            self._pending = self._next_reading()
            keys = sorted(self._pending)
            self._keys = keys
        units = units or {}
        self.fields = tuple((k, units.get(k, "")) for k in keys)

    def _next_line(self):
        """The next non-blank, non-comment line (stripped), or None at the end of the file."""
        f = self._f
        while True:
            line = f.readline(self.max_line + 1)
            if not line:
                return None
            self.line_no += 1
            if len(line) > self.max_line and not line.endswith("\n"):
                while True:                            # drop the rest of the over-long line
                    more = f.readline(self.max_line + 1)
                    if not more or more.endswith("\n"):
                        break
                self._bad("longer than %d characters" % self.max_line)
                continue
            line = line.strip()
            if line and not line.startswith("#"):
                return line

    def _bad(self, why):
        self.skipped += 1
        self.last_error = "%s line %d: %s" % (self.path, self.line_no, why)

    def _parse(self, line):
        if self.fmt == "csv":
            parts = line.split(",")
            if len(parts) != self._ncols:
                raise ValueError("%d columns, the header has %d" % (len(parts), self._ncols))
            out = {}
            for i, n in self._cols:
                out[n] = _num(parts[i].strip())
            return out
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        keys = getattr(self, "_keys", None)
        out = {}
        for k in (keys or obj):
            if k in SKIP_COLUMNS and keys is None:
                continue
            if k not in obj:
                raise ValueError("missing %r" % k)
            v = obj[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError("%r is not a number" % k)
            out[k] = _num(v)
        if not out:
            raise ValueError("no reading in the object")
        return out

    def _next_reading(self):
        while True:
            line = self._next_line()
            if line is None:
                if not self._good_this_pass:
                    raise SensorError("replay %s: no valid reading in the file (%d lines skipped; last: %s)"
                                      % (self.path, self.skipped, self.last_error))
                if not self.loop:
                    raise SensorError("replay %s: end of the recording" % self.path)
                self._rewind()
                continue
            try:
                r = self._parse(line)
            except (ValueError, TypeError) as e:
                self._bad(str(e))
                continue
            self._good_this_pass += 1
            return r

    def _rewind(self):
        self._f.seek(self._data_pos)                     # just after the CSV header, or 0
        self.passes += 1
        self._good_this_pass = 0
        self.line_no = self._data_line

    def read(self):
        if self._pending is not None:
            r, self._pending = self._pending, None
            return r
        return self._next_reading()

    def close(self):
        self._f.close()
