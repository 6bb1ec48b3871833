"""A small blocking MQTT 3.1.1 client over a socket: the thin I/O adapter around ``codec``.

Runs on MicroPython (``socket``, optional ``ssl``) and CPython. It publishes at QoS 0 or 1 (waiting for
the PUBACK), subscribes, answers keepalive, and hands incoming PUBLISH packets to a callback.
The store-and-forward link layer builds on this.

Usage::

    c = MQTTClient("dev-1", "127.0.0.1", 1883, keepalive=30,
                   will=("edgepoi/v1/dev-1/status", b"offline", 1, True))
    c.connect()
    c.publish("edgepoi/v1/dev-1/telemetry", payload, qos=1)
    c.poll()          # process whatever arrived, without blocking
    c.disconnect()
"""
import socket
import time

from edgepoi.mqtt import codec, packets
from edgepoi.mqtt.codec import MQTTProtocolError


class MQTTError(OSError):
    """The connection failed, was refused, or timed out."""


CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def _ticks_ms():
    try:
        return time.ticks_ms()
    except AttributeError:
        return int(time.monotonic() * 1000)


def _ticks_diff(a, b):
    try:
        return time.ticks_diff(a, b)
    except AttributeError:
        return a - b


class MQTTClient:
    def __init__(self, client_id, host, port=1883, keepalive=30, will=None, username=None,
                 password=None, clean_session=True, timeout=5.0, ssl_params=None):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.will = will
        self.username = username
        self.password = password
        self.clean_session = clean_session
        self.timeout = timeout
        self.ssl_params = ssl_params
        self.sock = None
        self.decoder = codec.Decoder()
        self.on_message = None  # callback(topic, payload, retain)
        self._pid = 0
        self._last_tx = 0
        self._pending = []  # packets read while waiting for an ack

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    def connect(self):
        """Open the TCP (or TLS) connection and complete CONNECT/CONNACK. Returns session_present."""
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(addr)
            if self.ssl_params is not None:
                import ssl
                s = ssl.wrap_socket(s, **self.ssl_params)
        except OSError as e:
            s.close()
            raise MQTTError("cannot connect to %s:%d: %s" % (self.host, self.port, e))
        self.sock = s
        self.decoder = codec.Decoder()
        self._pending = []
        self._send(codec.encode_connect(self.client_id, self.keepalive, self.clean_session, self.will,
                                        self.username, self.password))
        pkt = self._wait(packets.CONNACK)
        if pkt[2] != 0:
            self.close()
            raise MQTTError("broker refused connection: %s" % CONNACK_REASONS.get(pkt[2], pkt[2]))
        return pkt[1]

    def _send(self, data):
        if self.sock is None:
            raise MQTTError("not connected")
        view = memoryview(data)
        try:
            while view:
                n = self.sock.send(view)
                if not n:
                    raise MQTTError("connection closed while sending")
                view = view[n:]
        except OSError as e:
            self.close()
            raise MQTTError("send failed: %s" % e)
        self._last_tx = _ticks_ms()

    def _read_some(self, block):
        self.sock.settimeout(self.timeout if block else 0)
        try:
            data = self.sock.recv(1024)
        except OSError as e:
            if not block and _would_block(e):
                return False
            self.close()
            raise MQTTError("receive failed: %s" % e)
        if not data:
            self.close()
            raise MQTTError("connection closed by broker")
        self.decoder.feed(data)
        return True

    def _wait(self, ptype, packet_id=None):
        deadline = _ticks_ms() + int(self.timeout * 1000)
        while True:
            while True:
                try:
                    pkt = self.decoder.next()
                except MQTTProtocolError:
                    self.close()
                    raise
                if pkt is None:
                    break
                if pkt[0] == ptype and (packet_id is None or pkt[1] == packet_id):
                    return pkt
                self._pending.append(pkt)
            if _ticks_diff(deadline, _ticks_ms()) <= 0:
                self.close()
                raise MQTTError("timed out waiting for packet type %d" % ptype)
            self._read_some(True)

    def publish(self, topic, payload, qos=0, retain=False):
        """Publish; with QoS 1 wait for the broker's PUBACK. Returns the packet id (0 for QoS 0)."""
        pid = self._next_pid() if qos else 0
        self._send(codec.encode_publish(topic, payload, qos, retain, pid))
        if qos == 1:
            self._wait(packets.PUBACK, pid)
        self._dispatch_pending()
        return pid

    def subscribe(self, topic_filter, qos=0):
        pid = self._next_pid()
        self._send(codec.encode_subscribe(pid, [(topic_filter, qos)]))
        pkt = self._wait(packets.SUBACK, pid)
        if pkt[2][0] == 0x80:
            raise MQTTError("subscription to %s refused" % topic_filter)
        return pkt[2][0]

    def ping(self):
        self._send(codec.PINGREQ_BYTES)

    def poll(self):
        """Process incoming packets without blocking; send a PINGREQ when keepalive is due."""
        if self.sock is None:
            raise MQTTError("not connected")
        while self._read_some(False):
            pass
        self._dispatch_pending()
        if self.keepalive and _ticks_diff(_ticks_ms(), self._last_tx) > self.keepalive * 500:
            self.ping()

    def _dispatch_pending(self):
        while True:
            try:
                pkt = self.decoder.next()
            except MQTTProtocolError:
                self.close()
                raise
            if pkt is None:
                break
            self._pending.append(pkt)
        pending, self._pending = self._pending, []
        for pkt in pending:
            if pkt[0] == packets.PUBLISH:
                if pkt[3] == 1:
                    self._send(codec.encode_puback(pkt[6]))
                if self.on_message:
                    self.on_message(pkt[1], pkt[2], pkt[4])

    def disconnect(self):
        if self.sock is not None:
            try:
                self._send(codec.DISCONNECT_BYTES)
            except MQTTError:
                pass
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def _would_block(e):
    code = e.args[0] if e.args else None
    return code in (11, 35, 115, "timed out") or isinstance(e, getattr(socket, "timeout", ())) or \
        "timed out" in str(e)
