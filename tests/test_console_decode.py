"""The console's pure side: every MQTT message becomes a readable Record (console.decode), and the
fleet model (console.model) builds device rows only from devices' own messages.

Attestations are real: a file: key, edgepoi.attest.Attester, keys looked up in a real registry database
(edgepoi_host.edge.registry on SQLite) or a folder of key files.
"""
import os
import shlex

from hypothesis import given, settings, strategies as st

from edgepoi import attest, attest_verify, cbor
from edgepoi.counter import FileCounter
from edgepoi.keys import open_key
from edgepoi_host.console import decode
from edgepoi_host.console.model import FleetModel
from edgepoi_host.edge import db, registry


def make_attester(tmp_path, device_id):
    key = open_key("file:%s" % (tmp_path / ("%s.key.pem" % device_id)))
    return key, attest.Attester(key, device_id, FileCounter(str(tmp_path / (device_id + ".seq"))),
                                attest.MemoryStore())


def one_attestation(att, out=b"\x80\x7f"):
    return att.attest(attest.digest(b"model"), attest.digest(b"input"), out, 24576, "mpy-viper", True,
                      42, bytes(range(16)))


def tokens(line):
    """A plain line -> (time, topic, kind, {key: value})."""
    parts = shlex.split(line)
    return parts[0], parts[1], parts[2], dict(p.split("=", 1) for p in parts[3:])


def test_telemetry_is_decoded_into_readings_inference_and_queue_depth():
    tele = {"dev": "sim-01", "seq": 7, "ts": 1795970626, "readings": {"temp_c": 21.9, "humidity": 44.1},
            "inference": {"out": [0.125, 0.875], "backend": "mpy-viper"}, "q": 3}
    rec = decode.decode("edgepoi/v1/sim-01/telemetry", cbor.dumps(tele))
    assert (rec.kind, rec.device, rec.device_event, rec.error) == ("telemetry", "sim-01", True, None)
    assert rec.fields["seq"] == 7 and rec.fields["q"] == 3 and rec.fields["backend"] == "mpy-viper"
    assert rec.fields["temp_c"] == 21.9 and rec.fields["out"] == [0.125, 0.875]
    _, topic, kind, kv = tokens(rec.line())
    assert (topic, kind, kv["dev"], kv["seq"], kv["humidity"], kv["out"]) == (
        "edgepoi/v1/sim-01/telemetry", "telemetry", "sim-01", "7", "44.1", "[0.125,0.875]")


def test_telemetry_that_lies_about_its_device_or_is_not_cbor_is_shown_but_is_no_device_event():
    rec = decode.decode("edgepoi/v1/a/telemetry", cbor.dumps({"dev": "b", "seq": 1}))
    assert rec.error and "does not match" in rec.error and not rec.device_event
    rec = decode.decode("edgepoi/v1/a/telemetry", b"\xff\x00garbage")
    assert rec.kind == "telemetry" and rec.error.startswith("not CBOR") and not rec.device_event
    assert rec.fields["hex"].startswith("ff00")


def test_attestation_checked_against_the_registry_database(tmp_path):
    key, att = make_attester(tmp_path, "kitchen-1")
    reg = registry.Registry(db.connect("sqlite:///%s" % (tmp_path / "edge.db")))
    keys = decode.KeyRing(reg)
    msg = one_attestation(att)
    assert decode.decode("edgepoi/v1/kitchen-1/attest", msg, keys).verdict == decode.UNKNOWN_KEY
    reg.register("kitchen-1", key.public_key(), kind="file")      # registered after the console started
    rec = decode.decode("edgepoi/v1/kitchen-1/attest", msg, keys)
    assert (rec.kind, rec.verdict, rec.device_event) == ("attest", decode.VERIFIED, True)
    assert rec.fields["kid"] == key.key_id.hex() and rec.fields["seq"] == 1
    assert rec.fields["output"] == b"\x80\x7f" and rec.fields["work_units"] == 24576
    assert rec.fields["model_digest"] == attest.digest(b"model")
    assert "claimed_device" not in rec.fields
    kv = tokens(rec.line())[3]
    assert kv["verdict"] == "verified" and kv["model_digest"] == attest.digest(b"model").hex()


def test_forged_attestations_are_bad_signatures(tmp_path):
    key, att = make_attester(tmp_path, "dev-1")
    reg = attest_verify.MemoryRegistry()
    reg.add("dev-1", key.public_key())
    keys = decode.KeyRing(reg)
    msg = one_attestation(att, out=b"\x10\x20\x30")
    flipped_sig = bytearray(msg)
    flipped_sig[-5] ^= 0x01
    forged_output = msg.replace(b"\x43\x10\x20\x30", b"\x43\x10\x20\x31")   # the output claim
    assert forged_output != msg
    for forged in (bytes(flipped_sig), forged_output):
        rec = decode.decode("edgepoi/v1/dev-1/attest", forged, keys)
        assert rec.verdict == decode.BAD_SIGNATURE and rec.kind == "attest"
        assert tokens(rec.line())[3]["verdict"] == "bad signature"
    assert decode.decode("edgepoi/v1/dev-1/attest", msg, keys).verdict == decode.VERIFIED


def test_attestation_verdicts_without_keys_with_an_unknown_key_and_for_another_device(tmp_path):
    key, att = make_attester(tmp_path, "dev-1")
    msg = one_attestation(att)
    assert decode.decode("edgepoi/v1/dev-1/attest", msg).verdict == decode.UNCHECKED
    assert decode.decode("edgepoi/v1/dev-1/attest", msg,
                         decode.KeyRing(attest_verify.MemoryRegistry())).verdict == decode.UNKNOWN_KEY
    reg = attest_verify.MemoryRegistry()
    reg.add("dev-2", key.public_key())
    rec = decode.decode("edgepoi/v1/dev-2/attest", msg, decode.KeyRing(reg))
    assert rec.verdict == decode.WRONG_DEVICE and rec.fields["claimed_device"] == "dev-1"
    rec = decode.decode("edgepoi/v1/dev-1/attest", b"\xd2\x84\x40", decode.KeyRing(reg))
    assert rec.verdict == decode.MALFORMED and rec.error and rec.device_event is False


def test_keys_folder_reads_pem_hex_and_private_key_files(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    folder = tmp_path / "keys"
    folder.mkdir()
    keys_made = {}
    for name in ("pem-dev", "hex-dev", "priv-dev"):
        key, att = make_attester(tmp_path, name)
        keys_made[name] = (key, one_attestation(att))
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), keys_made["pem-dev"][0].public_key())
    (folder / "pem-dev.pub.pem").write_bytes(pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (folder / "hex-dev.hex").write_text(keys_made["hex-dev"][0].public_key().hex() + "\n")
    os.link(str(tmp_path / "priv-dev.key.pem"), str(folder / "priv-dev.pem"))
    (folder / "README.txt").write_text("not a key")
    ring = decode.KeyRing.from_dir(str(folder))
    assert sorted(ring.names.values()) == ["hex-dev.hex", "pem-dev.pub.pem", "priv-dev.pem"]
    for name, (key, msg) in keys_made.items():
        assert decode.decode("edgepoi/v1/%s/attest" % name, msg, ring).verdict == decode.VERIFIED
    moved = decode.decode("edgepoi/v1/pem-dev/attest", keys_made["hex-dev"][1], ring)
    assert moved.verdict == decode.WRONG_DEVICE and moved.fields["claimed_device"] == "hex-dev"


def test_foreign_traffic_is_shown_as_json_text_cbor_or_hex_and_never_as_a_device():
    cases = [("zigbee2mqtt/lamp", b'{"state": "ON", "brightness": 254}', "json"),
             ("foo/bar", bytes(range(250, 256)) + os.urandom(40), "binary"),
             ("shellies/plug/relay/0", b"on", "text"),
             ("sensors/cbor", cbor.dumps({"t": 1.5}), "cbor"),
             ("empty/topic", b"", "empty"),
             ("homeassistant/sensor/sim-01_temp_c/config", b'{"name": "temp"}', "hass"),
             ("edgepoi/v1/edge/beacon", cbor.dumps({"epoch": 3, "nonce": b"n" * 16, "t": 5}), "beacon"),
             ("edgepoi/v1/not a device!/telemetry", cbor.dumps({"seq": 1}), "cbor")]
    for topic, payload, kind in cases:
        rec = decode.decode(topic, payload)
        assert rec.kind == kind, (topic, rec)
        assert not rec.device_event and rec.device is None
        assert tokens(rec.line())[1] == topic
    assert decode.decode(*cases[0][:2]).fields["json"] == {"state": "ON", "brightness": 254}
    assert decode.decode(*cases[1][:2]).fields["hex"].startswith("fafbfcfdfeff")


def test_device_side_topics_status_ack_commands_and_results():
    rec = decode.decode("edgepoi/v1/d1/status", b"offline", retain=True)
    assert (rec.kind, rec.fields["status"], rec.device_event, rec.retain) == ("status", "offline", True, True)
    assert not decode.decode("edgepoi/v1/d1/status", b"maybe").device_event
    rec = decode.decode("edgepoi/v1/d1/ack", cbor.dumps({"upto": 9}))
    assert (rec.kind, rec.fields, rec.device_event) == ("ack", {"upto": 9}, False)
    rec = decode.decode("edgepoi/v1/d1/cmd/reveal/result", cbor.dumps({"ok": True, "input": b"\x01"}))
    assert (rec.kind, rec.fields["cmd"], rec.fields["input"], rec.device_event) == (
        "result", "reveal", b"\x01", False)
    assert decode.decode("edgepoi/v1/d1/cmd/ping", b"").kind == "cmd"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.sampled_from(["edgepoi/v1/d1/telemetry", "edgepoi/v1/d1/attest", "edgepoi/v1/d1/status",
                                  "edgepoi/v1/edge/beacon", "edgepoi/v1/d1/ack", "homeassistant/x",
                                  "edgepoi/v1/d1/cmd/x/result"]), st.text(max_size=40)),
       st.binary(max_size=200))
def test_decode_never_raises_and_only_device_topics_make_device_events(topic, payload):
    rec = decode.decode(topic, payload)
    assert rec.size == len(payload)
    line = rec.line()
    assert "\n" not in line and "\r" not in line
    if "\n" not in topic and "\r" not in topic:     # those are shown escaped as \\n, \\r
        assert tokens(line)[1] == topic
    if rec.device_event:
        parts = topic.split("/")
        assert parts[:2] == ["edgepoi", "v1"] and parts[3] in ("status", "telemetry", "attest")


def test_fleet_model_rows_rates_and_verdicts(tmp_path):
    key, att = make_attester(tmp_path, "d1")
    reg = attest_verify.MemoryRegistry()
    reg.add("d1", key.public_key())
    keys = decode.KeyRing(reg)
    fleet = FleetModel(window=10.0)
    t0 = 1000.0
    fleet.apply(decode.decode("edgepoi/v1/d1/status", b"offline", t=t0, retain=True))
    assert fleet.devices["d1"].status == "offline" and fleet.devices["d1"].last_seen is None
    fleet.apply(decode.decode("edgepoi/v1/d1/status", b"online", t=t0))
    for i in range(20):
        tele = {"dev": "d1", "seq": i, "ts": 0, "readings": {"v": i}, "q": 20 - i,
                "inference": {"out": [0.5], "backend": "numpy"}}
        fleet.apply(decode.decode("edgepoi/v1/d1/telemetry", cbor.dumps(tele), t=t0 + i * 0.5))
    msg = one_attestation(att)
    fleet.apply(decode.decode("edgepoi/v1/d1/attest", msg, keys, t=t0 + 10))
    bad = bytearray(msg)
    bad[-1] ^= 0x80
    fleet.apply(decode.decode("edgepoi/v1/d1/attest", bytes(bad), keys, t=t0 + 10))
    for topic in ("zigbee2mqtt/lamp", "edgepoi/v1/ghost/cmd/ping", "edgepoi/v1/ghost/ack"):
        fleet.apply(decode.decode(topic, b"{}", t=t0 + 10))
    d = fleet.devices["d1"]
    assert sorted(fleet.devices) == ["d1"] and fleet.foreign == 1 and fleet.total == 27
    assert (d.status, d.last_seq, d.queue, d.telemetry, d.readings) == ("online", 19, 1, 20, {"v": 19})
    assert d.verdict == decode.BAD_SIGNATURE and d.verdicts[decode.VERIFIED] == 1
    assert d.inference_text() == "[0.5] numpy"
    # window (t0+0.5, t0+10.5]: telemetry 2..19 (18) + 2 attestations = 20 messages over 10 s
    assert abs(d.rate(t0 + 10.5) - 2.0) < 1e-9
    assert d.rate(t0 + 100) == 0.0
