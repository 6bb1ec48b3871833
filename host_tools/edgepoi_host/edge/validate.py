"""Checks on what devices publish, at the trust boundary. Pure functions: bytes in, verdict out.

Every rejection carries a short machine reason (counted by the edge node) and a human detail.
"""
import re

from edgepoi import cbor

TOPIC_RE = re.compile(r"^edgepoi/v1/([A-Za-z0-9_.-]{1,64})/(status|telemetry|attest|cmd/[A-Za-z0-9_-]{1,32}/result)$")
MAX_PAYLOAD = 64 * 1024


class Rejected(Exception):
    def __init__(self, reason, detail):
        Exception.__init__(self, "%s: %s" % (reason, detail))
        self.reason = reason
        self.detail = detail


def parse_topic(topic):
    """Return (device_id, kind) for an edgepoi device topic or raise Rejected('bad_topic')."""
    m = TOPIC_RE.match(topic)
    if not m:
        raise Rejected("bad_topic", "not an edgepoi device topic: %r" % topic[:200])
    return m.group(1), m.group(2)


def telemetry(device_id, payload):
    """Decode and check one telemetry message. Returns the decoded map."""
    if len(payload) > MAX_PAYLOAD:
        raise Rejected("too_large", "%d bytes > %d" % (len(payload), MAX_PAYLOAD))
    try:
        msg = cbor.loads(payload, max_depth=8, max_items=1024)
    except cbor.CBORError as e:
        raise Rejected("not_cbor", str(e))
    if not isinstance(msg, dict):
        raise Rejected("bad_schema", "telemetry is a %s, not a map" % type(msg).__name__)
    dev = msg.get("dev")
    if dev != device_id:
        raise Rejected("device_mismatch", "payload dev %r on topic of %r" % (dev, device_id))
    seq = msg.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2 ** 63:
        raise Rejected("bad_schema", "seq must be a non-negative integer")
    ts = msg.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < 2 ** 40:
        raise Rejected("bad_schema", "ts must be a unix time in seconds")
    readings = msg.get("readings")
    if not isinstance(readings, dict):
        raise Rejected("bad_schema", "readings must be a map")
    for k, v in readings.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Rejected("bad_schema", "reading %r must be a number" % (k,))
    return msg


def status(payload):
    if payload not in (b"online", b"offline"):
        raise Rejected("bad_status", "status must be 'online' or 'offline', got %r" % payload[:40])
    return payload.decode()
