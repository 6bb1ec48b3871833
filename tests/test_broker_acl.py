"""Broker security against the real Mosquitto: password file, per-device ACL, TLS with the node's own CA."""
import queue
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from edgepoi_host.edge import broker_security as bs
from edgepoi_host.runtime.broker import Mosquitto, free_port

USERS = {"edge": "edge-pw-1", "dev-a": "a-pw-1", "dev-b": "b-pw-1", "hass": "ha-pw-1"}


class Client:
    """A paho client that records CONNACK, SUBACK and messages (test helper)."""

    def __init__(self, port, user, password, tls=None, cid=None, certfile=None, keyfile=None):
        self.msgs = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.events = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid or "t-%s-%d" % (user, port),
                             protocol=mqtt.MQTTv311)
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls:
            self.c.tls_set(ca_certs=tls, certfile=certfile, keyfile=keyfile)
        self.c.on_connect = lambda c, u, f, rc, p=None: self.connack.put(rc)
        self.c.on_message = lambda c, u, m: self.msgs.put((m.topic, bytes(m.payload), m.retain))
        self.c.on_subscribe = lambda c, u, mid, rcs, p=None: self.subacks.put([int(r.value) for r in rcs])
        self.c.on_publish = lambda c, u, mid, rc, p=None: self.events.put("puback")
        self.c.on_disconnect = lambda c, u, f, rc, p=None: self.events.put("disconnected")
        self.c.reconnect_delay_set(60, 120)
        self.port = port

    def connect(self, host="127.0.0.1"):
        self.c.connect(host, self.port, keepalive=10)
        self.c.loop_start()
        rc = self.connack.get(timeout=10)
        if rc.is_failure:
            self.c.loop_stop()
        return rc

    def subscribe(self, topic):
        self.c.subscribe(topic, qos=1)
        return self.subacks.get(timeout=5)

    def publish(self, topic, payload, retain=False):
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)

    def refused(self, host="127.0.0.1"):
        """True when the broker (or TLS) turns this client away: an error, a failed CONNACK, or the
        connection closed before any CONNACK."""
        try:
            self.c.connect(host, self.port, keepalive=10)
        except OSError:        # ssl.SSLError is an OSError
            return True
        self.c.loop_start()
        try:
            first = self.events.get(timeout=5)
        except queue.Empty:
            return False
        finally:
            self.c.loop_stop()
        if first != "disconnected":
            return False
        return self.connack.empty() or self.connack.get().is_failure

    def attempt(self, topic, payload):
        """Publish at QoS 1 and wait until the broker has dealt with it: PUBACK, or it dropped us."""
        self.c.publish(topic, payload, qos=1)
        return self.events.get(timeout=5)

    def until(self, topic, timeout=5.0):
        """All messages received up to and including the first one on ``topic``."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            t, p, r = self.msgs.get(timeout=max(0.01, deadline - time.monotonic()))
            seen.append((t, p))
            if t == topic:
                return seen

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def secured(tmp_path):
    """A Mosquitto with generated password file, ACL, and a TLS listener from the generated CA."""
    d = tmp_path / "sec"
    pw = str(d / "passwd")
    bs.write_password_file(pw, {"edge": USERS["edge"], "dev-a": USERS["dev-a"], "hass": USERS["hass"]},
                           use_tool=True)
    with open(pw, "a") as f:   # dev-b's entry from the pure-Python path: the broker must accept both
        f.write("\n".join(bs.password_entries({"dev-b": USERS["dev-b"]}, use_tool=False)) + "\n")
    acl = str(d / "acl")
    with open(acl, "w") as f:
        f.write(bs.acl_text([("dev-a", "dev-a"), ("dev-b", "dev-b")], edge_user="edge", hass_user="hass"))
    tls = bs.make_tls(str(d / "tls"), clients=["dev-a"])
    tls_port = free_port()
    extra = bs.auth_config(pw, acl) + bs.listener_config(tls_port, "127.0.0.1", tls)
    broker = Mosquitto(workdir=str(tmp_path / "mosq"), extra_config=extra, anonymous=False)
    broker.start()
    broker.tls_port = tls_port
    broker.tls = tls
    clients = []

    def client(user, **kw):
        c = Client(kw.pop("port", broker.port), user, USERS.get(user) if "password" not in kw
                   else kw.pop("password"), **kw)
        clients.append(c)
        return c

    broker.client = client
    try:
        yield broker
    finally:
        for c in clients:
            c.close()
        broker.close()


def test_password_file_entries_use_mosquittos_pbkdf2_format():
    tool = bs.password_entries({"u": "secret"}, use_tool=True)[0]
    mine = bs.password_entries({"u": "secret"}, use_tool=False)[0]
    for entry in (tool, mine):
        user, h = entry.split(":", 1)
        assert user == "u" and h.startswith("$7$101$")
        assert bs.check_password(h, "secret")
        assert not bs.check_password(h, "Secret")
    assert tool != mine   # fresh salts


def test_device_publishes_own_topics_but_not_another_devices(secured):
    edge = secured.client("edge")
    assert not edge.connect().is_failure
    assert edge.subscribe("edgepoi/v1/#") == [1]
    forbidden = [("edgepoi/v1/dev-b/telemetry", b"forged by a"), ("edgepoi/v1/dev-b/status", b"offline"),
                 ("edgepoi/v1/edge/beacon", b"fake beacon"), ("edgepoi/v1/dev-a/config", b"self config"),
                 ("edgepoi/v1/dev-b/cmd/x/result", b"b's result"), ("edgepoi/v1/dev-a/state", b"{}")]
    for topic, payload in forbidden:      # Mosquitto 2.0 drops a v3.1.1 client whose publish it denies
        a = secured.client("dev-a")
        assert not a.connect().is_failure
        assert a.attempt(topic, payload) in ("puback", "disconnected")
        a.close()
    a = secured.client("dev-a")
    assert not a.connect().is_failure
    assert a.attempt("edgepoi/v1/dev-a/cmd/reveal/result", b"result") == "puback"
    a.publish("edgepoi/v1/dev-a/telemetry", b"own telemetry")
    seen = edge.until("edgepoi/v1/dev-a/telemetry")
    assert seen == [("edgepoi/v1/dev-a/cmd/reveal/result", b"result"),
                    ("edgepoi/v1/dev-a/telemetry", b"own telemetry")]
    b = secured.client("dev-b")
    assert not b.connect().is_failure
    b.publish("edgepoi/v1/dev-b/telemetry", b"b's own")
    assert edge.until("edgepoi/v1/dev-b/telemetry") == [("edgepoi/v1/dev-b/telemetry", b"b's own")]


def test_device_reads_only_its_own_commands_and_the_beacon(secured):
    edge = secured.client("edge")
    a = secured.client("dev-a")
    b = secured.client("dev-b")
    assert not edge.connect().is_failure and not a.connect().is_failure and not b.connect().is_failure
    # Mosquitto 2.0 grants these SUBACKs; the ACL's read rules filter each delivery instead.
    for topic in ("edgepoi/v1/#", "edgepoi/v1/dev-b/cmd/#", "edgepoi/v1/dev-a/cmd/#"):
        a.subscribe(topic)
    edge.publish("edgepoi/v1/dev-b/cmd/reveal", b"for b")
    edge.publish("edgepoi/v1/dev-b/config", b"b's config", retain=True)
    b.publish("edgepoi/v1/dev-b/telemetry", b"b's telemetry")
    edge.publish("edgepoi/v1/edge/beacon", b"beacon", retain=True)
    edge.publish("edgepoi/v1/dev-a/config", b"cfg", retain=True)
    edge.publish("edgepoi/v1/dev-b/ack", b"b's ack")
    edge.publish("edgepoi/v1/dev-a/ack", b"a's ack")       # the edge node's store acknowledgements
    edge.publish("edgepoi/v1/dev-a/cmd/reveal", b"for a")
    got = set(a.until("edgepoi/v1/dev-a/cmd/reveal"))
    assert got == {("edgepoi/v1/edge/beacon", b"beacon"), ("edgepoi/v1/dev-a/config", b"cfg"),
                   ("edgepoi/v1/dev-a/ack", b"a's ack"), ("edgepoi/v1/dev-a/cmd/reveal", b"for a")}
    late = secured.client("dev-a", cid="late-a")           # retained messages obey the ACL too
    assert not late.connect().is_failure
    late.subscribe("edgepoi/v1/+/config")
    late.subscribe("edgepoi/v1/dev-a/cmd/#")
    edge.publish("edgepoi/v1/dev-a/cmd/ping", b"sentinel")
    assert set(late.until("edgepoi/v1/dev-a/cmd/ping")) == {("edgepoi/v1/dev-a/config", b"cfg"),
                                                            ("edgepoi/v1/dev-a/cmd/ping", b"sentinel")}


def test_home_assistant_flow_works_under_the_acl(secured):
    from edgepoi import cbor
    from edgepoi_host.edge.hass import HassBridge
    bridge = HassBridge(secured.url, username="edge", password=USERS["edge"], follow_telemetry=True).start()
    try:
        ha = secured.client("hass")
        assert not ha.connect().is_failure
        for t in ("homeassistant/#", "edgepoi/v1/+/state", "edgepoi/v1/+/status", "edgepoi/v1/+/telemetry"):
            ha.subscribe(t)
        a = secured.client("dev-a")
        assert not a.connect().is_failure
        a.publish("edgepoi/v1/dev-a/status", b"online", retain=True)
        a.publish("edgepoi/v1/dev-a/telemetry", cbor.dumps({"dev": "dev-a", "seq": 1, "ts": 1700000000,
                                                            "readings": {"temp_c": 20.5}}))
        seen = ha.until("edgepoi/v1/dev-a/state")
        topics = [t for t, _p in seen]
        assert "edgepoi/v1/dev-a/telemetry" not in topics          # HA reads JSON state, not CBOR
        assert "homeassistant/sensor/dev-a_temp_c/config" in topics
        assert ("edgepoi/v1/dev-a/status", b"online") in seen
        ha.publish("homeassistant/status", b"online")
        got = ha.until("homeassistant/sensor/dev-a_temp_c/config")  # republished for HA
        assert got[-1][1] and bridge.counters["republished"] == 1
        assert ha.attempt("homeassistant/sensor/evil/config", b"{}") in ("puback", "disconnected")
        ha.close()
        ha2 = secured.client("hass", cid="ha2")
        assert not ha2.connect().is_failure
        ha2.subscribe("homeassistant/sensor/evil/config")
        ha2.subscribe("homeassistant/sensor/dev-a_temp_c/config")
        assert [t for t, _p in ha2.until("homeassistant/sensor/dev-a_temp_c/config")] == [
            "homeassistant/sensor/dev-a_temp_c/config"]                 # HA cannot plant configs
    finally:
        bridge.stop()


def test_wrong_password_unknown_user_and_anonymous_are_refused(secured):
    assert secured.client("dev-a", password="not-it").connect().is_failure
    assert secured.client("dev-a", password=USERS["dev-b"]).connect().is_failure
    assert secured.client("nobody", password="x").connect().is_failure
    assert secured.client(None, password=None).connect().is_failure
    assert not secured.client("dev-b").connect().is_failure     # the Python-hashed entry works


def test_tls_with_the_generated_ca_works_and_without_it_fails(secured):
    edge = secured.client("edge", port=secured.tls_port, tls=secured.tls["cafile"])
    assert not edge.connect().is_failure
    assert edge.subscribe("edgepoi/v1/+/telemetry") == [1]
    a = secured.client("dev-a", port=secured.tls_port, tls=secured.tls["cafile"])
    assert not a.connect(host="localhost").is_failure          # SAN carries localhost too
    a.publish("edgepoi/v1/dev-a/telemetry", b"over tls")
    assert edge.until("edgepoi/v1/dev-a/telemetry") == [("edgepoi/v1/dev-a/telemetry", b"over tls")]
    stranger = Client(secured.tls_port, "dev-a", USERS["dev-a"], cid="no-ca")
    stranger.c.tls_set()                          # system CAs only: our CA is unknown to them
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.c.connect("127.0.0.1", secured.tls_port)
    plain = secured.client("dev-a", port=secured.tls_port)       # no TLS at all on a TLS listener
    assert plain.refused()


def test_client_certificates_are_required_when_configured(tmp_path):
    tls = bs.make_tls(str(tmp_path / "tls"), clients=["dev-a"])
    again = bs.make_tls(str(tmp_path / "tls"))                   # the CA is reused, not replaced
    assert open(again["cafile"]).read() == open(tls["cafile"]).read()
    pw, acl = str(tmp_path / "pw"), str(tmp_path / "acl")
    bs.write_password_file(pw, USERS)
    open(acl, "w").write(bs.acl_text([("dev-a", "dev-a")]))
    port = free_port()
    broker = Mosquitto(workdir=str(tmp_path / "m"), anonymous=False,
                       extra_config=bs.auth_config(pw, acl)
                       + bs.listener_config(port, "127.0.0.1", tls, True))
    broker.start()
    try:
        cert, key = tls["clients"]["dev-a"]
        good = Client(port, "dev-a", USERS["dev-a"], tls=tls["cafile"], certfile=cert, keyfile=key)
        assert not good.connect().is_failure
        good.close()
        bare = Client(port, "dev-a", USERS["dev-a"], tls=tls["cafile"], cid="bare")
        assert bare.refused()
    finally:
        broker.close()


def test_acl_refuses_names_that_could_widen_a_rule():
    for bad in ("a/b", "+", "#", "dev a", "x:y", ""):
        with pytest.raises(bs.BrokerSecurityError):
            bs.acl_text([(bad, "dev-1")])
        with pytest.raises(bs.BrokerSecurityError):
            bs.device_rules(bad)
    config = bs.mosquitto_config(8883, "0.0.0.0", "/p", "/a",
                                 {"cafile": "c", "certfile": "s", "keyfile": "k"})
    assert "allow_anonymous false" in config and "listener 8883 0.0.0.0" in config
    assert "certfile s" in config and "acl_file /a" in config
