"""Provisioning benchmark: time to put one bundle on a fresh board, edgepoi's sync vs ``mpremote cp``.

The bundle is every .py file of sdk/edgepoi (under ``lib/edgepoi``) plus a 20 KB model-sized binary. Each
run powers on a fresh board (the MicroPython unix port on a raw-mode pseudo-terminal, from
tests/harness/serial_device.py), copies the bundle with one tool, checks the board's flash holds exactly the
bundle, and records the wall time (port open to port closed) and the bytes that crossed the "cable". It
prints the medians and the ratio edgepoi/mpremote (< 1 means edgepoi is faster; the issue requires <= 1),
the cost of a second, unchanged sync, and what the wire bytes alone would take on a 115200-baud UART
(a pseudo-terminal has no line speed; a USB-UART bridge board does).

    python benchmarks/provision.py               # 3 runs each (about 20 s)
    python benchmarks/provision.py --runs 5 --model-kb 64
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from harness.serial_device import SerialDevice  # noqa: E402

from edgepoi_host.serial.fs import DeviceFS  # noqa: E402
from edgepoi_host.serial.transport import SerialTransport  # noqa: E402


def build_bundle(dest, model_kb):
    """Write the bundle into ``dest``; return {relative path: bytes}."""
    files = {}
    src = os.path.join(ROOT, "sdk", "edgepoi")
    for dirpath, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for n in sorted(names):
            if n.endswith(".py"):
                full = os.path.join(dirpath, n)
                rel = "lib/edgepoi/" + os.path.relpath(full, src).replace(os.sep, "/")
                with open(full, "rb") as f:
                    files[rel] = f.read()
    files["model.bin"] = random.Random(7).randbytes(model_kb * 1024)
    for rel, data in files.items():
        p = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    return files


def flash_tree(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root).replace(os.sep, "/")] = f.read()
    return out


def with_edgepoi(dev, bundle_dir):
    with SerialTransport(dev.port, timeout=10) as t:
        return DeviceFS(t).sync(bundle_dir, ".", progress=False)


def with_mpremote(dev, bundle_dir):
    cmd = [sys.executable, "-m", "mpremote", "connect", dev.port, "resume", "cp", "-r", "lib", "model.bin", ":./"]
    p = subprocess.run(cmd, cwd=bundle_dir, capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise SystemExit("mpremote failed: %s" % p.stderr.strip())


def one_run(tool, bundle_dir, files):
    flash = tempfile.mkdtemp(prefix="edgepoi-board-")
    dev = SerialDevice(flash).start()
    try:
        time.sleep(0.2)                       # let the board print its banner
        b0 = dev.bytes_to_device
        t0 = time.perf_counter()
        tool(dev, bundle_dir)
        dt = time.perf_counter() - t0
        sent = dev.bytes_to_device - b0
        if flash_tree(flash) != files:
            raise SystemExit("%s left the board's flash different from the bundle" % tool.__name__)
        second = None
        if tool is with_edgepoi:
            b0, t0 = dev.bytes_to_device, time.perf_counter()
            report = with_edgepoi(dev, bundle_dir)
            second = (time.perf_counter() - t0, dev.bytes_to_device - b0, len(report.sent))
        return dt, sent, second
    finally:
        dev.close()
        shutil.rmtree(flash, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model-kb", type=int, default=20)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgepoi-bundle-") as bundle_dir:
        files = build_bundle(bundle_dir, args.model_kb)
        total = sum(map(len, files.values()))
        print("bundle: %d files, %d bytes (%d .py + a %d KB binary)"
              % (len(files), total, len(files) - 1, args.model_kb))
        res = {"edgepoi": [], "mpremote": []}
        seconds = []
        for _ in range(args.runs):       # interleave the tools so machine load hits both alike
            for name, tool in (("edgepoi", with_edgepoi), ("mpremote", with_mpremote)):
                dt, sent, second = one_run(tool, bundle_dir, files)
                res[name].append((dt, sent))
                if second:
                    seconds.append(second)
    med = {k: statistics.median(dt for dt, _ in v) for k, v in res.items()}
    for k, v in res.items():
        print("%-9s median %7.3f s  (runs: %s)  %8d bytes to the board  %6.1f KB/s of files"
              % (k, med[k], ", ".join("%.3f" % dt for dt, _ in v), v[0][1], total / med[k] / 1024))
    s_dt = statistics.median(s[0] for s in seconds)
    print("edgepoi second sync of the unchanged bundle: %.3f s, %d bytes to the board, %d files sent"
          % (s_dt, seconds[0][1], seconds[0][2]))
    wire = {k: v[0][1] for k, v in res.items()}
    print("on a 115200-baud UART (11.5 KB/s) the bytes alone take: edgepoi %.1f s, mpremote %.1f s"
          % (wire["edgepoi"] / 11520, wire["mpremote"] / 11520))
    ratio = med["edgepoi"] / med["mpremote"]
    print("ratio edgepoi/mpremote: %.3f (%.1fx faster)  target <= 1: %s"
          % (ratio, 1 / ratio, "PASS" if ratio <= 1 else "FAIL"))
    return 0 if ratio <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
