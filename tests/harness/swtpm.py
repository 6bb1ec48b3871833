"""A private swtpm (TPM 2.0 simulator) for tests: free loopback ports, a temp state dir, restartable.

    tpm = SwTPM(state_dir)          # state survives stop()/start() on the same dir
    tpm.start()
    uri = "tpm2:handle=0x81010001;tcti=" + tpm.tcti
    tpm.stop(); tpm.start()         # a TPM "power cycle": persistent objects stay
    tpm.close()

swtpm runs with ``--flags not-need-init,startup-clear`` so no TPM2_Startup is needed from the client and
there is no resource manager: clients must flush their transient handles themselves.
"""
import os
import shutil
import socket
import subprocess
import time


def _free_port_pair():
    """Two consecutive free loopback ports (server, control) — swtpm's TCTI expects port and port+1."""
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port >= 65535:
            continue
        ok = True
        for p in (port, port + 1):
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return port
    raise RuntimeError("no free pair of loopback ports for swtpm")


class SwTPM:
    def __init__(self, state_dir, port=None):
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        self.port = port or _free_port_pair()
        self.proc = None
        self.log_path = os.path.join(state_dir, "swtpm.log")

    @property
    def tcti(self):
        return "swtpm:host=127.0.0.1,port=%d" % self.port

    def start(self, timeout=10.0):
        if self.proc is not None:
            raise RuntimeError("swtpm already running")
        exe = shutil.which("swtpm")
        if exe is None:
            raise RuntimeError("swtpm is not installed (Debian: apt-get install swtpm swtpm-tools)")
        cmd = [exe, "socket", "--tpm2",
               "--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % self.port,
               "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (self.port + 1),
               "--tpmstate", "dir=%s" % self.state_dir,
               "--flags", "not-need-init,startup-clear",
               "--log", "file=%s,level=1" % self.log_path]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")
                self.proc = None
                raise RuntimeError("swtpm exited at start: " + err)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("swtpm did not listen on port %d" % self.port)

    def stop(self):
        """Terminate swtpm (its NVRAM state is saved in state_dir)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        # Let the kernel release the listening sockets before a restart on the same ports.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                time.sleep(0.02)
            except OSError:
                break

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.stop()
