"""File operations on a MicroPython board, built only on ``exec``/``eval`` of a raw-REPL transport.

Small device-side helpers (``_ep_*``) are installed once per session. Writes go to ``<name>.ep~`` and are
renamed into place only after the device has checked their SHA-256, so a transfer cut off half way never
leaves a half file under the real name (``ls`` hides leftover ``.ep~`` files; the next sync removes them).
Data travels inside the code as the shortest of a bytes literal, base64, or base64 of a raw-deflate stream
(when the board has ``deflate``: .py text shrinks to ~55%), and several small files share one exec of up to
``budget`` bytes, so a bundle of many small .py files costs few round trips. ``sync`` compares SHA-256
hashes computed on the board and sends only what differs.

Usage::

    fs = DeviceFS(transport)
    fs.ls(".")                           # [('lib', -1), ('lib/a.py', 120), ...]  (-1: a directory)
    fs.put(b"print(1)", "main.py")
    fs.sync("build/bundle", ".", delete=True, progress=True)   # -> SyncReport
"""
import ast
import base64
import hashlib
import os
import zlib

from .errors import TransportError

TMP_SUFFIX = ".ep~"
EXEC_BUDGET = 8192          # code bytes per exec (and raw bytes per piece): the board's compile heap grows with it
DEFLATE_WBITS = 10          # 1 KB back-reference window: what the board needs to inflate

_HELPERS = r"""
import os, hashlib, binascii
_ep_a2b = binascii.a2b_base64
def _ep_j(d, n):
    return n if d in ('', '.') else (d + n if d.endswith('/') else d + '/' + n)
def _ep_isdir(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return None
def _ep_hash(p):
    h = hashlib.sha256()
    b = bytearray(2048)
    m = memoryview(b)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n: break
            h.update(m[:n])
    return binascii.hexlify(h.digest()).decode()
def _ep_walk(d, r, deep, hashes):
    for e in os.ilistdir(d):
        p = _ep_j(d, e[0])
        q = _ep_j(r, e[0])
        if e[1] & 0x4000:
            print(repr((q, -1, None)))
            if deep:
                _ep_walk(p, q, deep, hashes)
        elif p.endswith('.ep~'):
            if hashes:
                os.remove(p)
        else:
            print(repr((q, os.stat(p)[6], _ep_hash(p) if hashes else None)))
def _ep_mkdirs(p):
    s = '/' if p.startswith('/') else ''
    for part in p.split('/'):
        if not part or part == '.':
            continue
        s = s + part if s in ('', '/') else s + '/' + part
        k = _ep_isdir(s)
        if k is False:
            os.remove(s)
        if not k:
            os.mkdir(s)
def _ep_rm(p):
    if _ep_isdir(p):
        for e in os.ilistdir(p):
            _ep_rm(_ep_j(p, e[0]))
        os.rmdir(p)
    elif _ep_isdir(p) is not None:
        os.remove(p)
def _ep_w(p, d, m):
    with open(p, m) as f: f.write(d)
def _ep_mv(t, p, h):
    if h and _ep_hash(t) != h:
        os.remove(t)
        raise ValueError('sha256 mismatch after writing ' + p)
    if _ep_isdir(p) is not None:
        _ep_rm(p)
    os.rename(t, p)
try:
    import deflate, io
    def _ep_wz(p, d, m):
        z = deflate.DeflateIO(io.BytesIO(d), deflate.RAW, 10)
        b = bytearray(512)
        v = memoryview(b)
        with open(p, m) as f:
            while True:
                n = z.readinto(b)
                if not n: break
                f.write(v[:n])
    print(1)
except ImportError:
    print(0)
"""


def rjoin(base, rel):
    """Join remote paths the way the device helpers do ('' and '.' mean the current directory)."""
    if base in ("", "."):
        return rel
    return base + rel if base.endswith("/") else base + "/" + rel


def encode_chunk(data, inflate=False):
    """The shortest safe way to carry ``data`` in device code.

    Returns:
        (writer, expression): writer ``_ep_w`` with a bytes literal or an ``a2b_base64`` call, or, when the
        board has ``deflate`` and it pays, ``_ep_wz`` with base64 of a raw-deflate stream (1 KB window).
    """
    data = bytes(data)
    best = ("_ep_w", repr(data))
    b64 = "_ep_a2b(%r)" % base64.b64encode(data).decode()
    if len(b64) < len(best[1]):
        best = ("_ep_w", b64)
    if inflate and len(data) > 64:
        z = zlib.compressobj(9, zlib.DEFLATED, -DEFLATE_WBITS)
        packed = "_ep_a2b(%r)" % base64.b64encode(z.compress(data) + z.flush()).decode()
        if len(packed) < len(best[1]):
            best = ("_ep_wz", packed)
    return best


class SyncReport:
    """What a sync did: files ``sent`` (paths), ``bytes_sent`` (file bytes), ``deleted``, ``unchanged``."""

    def __init__(self):
        self.sent, self.deleted, self.unchanged, self.bytes_sent = [], [], [], 0

    def __repr__(self):
        return "SyncReport(sent=%d, bytes=%d, deleted=%d, unchanged=%d)" % (
            len(self.sent), self.bytes_sent, len(self.deleted), len(self.unchanged))


class DeviceFS:
    """Files on the board behind ``transport`` (anything with ``exec``/``eval``, e.g. SerialTransport).

    Args:
        transport: an open transport.
        budget: payload bytes per exec (smaller for boards with little heap).
        verify: check each written file's SHA-256 on the device before renaming it into place.
        compress: send pieces raw-deflated when the board has the ``deflate`` module and it is shorter.
    """

    def __init__(self, transport, budget=EXEC_BUDGET, verify=True, compress=True):
        self.t = transport
        self.budget = budget
        self.verify = verify
        self.compress = compress
        self.can_inflate = False
        self._session = None

    def _helpers(self):
        session = self.t.ready() if hasattr(self.t, "ready") else 0
        if self._session != session:
            has_deflate = self.t.exec(_HELPERS).strip() == b"1"
            self.can_inflate = bool(self.compress and has_deflate)
            self._session = session

    def _exec(self, code, timeout=None):
        self._helpers()
        return self.t.exec(code, timeout)

    def _eval(self, expr, timeout=None):
        self._helpers()
        return self.t.eval(expr, timeout)

    # ---- queries -----------------------------------------------------------------------------------

    def ls(self, path=".", recursive=True, hashes=False):
        """Entries under ``path`` as (relative path, size) pairs, size -1 for directories (sorted).

        With ``hashes=True`` each entry is (path, size, sha256 hex or None). Raises DeviceError if
        ``path`` does not exist.
        """
        out = self._exec("_ep_walk(%s, '', %r, %r)" % (repr(path), bool(recursive), bool(hashes)))
        rows = sorted(ast.literal_eval(line) for line in out.decode("utf-8").splitlines() if line.strip())
        return rows if hashes else [(p, s) for p, s, _ in rows]

    def isdir(self, path):
        """True for a directory, False for a file, None if nothing is there."""
        return self._eval("_ep_isdir(%s)" % repr(path))

    def size(self, path):
        """Size in bytes of a remote file."""
        return self._eval("os.stat(%s)[6]" % repr(path))

    def sha256(self, path):
        """Hex SHA-256 of a file, computed on the device in chunks."""
        return self._eval("_ep_hash(%s)" % repr(path))

    def cat(self, path):
        """The bytes of a remote file (streamed back as base64 lines in one exec)."""
        out = self._exec("with open(%s, 'rb') as f:\n while True:\n  b = f.read(1536)\n  if not b:\n   break\n"
                         "  print(binascii.b2a_base64(b).decode().strip())" % repr(path))
        return b"".join(base64.b64decode(line) for line in out.split() if line)

    get = cat

    # ---- changes -----------------------------------------------------------------------------------

    def mkdir(self, path):
        """``mkdir -p``."""
        self._exec("_ep_mkdirs(%s)" % repr(path))

    def rm(self, path):
        """Remove a file or a whole directory tree; nothing there is not an error."""
        self._exec("_ep_rm(%s)" % repr(path))

    def put(self, data, path, progress=None):
        """Write ``data`` (bytes) to remote ``path`` (parent directories created), atomically."""
        self.put_many([(path, bytes(data))], progress)

    def put_many(self, files, progress=None):
        """Write several (remote path, bytes) files, packing them into as few execs as the budget allows.

        Args:
            files: iterable of (remote path, bytes).
            progress: callable(n_bytes) called as file bytes reach the device.
        """
        files = list(files)
        self._helpers()
        dirs = sorted({p.rsplit("/", 1)[0] for p, _ in files if "/" in p.strip("/")})
        batch = ["_ep_mkdirs(%s)" % repr(d) for d in dirs]
        size, batch_bytes = sum(map(len, batch)), 0
        for path, data in files:
            tmp = path + TMP_SUFFIX
            view = memoryview(data)
            pieces = [view[i:i + self.budget] for i in range(0, len(data), self.budget)] or [view]
            for i, piece in enumerate(pieces):
                writer, expr = encode_chunk(piece, self.can_inflate)
                stmt = "%s(%s, %s, %r)" % (writer, repr(tmp), expr, "ab" if i else "wb")
                if batch and size + len(stmt) > self.budget:
                    self._run_batch(batch, batch_bytes, progress)
                    batch, size, batch_bytes = [], 0, 0
                batch.append(stmt)
                size += len(stmt)
                batch_bytes += len(piece)
            digest = hashlib.sha256(data).hexdigest() if self.verify else ""
            batch.append("_ep_mv(%s, %s, %r)" % (repr(tmp), repr(path), digest))
            size += len(batch[-1])
        if batch:
            self._run_batch(batch, batch_bytes, progress)

    def _run_batch(self, stmts, nbytes, progress):
        self._exec("\n".join(stmts))
        if progress:
            progress(nbytes)

    # ---- sync --------------------------------------------------------------------------------------

    def sync(self, source, remote_dir=".", delete=False, progress=False):
        """Make ``remote_dir`` hold the files of ``source``, sending only what differs.

        Args:
            source: a local directory, or a manifest dict {relative path: bytes or local file path}.
            remote_dir: where on the board ('.' is the board's current directory, '/' on most boards).
            delete: also remove remote files and directories that are not in ``source``.
            progress: show a rich progress bar (or pass a callable(n_bytes)).
        Returns:
            SyncReport.
        """
        local = load_manifest(source)
        report = SyncReport()
        kind = self.isdir(remote_dir) if remote_dir not in ("", ".", "/") else True
        if kind is False:
            raise TransportError("cannot sync into %s: it is a file on the board; remove it first" % remote_dir)
        remote = {}
        if kind:
            for path, size, digest in self.ls(remote_dir, hashes=True):
                remote[path] = (size, digest)
        todo = []
        for rel in sorted(local):
            data = local[rel]
            have = remote.get(rel)
            if have and have[0] == len(data) and have[1] == hashlib.sha256(data).hexdigest():
                report.unchanged.append(rel)
            else:
                todo.append((rjoin(remote_dir, rel), data))
                report.sent.append(rel)
                report.bytes_sent += len(data)
        gone = []
        if delete:
            local_dirs = {rel.rsplit("/", 1)[0] for rel in local if "/" in rel}
            local_dirs |= {d.rsplit("/", i)[0] for d in local_dirs for i in range(d.count("/") + 1)}
            for rel, (size, _) in sorted(remote.items()):
                if (rel not in local if size >= 0 else rel not in local_dirs):
                    if not any(rel.startswith(g + "/") for g in gone):
                        gone.append(rel)
        report.deleted = list(gone)
        if gone:
            self._exec("\n".join("_ep_rm(%s)" % repr(rjoin(remote_dir, rel)) for rel in gone))
        if todo:
            with _progress(progress, report.bytes_sent) as advance:
                self.put_many(todo, advance)
        return report


def load_manifest(source):
    """{relative posix path: bytes} for a local directory or a manifest dict (values bytes or file paths)."""
    out = {}
    if isinstance(source, dict):
        for rel, v in source.items():
            if isinstance(v, (bytes, bytearray, memoryview)):
                out[rel.strip("/")] = bytes(v)
            else:
                with open(v, "rb") as f:
                    out[rel.strip("/")] = f.read()
        return out
    if not os.path.isdir(source):
        raise TransportError("cannot sync %s: not a directory" % source)
    for root, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for n in sorted(names):
            full = os.path.join(root, n)
            rel = os.path.relpath(full, source).replace(os.sep, "/")
            with open(full, "rb") as f:
                out[rel] = f.read()
    return out


class _progress:
    """Context manager yielding an ``advance(n)`` callable: a rich bar, a user callable, or a no-op."""

    def __init__(self, progress, total):
        self.progress, self.total, self.bar = progress, total, None

    def __enter__(self):
        if callable(self.progress):
            return self.progress
        if not self.progress:
            return lambda n: None
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)
        self.bar = Progress(TextColumn("sync"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), transient=False)
        self.bar.start()
        task = self.bar.add_task("sync", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()

