# Freeze manifest (host side): bakes edgepoi into a custom MicroPython firmware build.
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/edgepoi/firmware/manifest.py
#
# Frozen modules run from flash (bytecode and constants stay in ROM), so importing them costs almost no
# heap. The port's own frozen modules (_boot, inisetup, ...) are kept through include(). boot.py and
# main.py stay on the filesystem (the bundle puts them there), so the app can be updated without
# reflashing; pass include_app=True to freeze the other firmware/*.py modules too.
#
# MicroPython's build resolves relative paths against this file's folder. The file list is computed with
# the same rule as the bundle builder: every sdk module except the CPython-only ones (numpy, tflite and
# TPM/PKCS#11 bindings), which a MicroPython board can never import.
import os

# Same list as edgepoi_host.bundle.CPYTHON_ONLY (tests/test_bundle.py checks they agree).
CPYTHON_ONLY = ("edgepoi/infer/engines/", "edgepoi/infer/fast_numpy/", "edgepoi/keys/tpm2.py",
                "edgepoi/keys/pkcs11.py", "edgepoi/sensors/linux_i2c.py")
KEEP_ON_FLASH = ("boot.py", "main.py", "manifest.py")

options.defaults(include_port=True, include_app=True, opt=1)  # noqa: F821 - provided by the build

if options.include_port:  # noqa: F821
    include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821


def _device_files(sdk_dir):
    out = []
    for root, _dirs, names in os.walk(os.path.join(sdk_dir, "edgepoi")):
        for n in sorted(names):
            if not n.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(root, n), sdk_dir).replace(os.sep, "/")
            if any(rel == s or (s.endswith("/") and rel.startswith(s)) for s in CPYTHON_ONLY):
                continue
            out.append(rel[len("edgepoi/"):])
    return sorted(out)


package("edgepoi", files=_device_files("../sdk"), base_path="../sdk", opt=options.opt)  # noqa: F821

if options.include_app:  # noqa: F821
    for _name in sorted(os.listdir(".")):
        if _name.endswith(".py") and _name not in KEEP_ON_FLASH:
            module(_name, opt=options.opt)  # noqa: F821
