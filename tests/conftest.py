"""The real-component test harness: fixtures for Mosquitto, MicroPython and a serial-attached board.

- ``broker``: a private Mosquitto on a free loopback port (persistence on, queues unlimited), with
  ``stop()``, ``start()`` and ``kill()`` for fault tests. Never the machine's broker on 1883.
- ``micropython``: a factory ``micropython(heapsize="96K", path=[...])`` returning a runner for the real
  MicroPython unix port with ``sdk/`` on its path; a MicroPython traceback fails the test and is shown.
- ``serial_device``: a board on a "USB serial port": MicroPython's REPL on a raw-mode pseudo-terminal in a
  temp folder that plays the board's flash; yields an object whose ``.port`` is a path for pyserial.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from edgepoi_host.runtime.broker import Mosquitto  # noqa: E402
from edgepoi_host.runtime.micropython import MicroPython  # noqa: E402
from harness.serial_device import SerialDevice  # noqa: E402

MODELS_DIR = os.environ.get("EDGEPOI_MODELS",
                            os.path.join(os.path.dirname(__file__), "..", "..", "shared", "models"))


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(workdir=str(tmp_path / "mosquitto"))
    b.start()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def micropython():
    def make(heapsize="96K", path=(), **kw):
        return MicroPython(heapsize=heapsize, path=path, **kw)
    return make


@pytest.fixture(scope="session")
def sdk_mpy(tmp_path_factory):
    """The sdk as it ships to a MicroPython board: a unix-board bundle of .mpy files (built once)."""
    from edgepoi_host import bundle
    return bundle.build("unix", str(tmp_path_factory.mktemp("sdk_mpy") / "bundle")).out_dir


@pytest.fixture
def serial_device(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    dev = SerialDevice(str(flash))
    dev.start()
    try:
        yield dev
    finally:
        dev.close()


def pytest_report_header(config):
    if os.path.isdir(MODELS_DIR):
        return "edgepoi real models: %s" % os.path.abspath(MODELS_DIR)
    return ("edgepoi real models: NOT FOUND at %s (set EDGEPOI_MODELS); the real-model conformance "
            "suite is skipped" % os.path.abspath(MODELS_DIR))
