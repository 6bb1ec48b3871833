"""``edgepoi provision`` end to end: a MicroPython board on a pseudo-terminal, a real Mosquitto with passwords
and ACLs, the edge registry in SQLite, an EdgeNode verifying what the board signs, and mpremote as a third
party reading back what edgepoi wrote.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edgepoi.infer import schema as S
from edgepoi.keys import open_key
from edgepoi_host import provision as prov
from edgepoi_host import provision_cli
from edgepoi_host.edge import broker_security as bs
from edgepoi_host.edge import db as dblib
from edgepoi_host.edge.ingest import EdgeNode
from edgepoi_host.edge.registry import Registry
from edgepoi_host.runtime.broker import Mosquitto
from edgepoi_host.tflite_writer import ModelWriter

DEV = "dev-1"


@pytest.fixture
def edge(tmp_path):
    """An edge node's side: broker files (edge user only), a Mosquitto enforcing them, the ledger URL."""
    creds = str(tmp_path / "broker")
    assert prov.update_broker_files(creds, []) == "created"
    broker = Mosquitto(workdir=str(tmp_path / "mosquitto"), anonymous=False,
                       extra_config="password_file %s/passwd\nacl_file %s/acl" % (creds, creds))
    broker.start()

    class Edge:
        pass
    e = Edge()
    e.creds, e.broker, e.db = creds, broker, "sqlite:///" + str(tmp_path / "edge.db")
    e.edge_user = prov.read_credentials(creds, "edge")
    e.reload = lambda: os.kill(broker.proc.pid, signal.SIGHUP)      # Mosquitto re-reads passwd and acl
    e.home = str(tmp_path / "edge-home")
    try:
        yield e
    finally:
        broker.close()


def tiny_model(path):
    """A 4-in, 3-out int8 FULLY_CONNECTED model: the agent's window is its 4 inputs."""
    rng = np.random.default_rng(5)
    w = ModelWriter()
    x = w.tensor("x", [1, 4], S.INT8, scale=0.05, zero_point=0)
    k = w.tensor("w", [3, 4], S.INT8, data=rng.integers(-127, 128, (3, 4), dtype=np.int8), scale=[0.01] * 3,
                 quantized_dimension=0)
    b = w.tensor("b", [3], S.INT32, data=rng.integers(-50, 50, 3, dtype=np.int32), scale=[0.0005] * 3)
    y = w.tensor("y", [1, 3], S.INT8, scale=0.1, zero_point=0)
    w.op(S.FULLY_CONNECTED, [x, k, b], [y])
    with open(path, "wb") as f:
        f.write(w.finish(inputs=[x], outputs=[y]))
    return path


def run(dev, edge, **kw):
    kw.setdefault("timeout", 30)
    return prov.provision(dev.port, "unix", edge.broker.url, DEV, edge.db, credentials_dir=edge.creds,
                          edge_home=edge.home, reload_broker=edge.reload, **kw)


class Telemetry:
    """A subscriber with the edge user's credentials, counting the device's telemetry messages."""

    def __init__(self, edge):
        self.count, self.ready = 0, threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-telemetry")
        self.c.username_pw_set(*edge.edge_user)
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe("edgepoi/v1/%s/telemetry" % DEV, 1)
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = lambda c, u, m: setattr(self, "count", self.count + 1)
        self.c.connect(edge.broker.host, edge.broker.port)
        self.c.loop_start()
        assert self.ready.wait(10)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def flash_files(flash_dir):
    out = {}
    for root, _, names in os.walk(flash_dir):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, flash_dir).replace(os.sep, "/")] = f.read()
    return out


def mpremote(port, *args):
    r = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "resume"] + list(args),
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def test_provisioned_board_comes_online_sends_telemetry_and_signed_work_then_a_rerun_sends_nothing(
        serial_device, edge, tmp_path):
    model = tiny_model(str(tmp_path / "tiny.tflite"))
    node = EdgeNode(edge.broker.url, edge.db, username=edge.edge_user[0], password=edge.edge_user[1],
                    gap_timeout=1.0)
    node.start()                                  # its retained beacon is there before the board starts
    tele = Telemetry(edge)
    try:
        before = serial_device.bytes_to_device
        r1 = run(serial_device, edge, model=model, extra_config={"period_s": 0.3})
        first_bytes = serial_device.bytes_to_device - before
        assert r1.registry_action == "created" and r1.credentials_action == "updated"
        assert r1.online_after is not None
        assert {"main.py", "boot.py", "config.json", "board.json", "tiny.tflite", "edgepoi/agent.mpy"} <= \
            set(r1.sync.sent)
        # The key was made on the board; only its public key left it, and the registry holds that key.
        flash = flash_files(serial_device.flash_dir)
        assert b"PRIVATE KEY" in flash["key.pem"]
        reg_dev = Registry(dblib.connect(edge.db)).get(DEV)
        assert reg_dev["public_key"] == r1.public_key and reg_dev["kind"] == "file"
        from cryptography.hazmat.primitives import serialization
        priv = serialization.load_pem_private_key(flash["key.pem"], None)
        assert priv.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint) == r1.public_key
        cfg = json.loads(flash["config.json"])
        assert cfg["password"] == prov.read_credentials(edge.creds, DEV)[1]
        # Telemetry arrives through the ACL'd broker and attestations are accepted by the edge node.
        wait_for(lambda: tele.count >= 3, 30, "telemetry")
        wait_for(lambda: node.stats()["attestations_by_status"].get("accepted", 0) >= 2, 30,
                 "accepted attestations (%s)" % node.stats())
        assert node.stats()["rejected"] == 0, node.stats()["rejected_by_reason"]

        # Again, unchanged: no file crosses, only the fixed overhead of the checks; it comes back online.
        passwd = open(os.path.join(edge.creds, "passwd")).read()
        before = serial_device.bytes_to_device
        r2 = run(serial_device, edge, model=model, extra_config={"period_s": 0.3})
        second_bytes = serial_device.bytes_to_device - before
        assert r2.sync.sent == [] and r2.sync.bytes_sent == 0 and r2.removed == []
        assert r2.registry_action == "unchanged" and r2.credentials_action == "unchanged"
        assert open(os.path.join(edge.creds, "passwd")).read() == passwd
        assert r2.public_key == r1.public_key and r2.online_after is not None
        assert second_bytes < 8000 < first_bytes / 10, (first_bytes, second_bytes)
        accepted = node.stats()["attestations_by_status"]["accepted"]
        wait_for(lambda: node.stats()["attestations_by_status"]["accepted"] > accepted, 30,
                 "attestations after the rerun")
        assert node.stats()["rejected"] == 0, node.stats()["rejected_by_reason"]
        print("\nprovision: first run %.2f s, %d bytes to the board (%d file bytes); second run %.2f s, %d "
              "bytes; online after %.2f s" % (r1.seconds, first_bytes, r1.sync.bytes_sent, r2.seconds,
                                              second_bytes, r1.online_after))
    finally:
        tele.close()
        node.stop()

    # mpremote, a third-party client, lists and reads back what edgepoi wrote (its Ctrl-C stops the app).
    listing = mpremote(serial_device.port, "ls", ":").decode()
    for name in ("main.py", "boot.py", "config.json", "manifest.json", "tiny.tflite", "edgepoi/"):
        assert name in listing, listing
    assert "agent.mpy" in mpremote(serial_device.port, "ls", ":edgepoi").decode()
    manifest = json.loads(mpremote(serial_device.port, "cat", ":manifest.json"))
    flash = flash_files(serial_device.flash_dir)
    for e in manifest["files"]:
        assert hashlib.sha256(flash[e["path"]]).hexdigest() == e["sha256"], e["path"]
    assert json.loads(mpremote(serial_device.port, "cat", ":config.json"))["device_id"] == DEV


def test_board_killed_mid_transfer_gives_one_line_and_the_next_run_completes(serial_device, edge, capsys,
                                                                             tmp_path):
    argv = ["--port", serial_device.port, "--board", "unix", "--broker", edge.broker.url, "--device-id", DEV,
            "--db", edge.db, "--credentials-dir", edge.creds, "--edge-home", edge.home, "--no-reset",
            "--serial-timeout", "2", "--no-progress"]
    start = serial_device.bytes_to_device

    def cut_power():
        while serial_device.bytes_to_device - start < 40000:
            time.sleep(0.002)
        serial_device.kill()
    killer = threading.Thread(target=cut_power, daemon=True)
    killer.start()
    assert provision_cli.main(argv) == 1
    killer.join(5)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("edgepoi provision: syncing the bundle: no answer from the "
                                                   "board on %s" % serial_device.port), err

    serial_device.start()
    os.makedirs(edge.home)
    edge_key = open_key("file:" + os.path.join(edge.home, "edge-key.pem"))      # the edge node has a key now
    assert provision_cli.main(argv + ["--model", tiny_model(str(tmp_path / "tiny.tflite"))]) == 0
    out = capsys.readouterr().out
    assert "provisioned %s" % DEV in out and "registry created" in out
    flash = flash_files(serial_device.flash_dir)
    assert json.loads(flash["config.json"])["edge_pubkey"] == edge_key.public_key().hex()
    manifest = json.loads(flash["manifest.json"])
    assert not [p for p in flash if p.endswith(".ep~")]
    for e in manifest["files"]:
        assert hashlib.sha256(flash[e["path"]]).hexdigest() == e["sha256"], e["path"]

    # The board loses its key (a wiped flash): its new key is refused without --rotate, accepted with it.
    old = Registry(dblib.connect(edge.db)).get(DEV)["public_key"]
    os.remove(os.path.join(serial_device.flash_dir, "key.pem"))
    assert provision_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --rotate" in err, err
    assert Registry(dblib.connect(edge.db)).get(DEV)["public_key"] == old
    # That run had no --model: the model of the previous bundle is gone, the board's own files are not.
    flash = flash_files(serial_device.flash_dir)
    assert "tiny.tflite" not in flash and "model" not in json.loads(flash["config.json"])
    assert "key.pem" in flash and "edgepoi/agent.mpy" in flash
    assert provision_cli.main(argv + ["--rotate"]) == 0
    assert "registry rotated" in capsys.readouterr().out
    assert Registry(dblib.connect(edge.db)).get(DEV)["public_key"] != old


def test_a_board_that_is_not_the_named_board_is_refused_before_anything_is_written(serial_device, edge,
                                                                                  capsys):
    argv = ["--port", serial_device.port, "--board", "esp32-s3", "--broker", edge.broker.url, "--device-id",
            DEV, "--db", edge.db, "--credentials-dir", edge.creds, "--no-progress"]
    assert provision_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == ("edgepoi provision: the board on the port is x64 (linux), board esp32-s3 is xtensawin: wrong "
                   "--board?\n")
    assert os.listdir(serial_device.flash_dir) == []
    assert Registry(dblib.connect(edge.db)).get(DEV) is None


def test_broker_files_keep_existing_passwords_and_change_only_when_a_device_is_new(tmp_path):
    d = str(tmp_path / "b")
    assert prov.update_broker_files(d, [("dev-1", "dev-1")]) == "created"
    pw = prov.read_credentials(d, "dev-1")[1]
    passwd = open(os.path.join(d, "passwd")).read()
    assert prov.update_broker_files(d, [("dev-1", "dev-1")]) == "unchanged"
    assert open(os.path.join(d, "passwd")).read() == passwd
    assert prov.update_broker_files(d, [("dev-1", "dev-1"), ("dev-2", "dev-2")]) == "updated"
    assert prov.read_credentials(d, "dev-1")[1] == pw
    entries = dict(line.split(":", 1) for line in open(os.path.join(d, "passwd")).read().split())
    assert bs.check_password(entries["dev-1"], pw) and set(entries) == {"edge", "dev-1", "dev-2"}
    assert "topic write edgepoi/v1/dev-2/telemetry" in open(os.path.join(d, "acl")).read()


def test_an_app_that_dies_or_never_gets_online_fails_with_one_clear_line(serial_device, edge):
    with pytest.raises(prov.ProvisionError) as e:
        run(serial_device, edge, extra_config={"sensor": {"type": "bogus"}}, timeout=10)
    assert str(e.value) == "the device app stopped: ConfigError: sensor.type: unknown sensor 'bogus'"
    # A new device whose broker credentials the broker was never told to reload cannot log in.
    with pytest.raises(prov.ProvisionError) as e:
        prov.provision(serial_device.port, "unix", edge.broker.url, "dev-2", edge.db, credentials_dir=edge.creds,
                       edge_home=edge.home, key_uri="file:key2.pem", timeout=3)
    assert str(e.value).startswith("dev-2 did not report online at 127.0.0.1:%d within 3 s"
                                   % edge.broker.port)
    assert "--reload-broker" in str(e.value)


def test_the_esp32_adapter_resets_with_machine_reset_and_says_so_when_the_board_cannot(serial_device):
    from edgepoi_host.provision_board import MachineResetAdapter, UnixReplAdapter, adapter_for
    from edgepoi_host.bundle import get_board
    from edgepoi_host.serial.transport import SerialTransport
    assert isinstance(adapter_for(get_board("esp32-s3")), MachineResetAdapter)
    assert isinstance(adapter_for(get_board("unix")), UnixReplAdapter)
    with SerialTransport(serial_device.port, timeout=5) as t:
        with pytest.raises(prov.ProvisionError) as e:
            MachineResetAdapter().start(t)      # the unix port's machine module has no reset()
        assert str(e.value) == "the board did not reset: AttributeError: module 'machine' has no attribute 'reset'"
        assert t.exec("print(6 * 7)") == b"42\n"
