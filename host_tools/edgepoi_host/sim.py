"""A simulated fleet: N devices, each a real MicroPython process running the device firmware.

Usage::

    fleet = Fleet(broker_url, count=3, workdir="/tmp/fleet")
    fleet.start(); ...; fleet.stop()

Each device gets its own folder playing its flash (config.json and its log), and runs
``firmware/main.py`` under the MicroPython unix port with the heap of an ESP32 (``-X heapsize=96K``).
"""
import json
import os
import signal
import subprocess
import tempfile

from edgepoi_host.edge.ingest import parse_broker_url
from edgepoi_host.runtime.micropython import REPO_DIR, MicroPython

FIRMWARE_MAIN = os.path.join(REPO_DIR, "firmware", "main.py")


class SimDevice:
    def __init__(self, device_id, flash_dir, config, heapsize="96K"):
        self.device_id = device_id
        self.flash_dir = flash_dir
        self.config = config
        self.heapsize = heapsize
        self.proc = None
        self.log_path = os.path.join(flash_dir, "device.log")

    def start(self):
        os.makedirs(self.flash_dir, exist_ok=True)
        with open(os.path.join(self.flash_dir, "config.json"), "w") as f:
            json.dump(self.config, f)
        mp = MicroPython(heapsize=self.heapsize)
        self._log = open(self.log_path, "ab")
        self.proc = mp.spawn([FIRMWARE_MAIN], cwd=self.flash_dir, stdout=self._log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5):
        if self.alive:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self._log.close()

    def kill(self):
        self.stop(signal.SIGKILL)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Fleet:
    def __init__(self, broker_url, count=3, workdir=None, period_s=1.0, messages=0, prefix="sim",
                 heapsize="96K", qos=1):
        host, port, _ = parse_broker_url(broker_url)
        self.workdir = workdir or tempfile.mkdtemp(prefix="edgepoi-fleet-")
        self.devices = []
        for i in range(count):
            dev_id = "%s-%02d" % (prefix, i + 1)
            cfg = {"device_id": dev_id, "broker_host": host, "broker_port": port, "seed": i + 1,
                   "period_s": period_s, "count": messages, "qos": qos}
            self.devices.append(SimDevice(dev_id, os.path.join(self.workdir, dev_id), cfg, heapsize))

    def start(self):
        for d in self.devices:
            d.start()
        return self

    def wait(self, timeout=None):
        for d in self.devices:
            if d.proc is not None:
                d.proc.wait(timeout)

    def stop(self):
        for d in self.devices:
            d.stop()
