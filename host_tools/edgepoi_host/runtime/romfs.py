"""ROMFS for the unix board: bytecode that runs in place from (emulated) flash instead of the heap.

A board with a ROMFS partition (MicroPython >= 1.25) mounts it at ``/rom`` and imports .mpy files from it
without copying their bytecode into RAM; ``mpremote romfs deploy`` writes such an image. The unix port has
no partition, so this module plays one: ``build_image`` packs a folder (the bundle's ``edgepoi/`` .mpy
tree) with mpremote's ROMFS writer, ``environ(image)`` returns the variables that make a MicroPython
process map the image read-only outside its heap (``romfs_map.c``, an LD_PRELOAD shim compiled on first
use with the system C compiler), and ``MOUNT_CODE`` — run first in the process, as a board's firmware
does before boot.py — mounts it and puts ``/rom`` and ``/rom/lib`` on ``sys.path`` after ``''``.

Usage::

    romfs.build_image(bundle_dir + "/edgepoi", "rom.img", prefix="edgepoi")
    mp = MicroPython(heapsize="96K", romfs="rom.img")      # runs MOUNT_CODE before its code
"""
import hashlib
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM_SOURCE = os.path.join(HERE, "romfs_map.c")

# Device-side startup (MicroPython): what the firmware of a ROMFS board does before boot.py.
MOUNT_CODE = (
    "def _edgepoi_rom():\n"
    " import os, sys, vfs, uctypes\n"
    " m = os.getenv('EDGEPOI_ROMFS_MAP')\n"
    " if not m:\n"
    "  raise OSError('edgepoi romfs: the image was not mapped (LD_PRELOAD shim missing?)')\n"
    " a, n = m.split(':')\n"
    " vfs.mount(vfs.VfsRom(uctypes.bytearray_at(int(a, 16), int(n))), '/rom')\n"
    " sys.path.insert(1, '/rom/lib')\n"
    " sys.path.insert(1, '/rom')\n"
    "_edgepoi_rom()\n"
    "del _edgepoi_rom\n")


class RomfsError(RuntimeError):
    """The image could not be built or the shim compiled (the message says why)."""


def build_image(src_dir, dst_path, prefix=""):
    """Pack every file under ``src_dir`` into a ROMFS image at ``dst_path``; ``prefix`` names the folder
    they appear in inside the image (e.g. "edgepoi" for the package). Returns the image size in bytes."""
    from mpremote.romfs import VfsRomWriter
    if not os.path.isdir(src_dir):
        raise RomfsError("romfs: %s is not a folder" % src_dir)
    w = VfsRomWriter()
    parts = [p for p in prefix.strip("/").split("/") if p]
    for p in parts:
        w.opendir(p)
    _add_tree(w, src_dir)
    for _ in parts:
        w.closedir()
    img = w.finalise()
    tmp = dst_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(img)
    os.replace(tmp, dst_path)
    return len(img)


def _add_tree(w, path):
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name == "__pycache__":
            continue
        if os.path.isdir(full):
            w.opendir(name)
            _add_tree(w, full)
            w.closedir()
        else:
            with open(full, "rb") as f:
                w.mkfile(name, f.read())


def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edgepoi")


def shim_path():
    """Path of the compiled shim (built once per source version, atomically, safe under parallel tests)."""
    with open(SHIM_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    out = os.path.join(_cache_dir(), "romfs_map-%s.so" % digest)
    if os.path.exists(out):
        return out
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RomfsError("romfs: no C compiler (cc/gcc) to build the flash-mapping shim; install gcc")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(out))
    os.close(fd)
    res = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", tmp, SHIM_SOURCE], capture_output=True,
                         text=True)
    if res.returncode != 0:
        os.unlink(tmp)
        raise RomfsError("romfs: compiling the shim failed:\n" + res.stderr)
    os.replace(tmp, out)
    return out


def environ(image):
    """Environment variables that map ``image`` into a MicroPython process as its ROMFS partition."""
    if not os.path.isfile(image):
        raise RomfsError("romfs: no image at %s" % image)
    shim = shim_path()
    pre = os.environ.get("LD_PRELOAD")
    return {"LD_PRELOAD": shim + (":" + pre if pre else ""), "EDGEPOI_ROMFS": os.path.abspath(image)}
