"""Device code type-checks against the ESP32 MicroPython stubs, so a call the board's firmware lacks fails here.

Setup (the micropython-stubs docs: mypy needs the stubs laid out as a typeshed):
- a custom typeshed is assembled in a temp folder from the installed ``micropython-stdlib-stubs``
  (``stdlib/``, ``stubs/mypy-extensions``) plus every module of ``micropython-esp32-stubs`` (machine, socket,
  time, network, ...), which are added to ``stdlib/`` and listed in ``stdlib/VERSIONS``;
- mypy runs with ``--custom-typeshed-dir`` on it, ``--platform esp32`` (MicroPython's ``sys.platform``),
  ``--no-site-packages`` (numpy, cryptography and friends are not on a board), ``--check-untyped-defs``
  (device code is unannotated) and ``--always-false`` / ``--always-true`` for the interpreter flags
  (``_CPYTHON``; ``_MICRO``, ``MICROPYTHON``) so branches taken only on CPython are not checked;
- the files are every sdk module a MicroPython bundle ships (``edgepoi_host.bundle.device_modules``) and the
  firmware app (``firmware/*.py`` but the host-side freeze manifest).

Only errors that mean "this API is missing on the board" fail the check (``API_CODES``); inference noise
from unannotated code (Optional attributes, empty-container annotations) is not the target. An API error is
accepted when the line is a guarded fallback: inside a ``try`` whose handler catches AttributeError /
ImportError (in its body or in the handler). Everything else must be fixed, marked with
``# type: ignore[code]`` plus a reason, or listed in ``KNOWN`` below with one.

Not caught: ``os.fork()`` and other POSIX calls in ``os``: micropython-stdlib-stubs keeps CPython's
``os`` stub, where those sit behind ``sys.platform != "win32"`` (true for "esp32").
"""
import ast
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

from edgepoi_host import bundle

REPO = bundle.REPO_DIR
API_CODES = {"attr-defined", "import-not-found", "import-untyped", "name-defined", "call-arg"}
GUARD_EXC = {"attr-defined": {"AttributeError"}, "name-defined": {"NameError"},
             "import-not-found": {"ImportError", "ModuleNotFoundError"},
             "import-untyped": {"ImportError", "ModuleNotFoundError"}}
# Optional CPython accelerators (house rule: imported lazily, inside a function, behind a portable
# fallback). Such an import at function scope is accepted; at module top level it is an error.
ACCELERATORS = {"numpy", "cryptography", "tflite_runtime", "tflite_micro", "ai_edge_litert", "tpm2_pytss",
                "pkcs11", "paho"}
# Flags that name the interpreter: mypy treats them as constants, so CPython-only branches are skipped.
ALWAYS_FALSE = ("_CPYTHON", "CPYTHON")
ALWAYS_TRUE = ("_MICRO", "MICROPYTHON", "_MICROPYTHON")
# Classes that exist for CPython only, in any device module: their bodies are not checked for board APIs.
CPYTHON_CLASSES = {"LinuxI2C": "the Raspberry Pi transport for /dev/i2c-N (os.open, fcntl, ctypes); a board "
                               "passes a machine.I2C instead"}
# (file, enclosing function/class, error text fragment) -> why it is accepted today. Each is a known gap.
KNOWN = {
    ("sdk/edgepoi/keys/keyfile.py", "_fsync_dir", 'Module has no attribute'):
        "_fsync_dir is only called under `if _CPYTHON:` (MicroPython's VFS has no directory fsync)",
}
ERROR_RE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<msg>.*?)\s+\[(?P<code>[a-z-]+)\]$")


def _dist_files(name):
    dist = metadata.distribution(name)
    return dist, [str(f) for f in (dist.files or [])]


def build_typeshed(dst):
    """Assemble a mypy custom typeshed for ESP32 MicroPython in dst. Returns dst."""
    std, std_files = _dist_files("micropython-stdlib-stubs")
    esp, esp_files = _dist_files("micropython-esp32-stubs")
    root = str(std.locate_file(""))
    shutil.copytree(os.path.join(root, "stdlib"), os.path.join(dst, "stdlib"))
    shutil.copytree(os.path.join(root, "stubs", "mypy-extensions"), os.path.join(dst, "stubs", "mypy-extensions"))
    tops = set()
    for f in std_files + esp_files:
        if f.endswith(".pyi") and not f.startswith(("stdlib/", "stubs/")):
            tops.add(f.split("/")[0])
    with open(os.path.join(dst, "stdlib", "VERSIONS")) as fh:
        known = {ln.split(":")[0].strip() for ln in fh if ":" in ln and not ln.startswith("#")}
    with open(os.path.join(dst, "stdlib", "VERSIONS"), "a") as fh:
        for top in sorted(tops):
            src = os.path.join(str(esp.locate_file("")), top)
            target = os.path.join(dst, "stdlib", top)
            if os.path.isdir(src):
                shutil.copytree(src, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(src, target)
            mod = top[:-4] if top.endswith(".pyi") else top
            if mod not in known:
                fh.write("%s: 3.0-\n" % mod)
    return dst


def device_files():
    """Repository-relative paths of the modules that run on a MicroPython board."""
    unix = bundle.get_board("unix")
    files = [os.path.relpath(src, REPO) for src, _ in bundle.device_modules(unix)]
    files += [os.path.relpath(src, REPO) for src, _ in bundle.app_files()]
    return files


def run_mypy(typeshed, files, cwd=REPO):
    env = dict(os.environ, MYPYPATH=os.path.join(REPO, "sdk"))
    cmd = [sys.executable, "-m", "mypy", "--custom-typeshed-dir", typeshed, "--platform", "esp32",
           "--python-version", "3.11", "--no-site-packages", "--check-untyped-defs", "--no-incremental",
           "--explicit-package-bases", "--follow-imports=silent", "--show-error-codes", "--no-error-summary", "--no-pretty",
           ] + ["--always-false=" + n for n in ALWAYS_FALSE] + ["--always-true=" + n for n in ALWAYS_TRUE] \
        + list(files)
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if res.returncode not in (0, 1) or "error: " in res.stderr:
        raise AssertionError("mypy did not run:\n%s%s" % (res.stdout, res.stderr))
    errors = []
    for line in res.stdout.splitlines():
        m = ERROR_RE.match(line)
        if m:
            errors.append((m["file"], int(m["line"]), m["code"], m["msg"]))
    return errors


class _Scopes(ast.NodeVisitor):
    """line -> (enclosing "Class.func" names, is the line inside a function?)."""

    def __init__(self):
        self.lines = {}
        self.stack = []

    def _scope(self, node):
        self.stack.append(node.name)
        for ln in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            self.lines[ln] = (".".join(self.stack), isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                              or self.lines.get(ln, ("", False))[1])
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope


def guarded_lines(path):
    """({line: exception names caught around it}, {line: (scope name, in a function)}) for a source file."""
    with open(path) as f:
        tree = ast.parse(f.read())
    scopes = _Scopes()
    scopes.visit(tree)
    out = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        names = set()
        for h in node.handlers:
            t = h.type
            for e in (t.elts if isinstance(t, ast.Tuple) else [t] if t is not None else []):
                if isinstance(e, ast.Name):
                    names.add(e.id)
        for part in [node.body] + [h.body for h in node.handlers]:
            for stmt in part:
                for ln in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1):
                    out.setdefault(ln, set()).update(names)
    return out, scopes.lines


def project_classes(paths):
    """Names of the classes the checked files define (their attributes are not board APIs)."""
    names = set()
    for path in paths:
        with open(path) as f:
            names.update(n.name for n in ast.walk(ast.parse(f.read())) if isinstance(n, ast.ClassDef))
    return names


def api_problems(errors, cwd=REPO):
    """The errors that mean "missing on the board", minus guarded fallbacks and KNOWN entries."""
    out = []
    info = {}
    own = project_classes(sorted(set(os.path.join(cwd, e[0]) for e in errors)))
    for file, line, code, msg in errors:
        if code not in API_CODES:
            continue
        if file not in info:
            info[file] = guarded_lines(os.path.join(cwd, file))
        guards, scopes = info[file]
        scope, in_function = scopes.get(line, ("", False))
        if guards.get(line, set()) & GUARD_EXC.get(code, set()):
            continue
        m = re.search(r'module named "([^".]+)', msg)
        if code == "import-not-found" and m and m.group(1) in ACCELERATORS and in_function:
            continue
        if any(file == k[0] and scope.split(".")[0] == k[1] and k[2] in msg for k in KNOWN):
            continue
        if scope.split(".")[0] in CPYTHON_CLASSES:
            continue
        m = re.match(r'"(\w+)" has no attribute', msg)
        if code == "attr-defined" and m and m.group(1) in own:
            continue        # an attribute of one of our own classes: mypy's inference, not a board API
        out.append("%s:%d: %s [%s]" % (file, line, msg, code))
    return out


@pytest.fixture(scope="module")
def typeshed(tmp_path_factory):
    return build_typeshed(str(tmp_path_factory.mktemp("mp-typeshed")))


def test_device_code_uses_only_apis_the_esp32_firmware_has(typeshed):
    files = device_files()
    assert "firmware/main.py" in files and "sdk/edgepoi/cbor.py" in files
    assert not any("infer/engines" in f or f.endswith("keys/tpm2.py") for f in files)
    problems = api_problems(run_mypy(typeshed, files))
    assert not problems, "device code calls APIs ESP32 MicroPython lacks:\n" + "\n".join(problems)


NEGATIVE = '''import socket
import time


def send(path):
    s = socket.socket()
    s.sendfile(open(path, "rb"))
    return time.monotonic()


def fallback():
    try:
        return time.ticks_ms()
    except AttributeError:
        return int(time.monotonic() * 1000)
'''


def test_a_call_the_esp32_firmware_lacks_is_reported(typeshed, tmp_path):
    (tmp_path / "dev.py").write_text(NEGATIVE)
    errors = run_mypy(typeshed, ["dev.py"], cwd=str(tmp_path))
    problems = api_problems(errors, cwd=str(tmp_path))
    joined = "\n".join(problems)
    assert re.search(r"dev\.py:7: .*\"socket\" has no attribute \"sendfile\"", joined), joined
    assert re.search(r"dev\.py:8: .*has no attribute \"monotonic\"", joined), joined
    # the guarded fallback on line 15 is reported by mypy but accepted by the check
    assert any(e[1] == 15 and e[2] == "attr-defined" for e in errors), errors
    assert len(problems) == 2, joined


def test_cpython_typeshed_does_not_catch_them(tmp_path):
    # control: under CPython's own typeshed sendfile and monotonic exist (only the MicroPython-only
    # ticks_ms on line 13 is missing), so it is the ESP32 stubs that catch lines 7 and 8
    (tmp_path / "dev.py").write_text(NEGATIVE)
    res = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--check-untyped-defs",
                          "--no-site-packages", "dev.py"], cwd=str(tmp_path), capture_output=True, text=True)
    lines = [ln for ln in res.stdout.splitlines() if ": error: " in ln]
    assert len(lines) == 1 and lines[0].startswith("dev.py:13:") and "ticks_ms" in lines[0], res.stdout


def test_typeshed_has_the_board_modules(typeshed):
    for mod in ("machine.pyi", "network.pyi", "socket.pyi", "time.pyi", "esp32.pyi", "micropython.pyi"):
        assert os.path.exists(os.path.join(typeshed, "stdlib", mod)), mod
    with open(os.path.join(typeshed, "stdlib", "VERSIONS")) as f:
        listed = {ln.split(":")[0].strip() for ln in f if ":" in ln}
    assert {"machine", "network", "esp32", "micropython"} <= listed
