"""Model update over MQTT, device side: a signed manifest, chunks in any order, SHA-256, atomic swap.

    from edgepoi.ota import ModelUpdate
    ota = ModelUpdate(edge_pub65, directory="/", model="model.tflite", reload=agent.load_model)
    result = ota.handle("manifest", payload)      # or ("chunk/7", payload); suffixes of .../model/
    if result: publish(root + "cmd/model/result", cbor.dumps(result))

Theory of operation (details in docs/DEVICE.md, "Model updates"). The edge node publishes on
``edgepoi/v1/<id>/model/manifest`` a COSE_Sign1 (ES256, the edge node's key) over the CBOR map {name,
size, sha256, chunk_size, chunks, version[, device]}, then raw chunks on ``.../model/chunk/<n>``.
States: idle -> receiving -> (check, swap, reload) -> idle. A manifest is refused (``reason``:
bad_signature, bad_manifest, wrong_device, old_version) or persisted (``model.ota``) with
``model.new`` preallocated and a zeroed chunk bitmap (``model.map``); the same manifest again resumes.
Chunk n goes straight to ``model.new`` at n * chunk_size, then its bit is set in the bitmap file
(repeats skipped, any order, a reboot resumes); one chunk at most is in RAM. All bits set: SHA-256
check (a mismatch clears the bitmap, nothing swapped), then ``model.bak`` removed, ``model.tflite``
-> ``model.bak``, ``model.new`` -> ``model.tflite`` (os.rename, never onto an existing name) and
``reload(path)``; if it raises, ``model.bak`` is put back and reloaded (rolled_back). Start-up
finishes or undoes a swap cut by a power loss. Results are dicts for ``cmd/model/result``: {"op":
"model", "ok", "state": receiving|installed|rolled_back|rejected, "version", "chunks", "have",
"missing" (first 32), "reason", "error"}; between chunks only every ``progress_every`` chunks.
"""
import hashlib
import os

from edgepoi import cbor

MAX_CHUNK = 8192            # a chunk plus its topic must fit the device MQTT codec's 16 KB packet limit
MIN_CHUNK = 64
MAX_CHUNKS = 8192           # the bitmap is at most 1 KB


class _Reject(Exception):
    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    _remove(path)
    os.rename(tmp, path)


def parse_manifest(payload, max_size):
    """CBOR manifest bytes -> dict, every field checked. Raises _Reject(bad_manifest)."""
    try:
        m = cbor.loads(payload, max_depth=2, max_items=16)
    except cbor.CBORError as e:
        raise _Reject("bad_manifest", "not CBOR: %s" % e)
    if not isinstance(m, dict):
        raise _Reject("bad_manifest", "not a map")
    for k, t in (("name", str), ("size", int), ("sha256", bytes), ("chunk_size", int),
                 ("chunks", int), ("version", int)):
        if not isinstance(m.get(k), t) or isinstance(m.get(k), bool):
            raise _Reject("bad_manifest", "%s missing or not %s" % (k, t.__name__))
    size, cs = m["size"], m["chunk_size"]
    if not 0 < size <= max_size:
        raise _Reject("bad_manifest", "size %d not in 1..%d" % (size, max_size))
    if not MIN_CHUNK <= cs <= MAX_CHUNK:
        raise _Reject("bad_manifest", "chunk_size %d not in %d..%d" % (cs, MIN_CHUNK, MAX_CHUNK))
    if m["chunks"] != (size + cs - 1) // cs or m["chunks"] > MAX_CHUNKS:
        raise _Reject("bad_manifest", "chunks %d does not fit size/chunk_size (max %d)"
                      % (m["chunks"], MAX_CHUNKS))
    if len(m["sha256"]) != 32 or m["version"] < 0 or len(m["name"]) > 64:
        raise _Reject("bad_manifest", "sha256 must be 32 bytes, version >= 0, name <= 64 chars")
    return m


class ModelUpdate:
    def __init__(self, edge_public_key, directory=".", model="model.tflite", reload=None,
                 device_id=None, max_size=1 << 20, progress_every=16, verify=None):
        """Args: edge_public_key (65-byte P-256 point the manifest must verify with), directory
        (flash folder), model (file name), reload (called with the model path after a swap; raising
        means the model failed to load), device_id (checked against a manifest's ``device``),
        max_size (bytes), progress_every (chunks between progress results; 0: none)."""
        self.pub = bytes(edge_public_key)
        self.reload = reload
        self.device_id = device_id
        self.max_size = max_size
        self.progress_every = progress_every
        self._verify = verify      # default: edgepoi.cose_verify.verify1, imported at the first manifest
        d = directory.rstrip("/") + "/" if directory else ""
        base = d + (model.rsplit(".", 1)[0] if "." in model else model)
        self.path = d + model
        self.new, self.bak = base + ".new", base + ".bak"
        self.state_path, self.map_path, self.ver_path = base + ".ota", base + ".map", base + ".ver"
        self.m = None
        self.bitmap = None
        self.have = 0
        self.stats = {"chunks": 0, "duplicates": 0, "ignored": 0, "rejected": 0}
        self.installed = self._read_version()
        self._load()

    # -- persistence ------------------------------------------------------------------------------
    def _read_version(self):
        """model.ver holds "<version> <sha256 hex>" of the installed model."""
        try:
            with open(self.ver_path) as f:
                parts = f.read().split()
            self.installed_sha = bytes.fromhex(parts[1]) if len(parts) > 1 else None
            return int(parts[0])
        except (OSError, ValueError, IndexError):
            self.installed_sha = None
            return -1

    def _load(self):
        try:
            with open(self.state_path, "rb") as f:
                self.m = parse_manifest(f.read(), self.max_size)
        except (OSError, _Reject):
            self.m = None
            if not _exists(self.path) and _exists(self.bak):
                os.rename(self.bak, self.path)        # a rollback cut short
            return
        n = self.m["chunks"]
        self.bitmap = bytearray((n + 7) // 8)
        try:
            with open(self.map_path, "rb") as f:
                data = f.read()
            if len(data) == len(self.bitmap):
                self.bitmap[:] = data
        except OSError:
            pass
        self.have = sum([1 for i in range(n) if self.bitmap[i >> 3] & (1 << (i & 7))])
        complete = self.have == n
        if not _exists(self.path) and _exists(self.bak):
            if complete and _exists(self.new):
                os.rename(self.new, self.path)        # the swap was cut between its two renames
            else:
                os.rename(self.bak, self.path)
        if complete and not _exists(self.new) and self._digest(self.path) == self.m["sha256"]:
            self._installed()                          # swapped before the power cut
        elif not _exists(self.new):
            self._prepare(False)

    def _prepare(self, fresh):
        """Preallocate model.new and zero the bitmap (fresh) or recreate a lost model.new."""
        self.bitmap = bytearray((self.m["chunks"] + 7) // 8)
        self.have = 0
        z = bytes(512)
        left = self.m["size"]
        with open(self.new, "wb") as f:
            while left > 0:
                n = f.write(z if left >= 512 else z[:left])
                left -= n
        _write_atomic(self.map_path, self.bitmap)

    def _installed(self):
        self.installed = self.m["version"]
        self.installed_sha = self.m["sha256"]
        _write_atomic(self.ver_path, ("%d %s" % (self.installed, self.installed_sha.hex())).encode())
        self._clear()

    def _clear(self):
        _remove(self.state_path)
        _remove(self.map_path)
        _remove(self.new)
        self.m = None
        self.bitmap = None
        self.have = 0

    def _digest(self, path):
        h = hashlib.sha256()
        buf = bytearray(512)
        mv = memoryview(buf)
        try:
            with open(path, "rb") as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    h.update(mv[:n])
        except OSError:
            return None
        return h.digest()

    # -- results ----------------------------------------------------------------------------------
    def _result(self, ok, state, reason=None, error=None, m=None):
        m = m or self.m
        r = {"op": "model", "ok": ok, "state": state}
        if m is not None:
            r["version"] = m["version"]
            r["chunks"] = m["chunks"]
        if self.m is not None:
            r["have"] = self.have
            r["missing"] = self.missing(32)
        if reason:
            r["reason"] = reason
            r["error"] = error
        return r

    def missing(self, limit=32):
        """Indices of chunks not received yet (at most limit)."""
        out = []
        if self.m is None:
            return out
        for i in range(self.m["chunks"]):
            if not self.bitmap[i >> 3] & (1 << (i & 7)):
                out.append(i)
                if len(out) >= limit:
                    break
        return out

    # -- messages ---------------------------------------------------------------------------------
    def handle(self, suffix, payload):
        """A message on ``.../model/<suffix>`` -> a result dict to publish, or None. A failing flash
        (io_error) or heap (out_of_memory) is a result, not an exception; the update stays resumable."""
        try:
            if suffix == "manifest":
                return self.on_manifest(payload)
            if suffix.startswith("chunk/"):
                try:
                    n = int(suffix[6:])
                except ValueError:
                    n = -1
                return self.on_chunk(n, payload)
        except (OSError, MemoryError) as e:
            import gc
            gc.collect()
            reason = "out_of_memory" if isinstance(e, MemoryError) else "io_error"
            return self._result(False, "receiving" if self.m is not None else "rejected", reason,
                                "%s: %s" % (type(e).__name__, e))
        return None

    def on_manifest(self, message):
        from edgepoi import cose_verify    # lazily: a device that never gets an update never loads it
        try:
            try:
                payload = (self._verify or cose_verify.verify1)(message, self.pub)
            except cose_verify.CoseError as e:
                raise _Reject("bad_signature", "manifest refused: %s" % e)
            m = parse_manifest(payload, self.max_size)
            if self.device_id and m.get("device", self.device_id) != self.device_id:
                raise _Reject("wrong_device", "manifest is for %r" % (m.get("device"),))
            v = m["version"]
            cur = self.m
            if cur is not None and v == cur["version"] and m["sha256"] == cur["sha256"]:
                if self.have == cur["chunks"]:
                    return self._complete()
                return self._result(True, "receiving")      # resume
            if v == self.installed and m["sha256"] == self.installed_sha:
                return self._result(True, "installed", m=m)      # a repeat of what is installed
            if v <= self.installed:
                raise _Reject("old_version", "version %d is not newer than the installed %d"
                              % (v, self.installed))
            if cur is not None and v < cur["version"]:
                raise _Reject("old_version", "version %d is older than the update in progress (%d)"
                              % (v, cur["version"]))
            self._start(m, payload)
            return self._result(True, "receiving")
        except _Reject as e:
            self.stats["rejected"] += 1
            r = {"op": "model", "ok": False, "state": "rejected", "reason": e.reason, "error": str(e),
                 "installed": self.installed}
            if self.m is not None:
                r["active"] = self.m["version"]
            return r

    def _start(self, m, payload):
        self._clear()
        self.m = m
        try:
            _write_atomic(self.state_path, payload)
            self._prepare(True)
        except OSError as e:
            self._clear()
            raise _Reject("io_error", "cannot prepare %s (%d bytes): %s" % (self.new, m["size"], e))

    def on_chunk(self, n, data):
        m = self.m
        if m is None:
            self.stats["ignored"] += 1
            return None
        if not 0 <= n < m["chunks"]:
            return self._result(False, "receiving", "bad_chunk", "chunk %d not in 0..%d" % (n, m["chunks"] - 1))
        cs = m["chunk_size"]
        want = cs if n < m["chunks"] - 1 else m["size"] - cs * (m["chunks"] - 1)
        if len(data) != want:
            return self._result(False, "receiving", "bad_chunk", "chunk %d has %d bytes, expected %d"
                                % (n, len(data), want))
        byte, bit = n >> 3, 1 << (n & 7)
        if self.bitmap[byte] & bit:
            self.stats["duplicates"] += 1
            return None
        try:
            with open(self.new, "r+b") as f:
                f.seek(n * cs)
                f.write(data)
            self.bitmap[byte] |= bit
            with open(self.map_path, "r+b") as f:
                f.seek(byte)
                f.write(self.bitmap[byte:byte + 1])
        except OSError as e:
            self.bitmap[byte] &= ~bit & 0xFF
            return self._result(False, "receiving", "io_error", "chunk %d: %s" % (n, e))
        self.have += 1
        self.stats["chunks"] += 1
        if self.have == m["chunks"]:
            return self._complete()
        if self.progress_every and self.have % self.progress_every == 0:
            return self._result(True, "receiving")
        return None

    def _complete(self):
        m = self.m
        if self._digest(self.new) != m["sha256"]:
            for i in range(len(self.bitmap)):
                self.bitmap[i] = 0
            self.have = 0
            _write_atomic(self.map_path, self.bitmap)
            return self._result(False, "receiving", "sha_mismatch",
                                "SHA-256 of the received model differs from the manifest: resend")
        _remove(self.bak)
        had_old = _exists(self.path)
        if had_old:
            os.rename(self.path, self.bak)
        os.rename(self.new, self.path)
        try:
            if self.reload is not None:
                self.reload(self.path)
        except Exception as e:  # noqa: BLE001 - any failure to load is a failed update
            return self._rollback(m, had_old, e)
        self._installed()
        return self._result(True, "installed", m=m)

    def _rollback(self, m, had_old, err):
        _remove(self.path)
        detail = "new model failed to load: %s" % (err,)
        if had_old:
            os.rename(self.bak, self.path)
            try:
                self.reload(self.path)
            except Exception as e2:  # noqa: BLE001
                detail += "; the previous model failed to reload too: %s" % (e2,)
        self._clear()
        return self._result(False, "rolled_back", "load_failed", detail, m=m)

    def rollback(self):
        """Put ``model.bak`` back as the model (e.g. the agent failed to load it at boot)."""
        if not _exists(self.bak):
            return False
        _remove(self.path)
        os.rename(self.bak, self.path)
        return True
