# heapsize: 96K
# MQTT 3.1.1 codec, byte by byte (spec section numbers in comments). Runs under CPython and MicroPython.
import gc

from checks import raises

from edgepoi.mqtt import codec, packets
from edgepoi.mqtt.codec import Decoder, MQTTProtocolError
from edgepoi.mqtt.packets import CONNACK, PINGRESP, PUBACK, PUBLISH, SUBACK


def test_connect_minimal_is_byte_exact():
    # 3.1: fixed header 0x10, remaining 12+2+len(id); variable header "MQTT" level 4, flags 0x02, keepalive
    got = codec.encode_connect("d1", keepalive=30)
    assert got == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02d1"


def test_connect_with_will_and_credentials():
    got = codec.encode_connect("d", 60, True, ("s", b"off", 1, True), "u", "p")
    # flags: user 0x80 | pass 0x40 | will retain 0x20 | will qos1 0x08 | will 0x04 | clean 0x02 = 0xee
    body = b"\x00\x04MQTT\x04\xee\x00\x3c" + b"\x00\x01d" + b"\x00\x01s" + b"\x00\x03off" + b"\x00\x01u" + \
        b"\x00\x01p"
    assert got == bytes((0x10, len(body))) + body


def test_publish_qos0_and_qos1():
    assert codec.encode_publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert codec.encode_publish("a/b", b"hi", qos=1, retain=True, packet_id=258) == \
        b"\x33\x09\x00\x03a/b\x01\x02hi"
    assert codec.encode_publish("a", b"", qos=1, packet_id=1, dup=True) == b"\x3a\x05\x00\x01a\x00\x01"


def test_remaining_length_boundaries():
    # topic "t" takes 3 bytes, so a payload of n - 3 bytes makes a remaining length of exactly n
    for n, head in ((127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"), (16384, b"\x80\x80\x01")):
        hdr = codec.encode_publish_header("t", n - 3)
        assert hdr == b"\x30" + head + b"\x00\x01t", n
        if n < 1000:
            assert codec.encode_publish("t", b"x" * (n - 3)) == hdr + b"x" * (n - 3)
        d = Decoder(max_packet=20000)
        d.feed(hdr)
        chunk = b"x" * 1024
        left = n - 3
        while left:
            assert d.next() is None
            d.feed(chunk[:min(left, 1024)])
            left -= min(left, 1024)
        got = d.next()
        assert got[0] == PUBLISH and got[1] == "t" and len(got[2]) == n - 3
        assert d.next() is None and d.buffered == 0
        got = d = None  # free the 16K buffers before the next size (a 96K heap)
        gc.collect()


def test_decoder_one_byte_at_a_time_and_whole():
    stream = (b"\x20\x02\x01\x00" + b"\x40\x02\x00\x07" + b"\x90\x04\x00\x09\x01\x80" + b"\xd0\x00" +
              codec.encode_publish("x/y", b"payload", qos=1, packet_id=9))
    want = [(CONNACK, True, 0), (PUBACK, 7), (SUBACK, 9, [1, 0x80]), (PINGRESP,),
            (PUBLISH, "x/y", b"payload", 1, False, False, 9)]
    d = Decoder()
    d.feed(stream)
    got = []
    while True:
        p = d.next()
        if p is None:
            break
        got.append(p)
    assert got == want
    d = Decoder()
    got = []
    for i in range(len(stream)):
        d.feed(stream[i:i + 1])
        p = d.next()
        while p is not None:
            got.append(p)
            p = d.next()
    assert got == want


def test_decoder_keeps_trailing_bytes():
    d = Decoder()
    d.feed(b"\xd0\x00\x40\x02\x00")
    assert d.next() == (PINGRESP,)
    assert d.next() is None
    d.feed(b"\x03")
    assert d.next() == (PUBACK, 3)


def _bad(data, max_packet=16384):
    d = Decoder(max_packet)
    d.feed(data)
    return raises(MQTTProtocolError, d.next)


def test_malformed_packets_are_rejected():
    _bad(b"\x20\x03\x00\x00\x00")          # CONNACK of wrong length
    _bad(b"\x20\x02\x02\x00")              # CONNACK reserved flag bits
    _bad(b"\x36\x05\x00\x01a\x00\x01")     # PUBLISH QoS 3
    _bad(b"\x32\x05\x00\x01a\x00\x00")     # QoS 1 with packet id 0
    _bad(b"\x30\x03\x00\x05a")             # topic runs past the packet
    _bad(b"\x30\x03\x00\x01\xff")          # topic not UTF-8
    _bad(b"\x90\x03\x00\x01\x05")          # SUBACK bad return code
    _bad(b"\xd0\x01\x00")                  # PINGRESP with a body
    _bad(b"\x10\x00")                      # CONNECT is not something a broker sends
    _bad(b"\xb0\x02\x00\x05")              # UNSUBACK: this client never unsubscribes
    _bad(b"\x30\xff\xff\xff\xff\x01")      # remaining length over 4 bytes
    e = _bad(b"\x30\x80\x80\x02", max_packet=1000)  # 32768 bytes announced, over the limit
    assert "limit" in str(e)


def test_encoder_refuses_invalid_requests():
    raises(MQTTProtocolError, codec.encode_publish, "a/+", b"")
    raises(MQTTProtocolError, codec.encode_publish, "a", b"", 1)      # QoS 1 without packet id
    raises(MQTTProtocolError, codec.encode_publish, "", b"")
    raises(MQTTProtocolError, codec.encode_connect, "d", 70000)
    raises(MQTTProtocolError, codec.encode_connect, "d", 10, True, None, None, "p")
    raises(MQTTProtocolError, codec.encode_subscribe, 1, [])
    assert codec.encode_subscribe(10, [("a/#", 1)]) == b"\x82\x08\x00\x0a\x00\x03a/#\x01"


def test_packet_numbers_and_unsubscribe():
    # 2.2.1 control packet types; 3.10 UNSUBSCRIBE: fixed header 0xa2, packet id, then the filters
    assert (packets.CONNECT, packets.CONNACK, packets.PUBLISH, packets.PUBACK, packets.SUBSCRIBE,
            packets.SUBACK, packets.UNSUBSCRIBE, packets.UNSUBACK, packets.PINGREQ, packets.PINGRESP,
            packets.DISCONNECT) == (1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14)
    assert packets.encode_unsubscribe(7, ["a/+", "b"]) == b"\xa2\x0a\x00\x07\x00\x03a/+\x00\x01b"
    assert codec.PINGREQ_BYTES[0] >> 4 == packets.PINGREQ and codec.DISCONNECT_BYTES[0] >> 4 == packets.DISCONNECT
