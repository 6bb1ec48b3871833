"""Device registry: key validation, idempotent registration, rotation, fraud flags, the verifier's
lookup, and `edgepoi edge register|credentials` end to end (generated config on a real Mosquitto)."""
import hashlib
import json
import os
import stat
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgepoi import attest, attest_verify
from edgepoi.keys import key_id_of
from edgepoi_host.edge import db, edge_cli, registry
from edgepoi_host.runtime.broker import Mosquitto, free_port


def new_key(curve=None):
    k = ec.generate_private_key(curve or ec.SECP256R1())
    pub = k.public_key()
    raw = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return k, raw, pem, der


@pytest.fixture
def reg(tmp_path):
    d = db.connect("sqlite:///" + str(tmp_path / "edge.db"))
    yield registry.Registry(d)
    d.close()


def test_public_keys_load_from_pem_der_hex_and_raw():
    _k, raw, pem, der = new_key()
    for form in (pem, der, raw, raw.hex(), raw.hex().upper().encode(), ":".join("%02x" % b for b in raw)):
        assert registry.load_public_key(form) == raw
    off_curve = raw[:-1] + bytes([raw[-1] ^ 1])
    for bad in (off_curve, off_curve.hex(), raw[:33], b"\x02" + raw[1:33], new_key(ec.SECP384R1())[2],
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "zz"):
        with pytest.raises(registry.RegistryError) as e:
            registry.load_public_key(bad)
        assert e.value.reason == "bad_key"


def test_register_is_idempotent_refuses_a_new_key_and_rotates_on_request(reg):
    _k, raw, _pem, _der = new_key()
    dev, action = reg.register("dev-1", raw, kind="tpm2", now=100.0)
    assert action == "created"
    assert dev["key_id"] == hashlib.sha256(raw).digest()[:16] == key_id_of(raw)
    assert (dev["kind"], dev["registered_at"], dev["broker_username"], dev["flagged"]) == ("tpm2", 100.0,
                                                                                          "dev-1", False)
    assert reg.register("dev-1", raw, kind="tpm2")[1] == "unchanged"
    _k2, raw2, _p, _d = new_key()
    with pytest.raises(registry.RegistryError) as e:
        reg.register("dev-1", raw2)
    assert e.value.reason == "key_mismatch"
    with pytest.raises(registry.RegistryError) as e:
        reg.register("dev-2", raw)                     # one key, one device
    assert e.value.reason == "key_in_use"
    dev, action = reg.register("dev-1", raw2, kind="file", rotate=True, now=200.0)
    assert action == "rotated" and dev["public_key"] == raw2 and dev["rotated_at"] == 200.0
    assert reg.lookup(key_id_of(raw2)) == ("dev-1", raw2, None)
    assert reg.lookup(key_id_of(raw)) is None          # a retired key signs nothing new
    assert reg.db.query("SELECT device_id, public_key, retired_at FROM registry_key_history") == [
        ("dev-1", raw, 200.0)]
    for bad in ("edge", "a/b", "+", "", "x" * 65):
        with pytest.raises(registry.RegistryError) as e:
            reg.register(bad, new_key()[1])
        assert e.value.reason == "bad_device_id"


def test_flags_and_the_attestation_verifier_use_the_registry(reg, tmp_path):
    from edgepoi.keys import open_key
    key = open_key("file:" + str(tmp_path / "d.pem"))
    reg.register("dev-1", key.public_key(), kind="file")

    class C:
        n = 0

        def next(self):
            self.n += 1
            return self.n
    a = attest.Attester(key, "dev-1", C(), attest.MemoryStore())
    m = a.attest(b"m" * 32, b"i" * 32, b"o", 10, "ref", True, 1, b"n" * 16)
    claims = attest_verify.verify_attestation(m, reg, attest_verify.MemoryState())
    assert claims[attest.DEVICE_ID] == "dev-1"
    reg.register("dev-1", new_key()[1], rotate=True)
    with pytest.raises(attest_verify.Rejection) as e:
        attest_verify.verify_attestation(a.attest(b"m" * 32, b"i" * 32, b"o", 10, "ref", True, 1, b"n" * 16), reg,
                                  attest_verify.MemoryState())
    assert e.value.reason == "unknown_key"
    reg.flag("dev-1", "audit mismatch at seq 2")
    assert reg.get("dev-1")["flagged"] and reg.flagged() == {"dev-1"}
    with pytest.raises(registry.RegistryError):
        reg.flag("nobody", "x")


def test_register_and_credentials_commands_drive_a_real_broker(tmp_path, capsys):
    url = "sqlite:///" + str(tmp_path / "edge.db")
    for dev in ("dev-1", "dev-2"):
        (tmp_path / (dev + ".pem")).write_bytes(new_key()[2])
        assert edge_cli.main(["register", "--db", url, "--device-id", dev, "--pubkey",
                              str(tmp_path / (dev + ".pem")), "--kind", "file"]) == 0
    assert edge_cli.main(["register", "--db", url, "--device-id", "dev-1", "--pubkey",
                          str(tmp_path / "dev-1.pem")]) == 0
    (tmp_path / "other.hex").write_text(new_key()[1].hex())
    assert edge_cli.main(["register", "--db", url, "--device-id", "dev-1", "--pubkey",
                          str(tmp_path / "other.hex")]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines()[0].startswith("created dev-1") and "unchanged dev-1" in out.out
    assert out.err.strip().count("\n") == 0 and "key_mismatch" in out.err
    port, sec = free_port(), tmp_path / "broker"
    args = ["credentials", "--db", url, "--out", str(sec), "--port", str(port), "--listen", "127.0.0.1"]
    assert edge_cli.main(args) == 0
    creds = dict((u, json.loads((sec / "credentials" / (u + ".json")).read_text())["password"])
                 for u in ("edge", "dev-1", "dev-2"))
    for f in ("passwd", "credentials/dev-1.json", "tls/ca.key", "tls/server.key"):
        assert stat.S_IMODE(os.stat(str(sec / f)).st_mode) == 0o600, f
    assert edge_cli.main(args) == 0                    # a second run keeps every password
    assert creds["dev-1"] == json.loads((sec / "credentials" / "dev-1.json").read_text())["password"]
    conf = (sec / "mosquitto.conf").read_text()
    broker = Mosquitto(port=free_port(), workdir=str(tmp_path / "m"), extra_config=conf, anonymous=False)
    broker.start()
    try:
        got = []
        edge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge", protocol=mqtt.MQTTv311)
        edge.username_pw_set("edge", creds["edge"])
        edge.tls_set(ca_certs=str(sec / "tls" / "ca.crt"))
        edge.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
        subscribed = threading.Event()
        edge.on_subscribe = lambda *a: subscribed.set()
        edge.connect("127.0.0.1", port)
        edge.subscribe("edgepoi/v1/#", qos=1)
        edge.loop_start()
        assert subscribed.wait(5)
        dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-1", protocol=mqtt.MQTTv311)
        dev.username_pw_set("dev-1", creds["dev-1"])
        dev.tls_set(ca_certs=str(sec / "tls" / "ca.crt"))
        dev.connect("localhost", port)
        dev.loop_start()
        dev.publish("edgepoi/v1/dev-1/telemetry", b"hello", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == [("edgepoi/v1/dev-1/telemetry", b"hello")]
        for c in (edge, dev):
            c.disconnect()
            c.loop_stop()
    finally:
        broker.close()
