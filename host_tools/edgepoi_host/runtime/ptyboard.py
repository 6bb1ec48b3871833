"""A MicroPython board on a "USB serial port": the unix port behind a raw-mode pseudo-terminal.

The board is the real MicroPython unix port with its REPL on the slave side of a pseudo-terminal put in raw
mode (``tty.setraw``: no echo, no line discipline, like a USB CDC port); its working directory is a folder
that plays the board's flash. The host side is a second pseudo-terminal whose slave path (``/dev/pts/N``)
is what pyserial, ``edgepoi provision`` or mpremote open; a relay thread copies bytes between the two
masters. The relay is what lets a test unplug the cable or kill the board (``kill()``) mid-transfer while
the host keeps a port open, exactly as happens with a real board. The demo and the tests use it alike.

Usage::

    from edgepoi_host.runtime.ptyboard import SerialDevice
    dev = SerialDevice(flash_dir).start()
    with serial.Serial(dev.port, 115200, timeout=1) as s: ...     # or provision(dev.port, "unix", ...)
    dev.monitor("console.log")      # once no host tool holds the port: keep its output flowing to a file
    dev.send(b"\\x03")               # bytes typed on the host side (Ctrl-C)
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
    """MicroPython unix port behind a raw-mode pty pair; ``.port`` is the host-side device path.

    Args:
        flash_dir: the board's flash (its working directory and only module path).
        heapsize: the MicroPython heap (``-X heapsize``).
    """

    def __init__(self, flash_dir, heapsize="256K"):
        self.flash_dir = flash_dir
        self.heapsize = heapsize
        self.proc = None
        self._stop = threading.Event()
        self._relay = None
        self._monitor = None
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

    def send(self, data):
        """Write bytes on the host side of the line, as a serial terminal would (e.g. b"\\x03")."""
        _write_all(self._host_slave, data)

    def monitor(self, log_path):
        """Read the host side from now on, appending what the board prints to log_path.

        A board whose output nobody reads blocks once the pty buffers fill, as a real one would stall on a
        full USB buffer; call this once no host tool (provisioning, mpremote) holds the port any more.
        """
        if self._monitor is not None:
            return
        self._monitor = threading.Thread(target=self._read_host, args=(log_path,), name="serial-monitor",
                                         daemon=True)
        self._monitor.start()

    def _read_host(self, log_path):
        with open(log_path, "ab") as log:
            while not self._stop.is_set():
                try:
                    r, _, _ = select.select([self._host_slave], [], [], 0.1)
                    data = os.read(self._host_slave, 4096) if r else b""
                except (OSError, ValueError):
                    return
                if data:
                    log.write(data)
                    log.flush()

    def kill(self):
        """Power cut: SIGKILL the board; the host side keeps its port open (reads time out)."""
        self._stop.set()
        for t in (self._relay, self._monitor):
            if t is not None:
                t.join(2)
        self._monitor = None
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
        """Power off for good and release the pseudo-terminals (idempotent)."""
        if self._host_master < 0:
            return
        self.kill()
        for fd in (self._host_master, self._host_slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._host_master = self._host_slave = -1


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
