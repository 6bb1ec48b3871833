"""A private SoftHSM2 token for tests, in a temp dir selected through SOFTHSM2_CONF.

    hsm = SoftHSM(workdir, label="edgepoi", pin="1234")
    hsm.start()                      # writes softhsm2.conf, sets SOFTHSM2_CONF, inits the token
    uri = hsm.uri("device-key")      # pkcs11:token=edgepoi;object=device-key?module-path=...&pin-value=1234
    hsm.close()                      # restores SOFTHSM2_CONF

The library reads SOFTHSM2_CONF when C_Initialize runs, so start() must happen before the PKCS#11
module is first loaded in this process (python-pkcs11 caches loaded modules); SoftHSM.shared() gives
one token per test session for that reason.
"""
import os
import shutil
import subprocess

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class SoftHSM:
    def __init__(self, workdir, label="edgepoi", pin="1234", so_pin="5678"):
        self.workdir = workdir
        self.label = label
        self.pin = pin
        self.so_pin = so_pin
        self.conf = os.path.join(workdir, "softhsm2.conf")
        self.tokens = os.path.join(workdir, "tokens")
        self._old_conf = None

    def start(self):
        util = shutil.which("softhsm2-util")
        if util is None or not os.path.exists(MODULE):
            raise RuntimeError("SoftHSM2 is not installed (Debian: apt-get install softhsm2)")
        os.makedirs(self.tokens, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                    % self.tokens)
        self._old_conf = os.environ.get("SOFTHSM2_CONF")
        os.environ["SOFTHSM2_CONF"] = self.conf
        subprocess.run([util, "--init-token", "--free", "--label", self.label,
                        "--pin", self.pin, "--so-pin", self.so_pin],
                       check=True, capture_output=True, env=dict(os.environ))
        return self

    def uri(self, obj="device-key", extra=""):
        return ("pkcs11:token=%s;object=%s?module-path=%s&pin-value=%s%s"
                % (self.label, obj, MODULE, self.pin, extra))

    def close(self):
        if self._old_conf is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = self._old_conf


_SHARED = None


def shared_softhsm():
    """One SoftHSM token per test process (the PKCS#11 library reads its config only once)."""
    global _SHARED
    if _SHARED is None:
        import atexit
        import tempfile
        d = tempfile.mkdtemp(prefix="edgepoi-softhsm-")
        _SHARED = SoftHSM(d).start()
        atexit.register(shutil.rmtree, d, True)
    return _SHARED
