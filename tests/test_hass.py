"""Home Assistant discovery against the real Mosquitto: retained configs, JSON state, availability,
republish on homeassistant/status online. Templates are rendered with Jinja2 (HA's template engine)."""
import json
import queue
import time

import jinja2
import paho.mqtt.client as mqtt
import pytest

from edgepoi import cbor
from edgepoi_host.edge.hass import HassBridge

FIELDS = ["temp_c", "humidity", "anomaly"]
CONFIG_TOPICS = {"homeassistant/sensor/dev-1_temp_c/config", "homeassistant/sensor/dev-1_humidity/config",
                 "homeassistant/binary_sensor/dev-1_anomaly/config"}


class Sub:
    def __init__(self, broker, topics, will=None, cid=None):
        self.q = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid or "", protocol=mqtt.MQTTv311)
        if will:
            self.c.will_set(will, b"offline", qos=1, retain=True)
        self.c.on_message = lambda c, u, m: self.q.put((m.topic, bytes(m.payload), m.retain))
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        for t in topics:
            self.c.subscribe(t, qos=1)

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def until(self, topic, timeout=5.0):
        out = []
        deadline = time.monotonic() + timeout
        while True:
            m = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            out.append(m)
            if m[0] == topic:
                return out

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def bridge(broker):
    b = HassBridge(broker.url, client_id="hass-test").start()
    yield b
    b.stop()


def render(template, state):
    return jinja2.Environment().from_string(template).render(value_json=state)


def retained_configs(broker, sentinel="edgepoi/v1/dev-1/state"):
    s = Sub(broker, ["homeassistant/#", sentinel])
    try:
        return dict((t, (p, r)) for t, p, r in s.until(sentinel) if t.startswith("homeassistant/"))
    finally:
        s.close()


def test_discovery_configs_are_retained_and_point_at_the_json_state(broker, bridge):
    bridge.announce("dev-1", FIELDS, model="esp32-s3", sw_version="0.1.0")
    state = {"temp_c": 21.5, "humidity": 40.25, "anomaly": 1}
    bridge.publish_state("dev-1", state)
    bridge.flush()
    got = retained_configs(broker)
    assert set(got) == CONFIG_TOPICS and all(r for _p, r in got.values())
    for topic, (payload, _r) in got.items():
        cfg = json.loads(payload)
        field = topic.split("/")[2][len("dev-1_"):]
        assert cfg["unique_id"] == "edgepoi_dev-1_" + field
        assert cfg["device"] == {"identifiers": ["edgepoi_dev-1"], "name": "dev-1", "model": "esp32-s3",
                                 "manufacturer": "edgepoi", "sw_version": "0.1.0"}
        assert cfg["state_topic"] == "edgepoi/v1/dev-1/state"
        assert (cfg["availability_topic"], cfg["payload_available"], cfg["payload_not_available"]) == (
            "edgepoi/v1/dev-1/status", "online", "offline")
        shown = render(cfg["value_template"], state)
        if field == "anomaly":
            assert shown == cfg["payload_on"] == "ON"
            assert render(cfg["value_template"], dict(state, anomaly=0)) == cfg["payload_off"]
        else:
            assert float(shown) == state[field]
    temp = json.loads(got["homeassistant/sensor/dev-1_temp_c/config"][0])
    assert (temp["device_class"], temp["unit_of_measurement"]) == ("temperature", "°C")
    s = Sub(broker, ["edgepoi/v1/dev-1/state"])
    topic, payload, retained = s.until("edgepoi/v1/dev-1/state")[-1]
    assert retained and json.loads(payload) == state
    bridge.publish_state("dev-1", {"temp_c": 22.0})            # a partial reading keeps the other keys
    assert json.loads(s.until("edgepoi/v1/dev-1/state")[-1][1]) == dict(state, temp_c=22.0)
    s.close()


def test_availability_follows_the_devices_status_and_last_will(broker, bridge):
    bridge.announce("dev-1", FIELDS)
    bridge.flush()
    cfg = json.loads(retained_configs(broker, "homeassistant/sensor/dev-1_temp_c/config")[
        "homeassistant/sensor/dev-1_temp_c/config"][0])
    ha = Sub(broker, [cfg["availability_topic"]])
    device = Sub(broker, [], will="edgepoi/v1/dev-1/status", cid="dev-1")
    device.publish("edgepoi/v1/dev-1/status", b"online", retain=True)
    assert ha.until(cfg["availability_topic"])[-1][1] == cfg["payload_available"].encode()
    device.c.socket().close()           # the device drops off the network: the broker sends its will
    assert ha.until(cfg["availability_topic"], timeout=10)[-1][1] == cfg["payload_not_available"].encode()
    device.c.loop_stop()
    ha.close()


def test_configs_are_republished_when_home_assistant_comes_online(broker, bridge):
    bridge.announce("dev-1", FIELDS)
    bridge.publish_state("dev-1", {"temp_c": 20.0, "humidity": 50.0, "anomaly": 0})
    bridge.flush()
    ha = Sub(broker, [], cid="ha")
    for t in CONFIG_TOPICS:            # a broker that lost its retained store (no persistence)
        ha.publish(t, b"", retain=True)
    ha.publish("edgepoi/v1/dev-1/state", b"", retain=True)
    ha.publish("edgepoi/v1/sentinel", b"x", retain=True)
    assert retained_configs(broker, "edgepoi/v1/sentinel") == {}
    ha.publish("homeassistant/status", b"offline")
    ha.publish("homeassistant/status", b"online")
    deadline = time.monotonic() + 5
    while bridge.counters["republished"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bridge.counters["republished"] == 1      # "offline" did not count
    bridge.flush()
    got = retained_configs(broker)
    assert set(got) == CONFIG_TOPICS and all(r and p for p, r in got.values())
    ha.close()


def test_follow_telemetry_announces_devices_and_converts_cbor_to_json(broker):
    b = HassBridge(broker.url, client_id="hass-follow", follow_telemetry=True).start()
    try:
        dev = Sub(broker, [], cid="dev-7")
        readings = {"temp_c": 19.75, "humidity": 61.5}
        dev.publish("edgepoi/v1/dev-7/telemetry", cbor.dumps({"dev": "dev-7", "seq": 1, "ts": 1700000000,
                                                              "readings": readings}))
        dev.publish("edgepoi/v1/dev-7/telemetry", b"\xff not cbor")
        s = Sub(broker, ["edgepoi/v1/dev-7/state", "homeassistant/#"])
        seen = dict((t, p) for t, p, _r in s.until("edgepoi/v1/dev-7/state"))
        assert json.loads(seen["edgepoi/v1/dev-7/state"]) == readings
        deadline = time.monotonic() + 5
        while b.counters["bad_telemetry"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b.counters["bad_telemetry"] == 1 and set(b.announced) == {"dev-7"}
        b.flush()
        s.close()
        got = retained_configs(broker, "edgepoi/v1/dev-7/state")
        assert set(got) == {"homeassistant/sensor/dev-7_temp_c/config",
                            "homeassistant/sensor/dev-7_humidity/config"}
        dev.close()
    finally:
        b.stop()


def test_remove_withdraws_the_entities(broker, bridge):
    bridge.announce("dev-1", FIELDS)
    bridge.flush()
    bridge.remove("dev-1")
    bridge.publish_state("dev-2", {"temp_c": 1.0})
    bridge.flush()
    assert retained_configs(broker, "edgepoi/v1/dev-2/state") == {}


def test_hass_command_runs_the_bridge(broker):
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "edgepoi_host.edge.edge_cli", "hass", "--broker",
                             broker.url, "--seconds", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "Home Assistant bridge" in proc.stdout.readline()
        dev = Sub(broker, [], cid="dev-9")
        dev.publish("edgepoi/v1/dev-9/telemetry", cbor.dumps({"dev": "dev-9", "seq": 1, "ts": 1700000000,
                                                              "readings": {"humidity": 33.0}}))
        s = Sub(broker, ["edgepoi/v1/dev-9/state"])
        assert json.loads(s.until("edgepoi/v1/dev-9/state")[-1][1]) == {"humidity": 33.0}
        s.close()
        dev.close()
        proc.send_signal(signal.SIGINT)                 # Ctrl-C: flush, stop, print the counters
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["states"] == 1
    finally:
        proc.kill()
        proc.wait()
