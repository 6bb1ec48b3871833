"""Home Assistant MQTT discovery for edgepoi devices, with a JSON state topic HA can read.

Usage::

    from edgepoi_host.edge.hass import HassBridge
    bridge = HassBridge("mqtt://127.0.0.1:1883", username="edge", password="...").start()
    bridge.announce("dev-1", ["temp_c", "humidity", "anomaly"], model="esp32-s3", sw_version="0.1.0")
    bridge.publish_state("dev-1", {"temp_c": 21.5, "humidity": 40.2, "anomaly": 0})
    bridge.stop()

Telemetry is CBOR, which Home Assistant's MQTT integration cannot parse, so the bridge republishes each
device's latest readings as retained JSON at ``edgepoi/v1/<id>/state`` and every discovery config points
there (``value_template: {{ value_json.<field> }}``). Configs are retained at
``homeassistant/<sensor|binary_sensor>/<id>_<field>/config``; availability is the device's own retained
``edgepoi/v1/<id>/status`` (``online``/``offline``, the latter its Last Will). When HA announces
``online`` on ``homeassistant/status`` (it restarted), every config and state is published again.
With ``follow_telemetry=True`` the bridge also subscribes to device telemetry, announces devices and
fields as they appear and keeps their state topics current (``edgepoi edge hass``).
"""
import json
import logging
import re
import threading

import paho.mqtt.client as mqtt

from edgepoi_host.edge.ingest import parse_broker_url

log = logging.getLogger("edgepoi.hass")
ROOT = "edgepoi/v1"

# Known fields: HA metadata. Anything else numeric becomes a plain measurement sensor.
FIELDS = {
    "temp_c": {"device_class": "temperature", "unit_of_measurement": "°C"},
    "humidity": {"device_class": "humidity", "unit_of_measurement": "%"},
    "pressure_hpa": {"device_class": "pressure", "unit_of_measurement": "hPa"},
    "battery": {"device_class": "battery", "unit_of_measurement": "%"},
    "anomaly_score": {},
    "anomaly": {"binary": True, "device_class": "problem"},
    "inference_anomaly": {"binary": True, "device_class": "problem"},
}
_OBJ = re.compile(r"[^A-Za-z0-9_-]")


def object_id(device_id, field):
    return _OBJ.sub("_", "%s_%s" % (device_id, field))


def discovery_messages(device_id, fields, model="edgepoi device", sw_version=None, name=None,
                       prefix="homeassistant"):
    """[(topic, config dict)] for one device. fields: names, or {name: metadata} (metadata keys:
    binary, device_class, unit_of_measurement, name)."""
    if not isinstance(fields, dict):
        fields = dict((f, {}) for f in fields)
    device = {"identifiers": ["edgepoi_" + device_id], "name": name or device_id, "model": model,
              "manufacturer": "edgepoi"}
    if sw_version:
        device["sw_version"] = sw_version
    out = []
    for field in sorted(fields):
        meta = dict(FIELDS.get(field, {}))
        meta.update(fields[field] or {})
        binary = meta.pop("binary", False)
        oid = object_id(device_id, field)
        cfg = {"name": meta.pop("name", field.replace("_", " ")), "unique_id": "edgepoi_" + oid,
               "object_id": oid, "state_topic": "%s/%s/state" % (ROOT, device_id),
               "availability_topic": "%s/%s/status" % (ROOT, device_id),
               "payload_available": "online", "payload_not_available": "offline", "device": device}
        if binary:
            cfg["value_template"] = "{{ 'ON' if (value_json.%s | float(0)) > 0.5 else 'OFF' }}" % field
            cfg["payload_on"], cfg["payload_off"] = "ON", "OFF"
            component = "binary_sensor"
        else:
            cfg["value_template"] = "{{ value_json.%s }}" % field
            cfg["state_class"] = "measurement"
            component = "sensor"
        cfg.update(meta)
        out.append(("%s/%s/%s/config" % (prefix, component, oid), cfg))
    return out


class HassBridge:
    """A paho client that keeps Home Assistant's view of edgepoi devices current (see module doc)."""

    def __init__(self, broker_url, username=None, password=None, cafile=None, client_id="edgepoi-hass",
                 prefix="homeassistant", follow_telemetry=False):
        self.host, self.port, u = parse_broker_url(broker_url)
        self.prefix = prefix
        self.follow = follow_telemetry
        self.announced = {}      # device_id -> kwargs of discovery_messages
        self.states = {}         # device_id -> last readings
        self.counters = {"announced": 0, "states": 0, "republished": 0, "bad_telemetry": 0}
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._pending = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311)
        if username or u.username:
            self.client.username_pw_set(username or u.username, password or u.password)
        if cafile or u.scheme == "mqtts":
            self.client.tls_set(ca_certs=cafile)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 5.0)

    def start(self, wait=10.0):
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            raise ConnectionError("Home Assistant bridge could not reach %s:%d" % (self.host, self.port))
        return self

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def flush(self, timeout=10.0):
        """Wait until everything published so far is acknowledged by the broker (QoS 1)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for info in pending:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise TimeoutError("broker did not acknowledge a Home Assistant message")

    def _publish(self, topic, payload):
        info = self.client.publish(topic, payload, qos=1, retain=True)
        with self._lock:
            self._pending.append(info)
            if len(self._pending) > 10000:
                self._pending = [i for i in self._pending if not i.is_published()]

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.warning("broker refused the Home Assistant bridge: %s", reason_code)
            return
        subs = [(self.prefix + "/status", 1)]
        if self.follow:
            subs.append((ROOT + "/+/telemetry", 1))
        client.subscribe(subs)
        self.republish()      # a broker restart without persistence loses retained configs
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        try:
            if msg.topic == self.prefix + "/status":
                if bytes(msg.payload) == b"online":
                    self.republish()
                    self.counters["republished"] += 1
            elif self.follow:
                self._telemetry(msg.topic, bytes(msg.payload))
        except Exception:  # noqa: BLE001 - a bad message never stops the bridge
            self.counters["bad_telemetry"] += 1
            log.exception("dropped message on %s", msg.topic)

    def _telemetry(self, topic, payload):
        from edgepoi_host.edge import validate
        try:
            dev, kind = validate.parse_topic(topic)
            readings = validate.telemetry(dev, payload)["readings"]
        except validate.Rejected:
            self.counters["bad_telemetry"] += 1
            return
        known = self.announced.get(dev)
        fields = set(readings)
        if known is None or not fields <= set(known["fields"]):
            self.announce(dev, sorted(fields | set(known["fields"] if known else ())))
        self.publish_state(dev, readings)

    def announce(self, device_id, fields, model="edgepoi device", sw_version=None, name=None):
        """Publish (retained) the discovery configs of device_id's fields; remembered for republish."""
        kw = {"fields": fields if isinstance(fields, dict) else list(fields), "model": model,
              "sw_version": sw_version, "name": name}
        with self._lock:
            self.announced[device_id] = kw
        self._publish_configs(device_id, kw)
        self.counters["announced"] += 1

    def _publish_configs(self, device_id, kw):
        for topic, cfg in discovery_messages(device_id, prefix=self.prefix, **kw):
            self._publish(topic, json.dumps(cfg, sort_keys=True))

    def publish_state(self, device_id, readings):
        """Publish the device's readings as retained JSON at edgepoi/v1/<id>/state. Fields missing from
        ``readings`` keep their last value, so every announced entity always finds its key."""
        with self._lock:
            state = dict(self.states.get(device_id, {}))
            state.update(readings)
            self.states[device_id] = state
        self._publish("%s/%s/state" % (ROOT, device_id), json.dumps(state, sort_keys=True))
        self.counters["states"] += 1

    def remove(self, device_id):
        """Withdraw a device from Home Assistant (empty retained configs delete the entities)."""
        with self._lock:
            kw = self.announced.pop(device_id, None)
            self.states.pop(device_id, None)
        if kw:
            for topic, _cfg in discovery_messages(device_id, prefix=self.prefix, **kw):
                self._publish(topic, b"")

    def republish(self):
        """Publish every known config and state again (HA came back online)."""
        with self._lock:
            announced = list(self.announced.items())
            states = list(self.states.items())
        for device_id, kw in announced:
            self._publish_configs(device_id, kw)
        for device_id, state in states:
            self._publish("%s/%s/state" % (ROOT, device_id), json.dumps(state, sort_keys=True))
