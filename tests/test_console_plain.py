"""``edgepoi console --plain`` against a real Mosquitto: one parseable line per message on stdout.

main() runs in the test thread with --seconds/--count; messages are either retained before it starts
(so the exact set it must print is known) or published by a paho client in a thread while it runs.
"""
import json
import os
import shlex
import threading

import paho.mqtt.client as mqtt

from edgepoi import attest, cbor
from edgepoi.counter import FileCounter
from edgepoi.keys import open_key
from edgepoi_host import console_cli
from edgepoi_host.edge import db, registry


def publisher(url):
    host, port = url.rsplit("/", 1)[1].split(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub-" + os.urandom(3).hex())
    c.connect(host, int(port))
    c.loop_start()
    return c


def publish_all(url, messages, retain=False):
    c = publisher(url)
    try:
        for topic, payload in messages:
            c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def parse(out):
    rows = []
    for line in out.splitlines():
        parts = shlex.split(line)
        rows.append((parts[1], parts[2], dict(p.split("=", 1) for p in parts[3:])))
    return rows


def attestations(tmp_path, device_id="dev-a"):
    key = open_key("file:%s" % (tmp_path / "dev.pem"))
    att = attest.Attester(key, device_id, FileCounter(str(tmp_path / "seq")), attest.MemoryStore())
    good = att.attest(attest.digest(b"m"), attest.digest(b"i"), b"\x01\x02", 100, "numpy", True, 1,
                      b"n" * 16)
    forged = bytearray(att.attest(attest.digest(b"m"), attest.digest(b"i"), b"\x03", 100, "numpy", True,
                                  1, b"n" * 16))
    forged[-1] ^= 0x01
    dburl = "sqlite:///%s" % (tmp_path / "edge.db")
    registry.Registry(db.connect(dburl)).register(device_id, key.public_key(), kind="file")
    return good, bytes(forged), dburl


def test_plain_prints_exactly_one_line_per_retained_message(broker, tmp_path, capsys):
    good, forged, dburl = attestations(tmp_path)
    tele = cbor.dumps({"dev": "dev-a", "seq": 1, "ts": 1, "readings": {"temp_c": 20.5}, "q": 0})
    msgs = [("edgepoi/v1/dev-a/status", b"online"), ("edgepoi/v1/dev-a/telemetry", tele),
            ("edgepoi/v1/dev-a/attest", good), ("edgepoi/v1/dev-b/attest", forged),
            ("homeassistant/sensor/dev-a_temp_c/config", b'{"name": "temp"}'),
            ("zigbee2mqtt/lamp", b'{"state": "ON"}'), ("foo/bar", os.urandom(32))]
    publish_all(broker.url, msgs, retain=True)
    assert console_cli.main(["--broker", broker.url, "--db", dburl, "--plain", "--seconds", "2"]) == 0
    rows = parse(capsys.readouterr().out)
    # default subscriptions: edgepoi/v1/# and homeassistant/#; the two foreign topics are not asked for
    assert sorted(r[0] for r in rows) == sorted(t for t, _ in msgs[:5])
    by_topic = dict((t, (k, kv)) for t, k, kv in rows)
    assert by_topic["edgepoi/v1/dev-a/status"] == ("status", {"dev": "dev-a", "status": "online",
                                                             "retained": "1"})
    assert by_topic["edgepoi/v1/dev-a/telemetry"][1]["temp_c"] == "20.5"
    assert by_topic["edgepoi/v1/dev-a/attest"][1]["verdict"] == "verified"
    assert by_topic["edgepoi/v1/dev-b/attest"][1]["verdict"] == "bad signature"
    assert by_topic["homeassistant/sensor/dev-a_temp_c/config"][0] == "hass"


def test_plain_json_with_all_topics_shows_live_foreign_traffic(broker, tmp_path, capsys):
    good, forged, _ = attestations(tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()
    os.link(str(tmp_path / "dev.pem"), str(keys / "dev-a.pem"))
    stop = threading.Event()
    blob = os.urandom(48)

    def feed():
        c = publisher(broker.url)
        while not stop.wait(0.2):
            for topic, payload in (("edgepoi/v1/dev-a/attest", good), ("edgepoi/v1/dev-a/attest", forged),
                                   ("zigbee2mqtt/lamp", b'{"state": "OFF", "brightness": 3}'),
                                   ("foo/bar", blob)):
                c.publish(topic, payload, qos=1)
        c.disconnect()
        c.loop_stop()

    th = threading.Thread(target=feed)
    th.start()
    try:
        assert console_cli.main(["--broker", broker.url, "--keys", str(keys), "--all", "--plain",
                                 "--json", "--seconds", "2.5"]) == 0
    finally:
        stop.set()
        th.join()
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert "connected" in captured.err
    kinds = dict(((r["topic"], r["verdict"]), r) for r in rows)
    assert kinds[("edgepoi/v1/dev-a/attest", "verified")]["fields"]["output"] == "0102"
    assert ("edgepoi/v1/dev-a/attest", "bad signature") in kinds
    assert kinds[("zigbee2mqtt/lamp", None)]["fields"]["json"] == {"state": "OFF", "brightness": 3}
    assert kinds[("foo/bar", None)]["kind"] == "binary"
    assert kinds[("foo/bar", None)]["fields"]["hex"] == blob[:24].hex() + ".."
    assert all(r["device"] is None for r in rows if not r["topic"].startswith("edgepoi/"))


def test_plain_topic_filter_and_count(broker, capsys):
    publish_all(broker.url, [("site/a/temp", b"21.5"), ("site/b/temp", b"19"), ("other/x", b"1")],
                retain=True)
    assert console_cli.main(["--broker", broker.url, "--topic", "site/+/temp", "--plain",
                             "--count", "2", "--seconds", "10"]) == 0
    rows = parse(capsys.readouterr().out)
    assert sorted((t, k, kv["json"]) for t, k, kv in rows) == [
        ("site/a/temp", "json", "21.5"), ("site/b/temp", "json", "19")]


def test_errors_are_one_line_and_exit_status_1(tmp_path, capsys):
    assert console_cli.main(["--broker", "http://x", "--plain"]) == 1
    assert console_cli.main(["--broker", "mqtt://127.0.0.1:1", "--keys", str(tmp_path / "nope"),
                             "--plain"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(e.startswith("edgepoi console: ") for e in err)
    assert "mqtt://" in err[0] and "not a folder" in err[1]


def test_unreachable_broker_is_reported_not_fatal(capsys):
    from edgepoi_host.runtime.broker import free_port
    url = "mqtt://127.0.0.1:%d" % free_port()
    assert console_cli.main(["--broker", url, "--plain", "--seconds", "1.5"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "cannot reach" in captured.err
