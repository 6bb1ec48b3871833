"""MQTT 3.1.1 packet codec, sans-I/O: ``encode_*`` functions return bytes, ``Decoder`` turns bytes into packets.

Usage::

    sock.write(encode_connect("dev-1", keepalive=30, will=("edgepoi/v1/dev-1/status", b"offline", 1, True)))
    dec = Decoder()
    dec.feed(sock.read(256))
    pkt = dec.next()          # e.g. (CONNACK, session_present, return_code) or None when more bytes needed

Packets from the peer are tuples whose first item is the packet type (the numbers are named in
``edgepoi.mqtt.packets``, which the device does not load):

    (CONNACK, session_present, return_code)
    (PUBLISH, topic, payload, qos, retain, dup, packet_id)   # packet_id 0 for QoS 0
    (PUBACK, packet_id)
    (SUBACK, packet_id, [granted_qos_or_0x80, ...])
    (PINGRESP,)

Anything malformed raises ``MQTTProtocolError``: the session must then be closed (MQTT has no resync). So
does an UNSUBACK: the device never unsubscribes (``packets`` has the UNSUBSCRIBE encoder for code that does).
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# packet types (folded into the code: no names on a device's heap; public names in packets.py)
_CONNECT = const(1)
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_SUBSCRIBE = const(8)
_SUBACK = const(9)
_PINGRESP = const(13)

_MAX_REMAINING = const(268435455)  # the largest value a 4-byte remaining length can hold


class MQTTProtocolError(Exception):
    """The peer sent bytes that are not valid MQTT 3.1.1 (or the caller asked for an invalid packet)."""


def _varint(n):
    if n < 0 or n > _MAX_REMAINING:
        raise MQTTProtocolError("remaining length %d out of range" % n)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return out


def _str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) > 65535:
        raise MQTTProtocolError("string longer than 65535 bytes")
    return bytes((len(b) >> 8, len(b) & 0xFF)) + b


def _packet(first_byte, body):
    return bytes((first_byte,)) + bytes(_varint(len(body))) + body


def _check_topic(topic, wildcards):
    if not topic:
        raise MQTTProtocolError("empty topic")
    if not wildcards and ("+" in topic or "#" in topic):
        raise MQTTProtocolError("wildcard in publish topic %r" % topic)


def encode_connect(client_id, keepalive=60, clean_session=True, will=None, username=None, password=None):
    """CONNECT. will = (topic, payload_bytes, qos, retain) or None. keepalive in seconds (0..65535)."""
    if not 0 <= keepalive <= 65535:
        raise MQTTProtocolError("keepalive out of range")
    flags = 0x02 if clean_session else 0
    payload = _str(client_id)
    if will is not None:
        wtopic, wmsg, wqos, wretain = will
        _check_topic(wtopic, False)
        if wqos not in (0, 1, 2):
            raise MQTTProtocolError("will qos must be 0, 1 or 2")
        flags |= 0x04 | (wqos << 3) | (0x20 if wretain else 0)
        payload += _str(wtopic) + _str(wmsg)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
    if password is not None:
        if username is None:
            raise MQTTProtocolError("a password needs a username in MQTT 3.1.1")
        flags |= 0x40
        payload += _str(password)
    body = b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 0xFF)) + payload
    return _packet(_CONNECT << 4, body)


def encode_publish_header(topic, length, qos=0, retain=False, packet_id=0, dup=False):
    """The bytes of a PUBLISH up to its payload of ``length`` bytes (send the payload after it)."""
    _check_topic(topic, False)
    if qos not in (0, 1, 2):
        raise MQTTProtocolError("qos must be 0, 1 or 2")
    first = (_PUBLISH << 4) | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup and qos else 0)
    var = _str(topic)
    if qos:
        if not 0 < packet_id < 65536:
            raise MQTTProtocolError("packet id must be 1..65535 for QoS %d" % qos)
        var += bytes((packet_id >> 8, packet_id & 0xFF))
    return bytes((first,)) + bytes(_varint(len(var) + length)) + var


def encode_publish(topic, payload, qos=0, retain=False, packet_id=0, dup=False):
    """PUBLISH. QoS 1/2 need a packet_id in 1..65535."""
    head = encode_publish_header(topic, len(payload), qos, retain, packet_id, dup)
    out = bytearray(len(head) + len(payload))
    out[:len(head)] = head
    out[len(head):] = payload
    return out


def encode_puback(packet_id):
    return bytes((_PUBACK << 4, 2, packet_id >> 8, packet_id & 0xFF))


def encode_subscribe(packet_id, topics):
    """SUBSCRIBE. topics = [(filter, qos), ...]."""
    if not topics:
        raise MQTTProtocolError("SUBSCRIBE needs at least one topic filter")
    if not 0 < packet_id < 65536:
        raise MQTTProtocolError("packet id must be 1..65535")
    body = bytes((packet_id >> 8, packet_id & 0xFF))
    for flt, qos in topics:
        _check_topic(flt, True)
        body += _str(flt) + bytes((qos,))
    return _packet((_SUBSCRIBE << 4) | 0x02, body)


PINGREQ_BYTES = b"\xc0\x00"
DISCONNECT_BYTES = b"\xe0\x00"


class Decoder:
    """Incremental decoder for packets a broker sends to a client.

    Args:
        max_packet: largest remaining length accepted; bigger packets are a protocol error (heap guard).
    """

    def __init__(self, max_packet=16384):
        self.max_packet = max_packet
        self._buf = bytearray()

    def feed(self, data):
        self._buf.extend(data)
    @property
    def buffered(self):
        return len(self._buf)

    def next(self):
        """Return the next complete packet, or None when more bytes are needed."""
        buf = self._buf
        if len(buf) < 2:
            return None
        n = 0
        shift = 0
        i = 1
        while True:
            if i >= len(buf):
                return None
            b = buf[i]
            n |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
            if i > 4:
                raise MQTTProtocolError("remaining length longer than 4 bytes")
        if n > self.max_packet:
            raise MQTTProtocolError("packet of %d bytes exceeds the %d-byte limit" % (n, self.max_packet))
        if len(buf) < i + n:
            return None
        first = buf[0]
        if first >> 4 == _PUBLISH:  # copy only the payload out of the buffer (large on a small heap)
            pkt = _parse_publish(first, memoryview(buf)[i:i + n])
        else:
            pkt = _parse(first, bytes(buf[i:i + n]))
        buf[0:i + n] = b""  # in place: MicroPython has no bytearray item deletion
        return pkt


def _u16(body, at):
    if at + 2 > len(body):
        raise MQTTProtocolError("packet truncated")
    return (body[at] << 8) | body[at + 1]


def _parse_publish(first, body):
    flags = first & 0x0F
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MQTTProtocolError("PUBLISH with QoS 3")
    tlen = _u16(body, 0)
    if 2 + tlen > len(body):
        raise MQTTProtocolError("PUBLISH topic runs past the packet")
    try:
        topic = str(bytes(body[2:2 + tlen]), "utf-8")
    except UnicodeError:
        raise MQTTProtocolError("PUBLISH topic is not UTF-8")
    at = 2 + tlen
    pid = 0
    if qos:
        pid = _u16(body, at)
        if pid == 0:
            raise MQTTProtocolError("PUBLISH QoS %d with packet id 0" % qos)
        at += 2
    return (_PUBLISH, topic, bytes(body[at:]), qos, bool(flags & 1), bool(flags & 8), pid)


def _parse(first, body):
    ptype = first >> 4
    flags = first & 0x0F
    if ptype == _CONNACK:
        if flags or len(body) != 2 or body[0] & 0xFE:
            raise MQTTProtocolError("malformed CONNACK")
        return (_CONNACK, bool(body[0] & 1), body[1])
    if ptype == _PUBACK:
        if flags or len(body) != 2:
            raise MQTTProtocolError("malformed PUBACK")
        return (_PUBACK, _u16(body, 0))
    if ptype == _SUBACK:
        if flags or len(body) < 3:
            raise MQTTProtocolError("malformed SUBACK")
        codes = list(body[2:])
        for c in codes:
            if c not in (0, 1, 2, 0x80):
                raise MQTTProtocolError("SUBACK return code 0x%02x" % c)
        return (_SUBACK, _u16(body, 0), codes)
    if ptype == _PINGRESP:
        if flags or body:
            raise MQTTProtocolError("malformed PINGRESP")
        return (_PINGRESP,)
    raise MQTTProtocolError("unexpected packet type %d from broker" % ptype)
