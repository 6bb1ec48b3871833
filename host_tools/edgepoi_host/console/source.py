"""The console's MQTT side: a paho-mqtt client in its own thread that decodes every message and hands
Records over through a queue; it reconnects by itself when the broker goes away and comes back.

Usage::

    from edgepoi_host.console.source import Source
    src = Source("mqtt://127.0.0.1:1883", topics=DEFAULT_TOPICS, keys=keyring).start()
    for rec in src.drain(): print(rec.line())      # non-blocking; or src.get(timeout)
    src.state          # "connecting", "connected", "disconnected: <reason>", "refused: <reason>"
    src.stop()
"""
import queue
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from edgepoi_host.console import decode
from edgepoi_host.edge.ingest import parse_broker_url

DEFAULT_TOPICS = ("edgepoi/v1/#", "homeassistant/#")
ALL_TOPICS = ("#",)


class Source:
    """Subscribes to ``topics`` at ``url``; decoded Records queue up for the reader (app or plain).

    Args:
        url: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS, with ``cafile``).
        topics: topic filters to subscribe to (QoS 1).
        keys: a decode.KeyRing (or None: attestations are shown ``unchecked``).
        username, password, cafile: broker credentials and CA for TLS.
        max_queue: records beyond this many unread are dropped (counted in ``dropped``).
    """

    def __init__(self, url, topics=DEFAULT_TOPICS, keys=None, username=None, password=None,
                 cafile=None, max_queue=100000):
        self.host, self.port, u = parse_broker_url(url)
        self.url = url
        self.topics = list(topics)
        self.keys = keys
        self.queue = queue.Queue(max_queue)
        self.dropped = 0
        self.state = "connecting"
        self.connects = 0
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id="edgepoi-console-" + uuid.uuid4().hex[:8],
                                  protocol=mqtt.MQTTv311, clean_session=True)
        if username is not None:
            self.client.username_pw_set(username, password)
        if u.scheme == "mqtts" or cafile:
            self.client.tls_set(ca_certs=cafile)
        self.client.reconnect_delay_set(0.2, 5.0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail

    def start(self):
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()
        return self

    def stop(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # -- paho thread -----------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self.state = "refused: %s" % reason_code
            return
        client.subscribe([(t, 1) for t in self.topics])
        self.connects += 1
        self.state = "connected"
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.connected.clear()
        self.state = "disconnected" if not reason_code.is_failure else "disconnected: %s" % reason_code

    def _on_connect_fail(self, client, userdata):
        self.connected.clear()
        self.state = "disconnected: cannot reach %s:%d" % (self.host, self.port)

    def _on_message(self, client, userdata, msg):
        rec = decode.decode(msg.topic, msg.payload, self.keys, time.time(), msg.retain)
        try:
            self.queue.put_nowait(rec)
        except queue.Full:
            self.dropped += 1

    # -- reader side -----------------------------------------------------------------------------
    def get(self, timeout=None):
        """The next Record, or None after timeout seconds."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, limit=100000):
        """Every Record waiting now (at most limit), without blocking."""
        out = []
        while len(out) < limit:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return out
