"""A simulated fleet: N devices, each a real MicroPython process running the device firmware.

Usage::

    fleet = Fleet(broker_url, count=3, workdir="/tmp/fleet")
    fleet.start(); ...; fleet.stop()

The fleet builds the firmware bundle for the ``unix`` board once (the sdk and app compiled to .mpy, as
on a real board); each device gets its own folder playing its flash — a copy of the bundle plus its
config.json, queue and log — and runs the bundle's ``main.py`` under the MicroPython unix port with the
heap of an ESP32 (``-X heapsize=96K``) and nothing but its flash on the module path.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile

from edgepoi_host.edge.ingest import parse_broker_url
from edgepoi_host.runtime.micropython import MicroPython


class SimDevice:
    def __init__(self, device_id, flash_dir, config, heapsize="96K", bundle_dir=None, romfs=None):
        self.device_id = device_id
        self.romfs = romfs          # the board's ROMFS partition image (the package's bytecode), or None
        self.bundle_dir = bundle_dir
        self.flash_dir = flash_dir
        self.config = config
        self.heapsize = heapsize
        self.proc = None
        self.log_path = os.path.join(flash_dir, "device.log")

    def start(self):
        if not os.path.exists(os.path.join(self.flash_dir, "main.py")):  # first power-on: flash it
            shutil.copytree(self.bundle_dir, self.flash_dir, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("romfs.img"))
        with open(os.path.join(self.flash_dir, "config.json"), "w") as f:
            json.dump(self.config, f)
        mp = MicroPython(heapsize=self.heapsize, sdk=False, path=[self.flash_dir], romfs=self.romfs)
        self._log = open(self.log_path, "ab")
        # as on a board: boot.py runs as a script (it leaves no module behind), then main.py
        self.proc = mp.spawn(["-c", "exec(open('boot.py').read())\nimport main\nmain.main()"], cwd=self.flash_dir,
                             stdout=self._log,
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
    """N simulated devices.

    Args:
        model: path of a .tflite model the devices run (copied into each flash as model.tflite).
        attest: give each device a key (created by the device itself, in its flash) and sign attestations;
            ``public_keys()`` then returns what the edge node's registry needs.
        backend: inference backend on the device ("ref", "viper", "auto").
        extra: more config keys for every device (e.g. {"keepalive": 5}).
        romfs: run the package's bytecode in place from a ROMFS image (as a board with a ROMFS partition
            does) instead of loading the .mpy files from flash into the heap.
    """

    def __init__(self, broker_url, count=3, workdir=None, period_s=1.0, messages=0, prefix="sim",
                 heapsize="96K", model=None, attest=False, backend="auto", extra=None, romfs=False):
        host, port, _ = parse_broker_url(broker_url)
        from edgepoi_host import bundle
        self.workdir = workdir or tempfile.mkdtemp(prefix="edgepoi-fleet-")
        self.bundle = bundle.build("unix", os.path.join(self.workdir, "bundle"), model=model, romfs=romfs)
        self.heapsize = heapsize
        self.devices = []
        for i in range(count):
            dev_id = "%s-%02d" % (prefix, i + 1)
            cfg = {"device_id": dev_id, "broker_host": host, "broker_port": port,
                   "sensor": {"type": "synthetic", "seed": i + 1}, "period_s": period_s,
                   "count": messages, "backoff_min_ms": 100, "backoff_max_ms": 2000}
            if model:
                cfg.update(model=os.path.basename(model), backend=backend)
            if attest:
                cfg["key"] = "file:key.pem"
            cfg.update(extra or {})
            self.devices.append(SimDevice(dev_id, os.path.join(self.workdir, dev_id), cfg, heapsize,
                                          self.bundle.out_dir, self.bundle.romfs_image))

    def public_keys(self):
        """Have each device create its key in its own flash (as provisioning does) and read back the
        public key: {device_id: 65-byte point}. The private key never leaves the device's folder."""
        out = {}
        code = ("from edgepoi.keys import open_key\n"
                "import binascii\n"
                "print('PUB', binascii.hexlify(open_key(%r).public_key()).decode())")
        for d in self.devices:
            if not os.path.exists(os.path.join(d.flash_dir, "main.py")):
                shutil.copytree(d.bundle_dir, d.flash_dir, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("romfs.img"))
            mp = MicroPython(heapsize="256K", sdk=False, path=[d.flash_dir], romfs=d.romfs)
            res = mp.run_code(code % d.config["key"], cwd=d.flash_dir)
            line = [ln for ln in res.stdout.splitlines() if ln.startswith("PUB ")][0]
            out[d.device_id] = bytes.fromhex(line[4:])
        return out

    def register(self, registry):
        """Register every device's key with an edge node registry (edgepoi_host.edge.registry)."""
        for dev_id, pub in self.public_keys().items():
            registry.register(dev_id, pub, kind="file")

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
