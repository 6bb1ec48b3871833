"""Turn any MQTT message into a readable Record: pure functions, no I/O, never raises.

Usage::

    from edgepoi_host.console import decode
    keys = decode.KeyRing.from_dir("keys/")     # console.keys; or KeyRing(Registry(db.connect(url)))
    rec = decode.decode("edgepoi/v1/sim-01/attest", payload, keys)
    rec.kind, rec.device, rec.verdict, rec.fields    # 'attest', 'sim-01', 'verified', {claims by name}
    print(rec.line())                                # one logfmt line: time topic kind key=value ...

What is understood (docs/PROTOCOL.md, docs/ATTESTATION.md): ``edgepoi/v1/<id>/status|telemetry|attest|
ack|state|config|cmd/<name>[/result]|model/...`` and the edge beacon ``edgepoi/v1/edge/beacon``.
Attestations are decoded with their claims named and, when a key for their kid is known, the signature
checked: verdict ``verified``, ``bad signature``, ``unknown key``, ``unchecked`` (no keys given),
``malformed`` (not a COSE_Sign1), ``wrong device`` (the key is registered to another device, or
a genuine attestation of another device is published on this device's topic). Only the signature is
checked here: chain, replay and beacon freshness are the edge node's verdict (its ledger). Anything
else — Home Assistant discovery, foreign topics — is shown as JSON, text, CBOR or a hex preview.
``Record.device_event`` is true only for a device's own well-formed status/telemetry/attest messages:
those alone make a device appear in the fleet table, so foreign traffic never creates fake devices.
"""
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Optional

from edgepoi import attest_verify, cbor, cose, cose_verify
from edgepoi_host.console.keys import KeyRing, load_key_file  # noqa: F401 - re-exported

ROOT = "edgepoi/v1/"
BEACON_TOPIC = "edgepoi/v1/edge/beacon"
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
VERIFIED, BAD_SIGNATURE, UNKNOWN_KEY, UNCHECKED = "verified", "bad signature", "unknown key", "unchecked"
MALFORMED, WRONG_DEVICE = "malformed", "wrong device"
HEX_PREVIEW = 24          # bytes shown of a binary payload
HEX_VALUE = 64            # bytes shown of a byte-string value (a SHA-256 digest is shown whole)
TEXT_PREVIEW = 200        # characters shown of a text payload


@dataclass
class Record:
    """One decoded MQTT message. ``fields`` is a flat-ish dict of what the payload says."""
    topic: str
    kind: Optional[str]             # status telemetry attest ack beacon state config cmd result model
    #                                 hass json text cbor binary empty
    t: float
    size: int
    retain: bool = False
    device: Optional[str] = None    # the edgepoi device id of the topic, if any
    device_event: bool = False      # a device's own well-formed status/telemetry/attest
    fields: dict = field(default_factory=dict)
    verdict: Optional[str] = None   # attestations only
    error: Optional[str] = None     # why the payload is not what its topic promises

    @property
    def foreign(self):
        return not self.topic.startswith(ROOT)

    def summary(self):
        """The payload as ``key=value`` tokens (values quoted for shlex when needed)."""
        parts = []
        if self.device:
            parts.append(("dev", self.device))
        if self.verdict:
            parts.append(("verdict", self.verdict))
        parts.extend(self.fields.items())
        if self.error:
            parts.append(("error", self.error))
        if self.retain:
            parts.append(("retained", 1))
        return " ".join("%s=%s" % (k, _quote(_show(v))) for k, v in parts)

    def line(self):
        """One parseable line (shlex.split): ISO time, topic, kind, then key=value tokens."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.t)) + ".%03dZ" % (self.t % 1 * 1000)
        return "%s %s %s %s" % (stamp, _quote(self.topic), self.kind, self.summary())

    def as_json(self):
        """A JSON-safe dict (bytes as hex) for --plain --json."""
        return {"t": round(self.t, 3), "topic": self.topic, "kind": self.kind, "size": self.size,
                "retain": self.retain, "device": self.device, "verdict": self.verdict,
                "error": self.error, "fields": _jsonable(self.fields)}


def _jsonable(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return dict((str(k), _jsonable(x)) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, cbor.CBORTag):
        return {"tag": v.tag, "value": _jsonable(v.value)}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def _show(v):
    """A compact readable form of a value: bytes as hex (shortened), containers as compact JSON."""
    if isinstance(v, (bytes, bytearray)):
        h = bytes(v).hex()
        return h if len(v) <= HEX_VALUE else h[:2 * HEX_VALUE] + "..(%dB)" % len(v)
    if isinstance(v, float):
        return "%g" % v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple, cbor.CBORTag)):
        return json.dumps(_jsonable(v), separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return str(v)


def _quote(s):
    s = str(s).replace("\n", "\\n").replace("\r", "\\r")
    return s if s and re.match(r"^[\w@%+=:,./\[\]{}-]+$", s) else shlex.quote(s)


# -- payloads ------------------------------------------------------------------------------------

def _cbor(payload, depth=8, items=4096):
    return cbor.loads(payload, max_depth=depth, max_items=items)


def _generic(rec, payload):
    """Foreign or free-form payload: JSON, text, CBOR map/array, or a hex preview."""
    if not payload:
        rec.kind = "empty"
        return rec
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        try:
            rec.fields["json"] = json.loads(text)
            rec.kind = "json" if rec.kind in ("binary", None) else rec.kind
            return rec
        except ValueError:
            rec.kind = "text" if rec.kind in ("binary", None) else rec.kind
            rec.fields["text"] = text if len(text) <= TEXT_PREVIEW else text[:TEXT_PREVIEW] + "..."
            return rec
    try:
        v = _cbor(payload)
        if isinstance(v, (dict, list, cbor.CBORTag)):
            rec.kind = "cbor" if rec.kind in ("binary", None) else rec.kind
            rec.fields["cbor"] = v
            return rec
    except cbor.CBORError:
        pass
    rec.kind = "binary" if rec.kind is None else rec.kind
    rec.fields["bytes"] = len(payload)
    rec.fields["hex"] = payload[:HEX_PREVIEW].hex() + (".." if len(payload) > HEX_PREVIEW else "")
    return rec


def decode_telemetry(rec, payload):
    try:
        m = _cbor(payload, 6, 1024)
    except cbor.CBORError as e:
        rec.error = "not CBOR: %s" % e
        return _generic(rec, payload)
    if not isinstance(m, dict):
        rec.error = "telemetry is not a CBOR map"
        rec.fields["cbor"] = m
        return rec
    if m.get("dev") not in (None, rec.device):
        rec.error = "dev %r does not match the topic" % (m.get("dev"),)
    for k in ("seq", "ts"):
        if k in m:
            rec.fields[k] = m[k]
    readings = m.get("readings")
    if isinstance(readings, dict):
        for k, v in readings.items():
            rec.fields[str(k)] = round(v, 4) if isinstance(v, float) else v
    inf = m.get("inference")
    if isinstance(inf, dict):
        rec.fields["out"] = inf.get("out")
        if "backend" in inf:
            rec.fields["backend"] = inf["backend"]
    for k, v in m.items():
        if k not in ("dev", "seq", "ts", "readings", "inference"):
            rec.fields[str(k)] = v
    rec.device_event = rec.error is None
    return rec


def decode_attest(rec, payload, keys):
    try:
        prot, _, body, _ = cose_verify.decode1(payload)
        claims = cbor.loads(body, max_depth=4, max_items=64)
        if not isinstance(claims, dict):
            raise cose.CoseError("bad_structure", "claims are not a map")
    except (cose.CoseError, cbor.CBORError) as e:
        rec.verdict, rec.error = MALFORMED, str(e)
        return _generic(rec, payload)
    kid = prot[cose.H_KID]
    rec.fields["kid"] = kid.hex()
    named = attest_verify.named(claims)
    for k in ("seq", "backend", "work_units", "output", "epoch", "bit_exact", "model_digest",
              "input_digest", "iat"):
        if k in named:
            rec.fields[k] = named.pop(k)
    claimed = named.pop("device_id", None)
    if claimed != rec.device:
        rec.fields["claimed_device"] = claimed
    for k in ("ueid", "eat_nonce", "prev"):
        named.pop(k, None)
    rec.fields.update((str(k), v) for k, v in named.items())   # extra claims, if any
    rec.verdict = check_signature(payload, kid, keys, claimed)
    if rec.verdict == VERIFIED and claimed != rec.device:      # genuine, but another device's work
        rec.verdict = WRONG_DEVICE
    rec.device_event = True
    return rec


def check_signature(payload, kid, keys, claimed_device=None):
    """Verdict for a COSE_Sign1 message against keys (a KeyRing or anything with lookup(kid))."""
    if not keys:
        return UNCHECKED
    try:
        entry = keys.lookup(kid)
    except Exception:  # noqa: BLE001 - a broken registry must not kill the stream
        return UNCHECKED
    if entry is None:
        return UNKNOWN_KEY
    try:
        cose_verify.verify1(payload, entry[1])
    except cose.CoseError as e:
        return BAD_SIGNATURE if e.reason in ("bad_signature", "bad_signature_length") else MALFORMED
    if entry[0] is not None and claimed_device is not None and entry[0] != claimed_device:
        return WRONG_DEVICE
    return VERIFIED


def _cbor_fields(rec, payload):
    try:
        m = _cbor(payload, 6, 1024)
    except cbor.CBORError:
        return _generic(rec, payload)
    if isinstance(m, dict):
        rec.fields.update((str(k), v) for k, v in m.items())
    else:
        rec.fields["cbor"] = m
    return rec


def decode(topic, payload, keys=None, t=None, retain=False):
    """Decode one MQTT message into a Record; never raises (a decoder bug becomes rec.error)."""
    payload = bytes(payload or b"")
    rec = Record(topic=topic, kind=None, t=time.time() if t is None else t, size=len(payload),
                 retain=bool(retain))
    try:
        return _decode(rec, payload, keys)
    except Exception as e:  # noqa: BLE001 - the console must survive any message
        rec.error = "decoder failed: %s: %s" % (type(e).__name__, e)
        rec.kind, rec.device_event, rec.fields = "binary", False, {}
        rec.fields["hex"] = payload[:HEX_PREVIEW].hex()
        return rec


def _decode(rec, payload, keys):
    topic = rec.topic
    if topic == BEACON_TOPIC:
        rec.kind = "beacon"
        return _cbor_fields(rec, payload)
    if topic.startswith("homeassistant/"):
        rec.kind = "hass"
        return _generic(rec, payload)
    if not topic.startswith(ROOT):
        return _generic(rec, payload)
    parts = topic[len(ROOT):].split("/")
    if len(parts) < 2 or not DEVICE_ID_RE.match(parts[0]) or parts[0] == "edge":
        return _generic(rec, payload)
    rec.device, sub = parts[0], parts[1:]
    name = sub[0]
    if name == "status" and len(sub) == 1:
        rec.kind = "status"
        text = payload.decode("utf-8", "replace")
        rec.fields["status"] = text
        if text in ("online", "offline"):
            rec.device_event = True
        else:
            rec.error = "status is neither online nor offline"
        return rec
    if name == "telemetry" and len(sub) == 1:
        rec.kind = "telemetry"
        return decode_telemetry(rec, payload)
    if name == "attest" and len(sub) == 1:
        rec.kind = "attest"
        return decode_attest(rec, payload, keys)
    if name == "ack" and len(sub) == 1:
        rec.kind = "ack"
        return _cbor_fields(rec, payload)
    if name == "cmd" and len(sub) >= 2:
        rec.kind = "result" if sub[-1] == "result" and len(sub) >= 3 else "cmd"
        rec.fields["cmd"] = "/".join(sub[1:-1] if rec.kind == "result" else sub[1:])
        return _cbor_fields(rec, payload) if payload else rec
    rec.kind = {"state": "state", "config": "config", "model": "model"}.get(name)
    return _generic(rec, payload) if name != "config" else _cbor_fields(rec, payload)
