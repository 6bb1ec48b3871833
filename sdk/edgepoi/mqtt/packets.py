"""MQTT 3.1.1 packet type numbers and the encoders a device running the agent never needs.

``codec.Decoder`` returns packets as tuples whose first item is one of these numbers; ``codec`` itself uses
them as compile-time constants, so these names exist only here, for code that inspects packets by name
(``client``, tools, tests) and is not loaded by the agent: on a small heap every module-level name costs.

Usage::

    from edgepoi.mqtt import codec, packets
    pkt = dec.next()
    if pkt[0] == packets.PUBACK: ...
    sock.write(packets.encode_unsubscribe(7, ["edgepoi/v1/dev-1/cmd/+"]))
"""
from edgepoi.mqtt.codec import _packet, _str

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14


def encode_unsubscribe(packet_id, filters):
    """UNSUBSCRIBE of the topic filters (a client that unsubscribes must decode UNSUBACK itself: ``codec``
    treats it as a protocol error, since the device never unsubscribes)."""
    body = bytes((packet_id >> 8, packet_id & 0xFF))
    for flt in filters:
        body += _str(flt)
    return _packet((UNSUBSCRIBE << 4) | 0x02, body)
