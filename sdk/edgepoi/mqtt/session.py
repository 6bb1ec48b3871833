"""MQTT 3.1.1 client session, sans-I/O: packet ids, QoS 1 in-flight tracking, keepalive timers.

The session never touches a socket or a clock: callers pass ``now_ms`` in and send the bytes it returns.

Usage::

    s = Session("dev-1", keepalive=30, will=(...), clean_session=False)
    out = s.connect(now)                      # bytes to send
    events = s.receive(packet_tuple, now)     # packets from codec.Decoder → events
    out = s.publish(topic, payload, qos=1, now=now, tag=rec_id)
    out = s.tick(now)                         # a PINGREQ when keepalive is due (or b"")
    if s.dead(now): ...                       # the broker went silent: drop the connection

Events (tuples): ("connected", session_present), ("acked", tag), ("message", topic, payload, retain),
("subscribed", packet_id, codes).
"""
from edgepoi.mqtt import codec
from edgepoi.mqtt.codec import MQTTProtocolError

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_DISCONNECTED = const(0)
_CONNECTING = const(1)
CONNECTED = const(2)  # Session.state values (only this one is looked at from outside)

# the packet types the session handles (edgepoi.mqtt.packets names them)
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_SUBACK = const(9)
_PINGRESP = const(13)


class Session:
    def __init__(self, client_id, keepalive=30, will=None, username=None, password=None,
                 clean_session=False):
        self.client_id = client_id
        self.keepalive = keepalive
        self.will = will
        self.username = username
        self.password = password
        self.clean_session = clean_session
        self.state = _DISCONNECTED
        self.inflight = {}        # packet id -> tag, for QoS 1 publishes awaiting PUBACK
        self._pid = 0
        self._last_tx = 0
        self._last_rx = 0
        self._ping_sent = False

    def _next_pid(self):
        for _ in range(65535):
            self._pid = self._pid % 65535 + 1
            if self._pid not in self.inflight:
                return self._pid
        raise MQTTProtocolError("all 65535 packet ids are in flight")

    def connect(self, now):
        self.state = _CONNECTING
        self.inflight = {}
        self._last_tx = self._last_rx = now
        self._ping_sent = False
        return codec.encode_connect(self.client_id, self.keepalive, self.clean_session, self.will,
                                    self.username, self.password)

    def lost(self):
        """The transport went away: whatever was in flight must be resent by the owner."""
        self.state = _DISCONNECTED
        tags = list(self.inflight.values())
        self.inflight = {}
        return tags

    def publish(self, topic, payload, qos=0, retain=False, now=0, tag=None, dup=False):
        """The PUBLISH packet's bytes (a QoS 1 one is in flight, with ``tag``, until its PUBACK)."""
        out = bytearray(self.publish_head(topic, len(payload), qos, retain, now, tag, dup))
        out.extend(payload)
        return out

    def publish_head(self, topic, length, qos=0, retain=False, now=0, tag=None, dup=False):
        """As publish, but only the bytes before a payload of ``length`` bytes (sent right after them)."""
        if self.state != CONNECTED:
            raise MQTTProtocolError("publish while not connected")
        pid = 0
        if qos:
            pid = self._next_pid()
            self.inflight[pid] = tag
        self._last_tx = now
        return codec.encode_publish_header(topic, length, qos, retain, pid, dup)

    def subscribe(self, topics, now=0):
        pid = self._next_pid()
        self._last_tx = now
        return pid, codec.encode_subscribe(pid, topics)

    def tick(self, now):
        """Bytes to send for keepalive (a PINGREQ when half the keepalive passed without sending)."""
        if self.state == CONNECTED and self.keepalive and not self._ping_sent and \
                now - self._last_tx >= self.keepalive * 500:
            self._ping_sent = True
            self._last_tx = now
            return codec.PINGREQ_BYTES
        return b""

    def dead(self, now):
        """True when the broker has been silent for 1.5 keepalives (or never answered CONNECT)."""
        limit = (self.keepalive or 30) * 1500
        return self.state != _DISCONNECTED and now - self._last_rx > limit

    def receive(self, pkt, now):
        """Handle one packet from the broker. Returns (events, bytes_to_send)."""
        self._last_rx = now
        kind = pkt[0]
        if self.state == _CONNECTING:
            if kind != _CONNACK:
                raise MQTTProtocolError("expected CONNACK, got packet type %d" % kind)
            if pkt[2] != 0:
                self.state = _DISCONNECTED
                return [("refused", pkt[2])], b""
            self.state = CONNECTED
            return [("connected", pkt[1])], b""
        if kind == _PUBACK:
            if pkt[1] not in self.inflight:
                return [], b""  # a late PUBACK for something resent after a reconnect
            return [("acked", self.inflight.pop(pkt[1]))], b""
        if kind == _PUBLISH:
            out = codec.encode_puback(pkt[6]) if pkt[3] == 1 else b""
            if pkt[3] == 2:
                raise MQTTProtocolError("QoS 2 delivery is not supported by this client")
            return [("message", pkt[1], pkt[2], pkt[4])], out
        if kind == _PINGRESP:
            self._ping_sent = False
            return [], b""
        if kind == _SUBACK:
            return [("subscribed", pkt[1], pkt[2])], b""
        raise MQTTProtocolError("unexpected packet type %d in session" % kind)
