"""A MicroPython board on a "USB serial port", for provisioning and transport tests.

The board is the real MicroPython unix port with its REPL on the slave side of a pseudo-terminal put in raw
mode (``tty.setraw``: no echo, no line discipline, like a USB CDC port); its working directory is a temp
folder that plays the board's flash. The host side is a second pseudo-terminal whose slave path
(``/dev/pts/N``) is what pyserial or mpremote open; a relay thread copies bytes between the two masters.
The relay is what lets a test unplug the cable (``unplug()``) or kill the board (``kill()``) mid-transfer
while the host keeps a port open, exactly as happens with a real board.

Usage::

    dev = SerialDevice(flash_dir); dev.start()
    with serial.Serial(dev.port, 115200, timeout=1) as s: ...
    dev.close()
"""
import os
import pty
import select
import signal
import subprocess
import threading
import tty

from edgepoi_host.runtime.micropython import MicroPython


class SerialDevice:
    """MicroPython unix port behind a raw-mode pty pair; ``.port`` is the host-side device path."""

    def __init__(self, flash_dir, heapsize="256K"):
        self.flash_dir = flash_dir
        self.heapsize = heapsize
        self.proc = None
        self._stop = threading.Event()
        self._relay = None
        # Host side: the slave path is the "serial port"; the relay owns the master.
        self._host_master, self._host_slave = pty.openpty()
        tty.setraw(self._host_slave)
        self.port = os.ttyname(self._host_slave)
        self._dev_master = None
        self.bytes_to_device = 0
        self.bytes_from_device = 0

    def start(self):
        """Power the board on: start MicroPython on a fresh device pty and the relay."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self._dev_master, dev_slave = pty.openpty()
        tty.setraw(dev_slave)
        # The board's own firmware: no sdk/ on the path; it imports what is in its flash folder.
        mp = MicroPython(heapsize=self.heapsize, sdk=False, path=[self.flash_dir])
        self.proc = subprocess.Popen(mp.argv([]), cwd=self.flash_dir, env=mp.environ(),
                                     stdin=dev_slave, stdout=dev_slave, stderr=dev_slave,
                                     start_new_session=True)
        os.close(dev_slave)
        self._stop.clear()
        self._relay = threading.Thread(target=self._pump, name="serial-relay", daemon=True)
        self._relay.start()
        return self

    def _pump(self):
        host, dev = self._host_master, self._dev_master
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([host, dev], [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    if fd == dev:  # board gone: stop relaying, the host sees silence (a dead board)
                        return
                    continue
                if fd == host:
                    self.bytes_to_device += len(data)
                    _write_all(dev, data)
                else:
                    self.bytes_from_device += len(data)
                    _write_all(host, data)

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """Power cut: SIGKILL the board; the host side keeps its port open (reads time out)."""
        self._stop.set()
        if self._relay:
            self._relay.join(2)
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self._dev_master is not None:
            os.close(self._dev_master)
            self._dev_master = None
        self._drain_host()

    def _drain_host(self):
        # Drop bytes the host wrote that never reached the dead board.
        while True:
            r, _, _ = select.select([self._host_master], [], [], 0)
            if not r:
                return
            try:
                if not os.read(self._host_master, 4096):
                    return
            except OSError:
                return

    def restart(self):
        self.kill()
        return self.start()

    def close(self):
        self.kill()
        for fd in (self._host_master, self._host_slave):
            try:
                os.close(fd)
            except OSError:
                pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
