"""Fleet state for the console, built from decoded Records (edgepoi_host.console.decode); no I/O.

Usage::

    from edgepoi_host.console.model import FleetModel
    fleet = FleetModel(window=10.0)
    fleet.apply(record)                    # every decoded message, in arrival order
    for dev in fleet.rows(): print(dev.device_id, dev.status, dev.rate(), dev.verdict)
    fleet.rate()                           # all messages per second over the window

A device row exists only once the device itself published a well-formed status, telemetry or
attestation (``Record.device_event``); messages to it (commands, acks) and foreign traffic update
counters but never create rows. ``status`` is ``online``/``offline`` from its retained status topic, or
``seen`` when it talked without a status. The attestation verdict is the last one (``verified``, ``bad
signature``, ``unknown key``, ``unchecked``, ...), with per-verdict counts beside it.
"""
import collections
import time


class _Rate:
    """Events per second over a sliding window of ``window`` seconds."""

    def __init__(self, window):
        self.window = window
        self.times = collections.deque()
        self.first = None

    def add(self, t):
        if self.first is None:
            self.first = t
        self.times.append(t)
        self._trim(t)

    def _trim(self, now):
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()

    def rate(self, now=None):
        now = time.time() if now is None else now
        self._trim(now)
        if self.first is None:
            return 0.0
        span = min(self.window, max(now - self.first, 1.0))
        return len(self.times) / span


class Device:
    """One row of the devices table."""

    def __init__(self, device_id, window):
        self.device_id = device_id
        self.status = "seen"
        self.last_seen = None
        self.messages = 0
        self.telemetry = 0
        self.last_seq = None
        self.queue = None
        self.inference = None           # (out list, backend)
        self.readings = {}
        self.verdict = None
        self.verdicts = collections.Counter()
        self.attest_seq = None
        self.acked = None
        self._rate = _Rate(window)

    def rate(self, now=None):
        return self._rate.rate(now)

    def inference_text(self):
        if not self.inference:
            return ""
        out, backend = self.inference
        vals = ", ".join("%g" % v if isinstance(v, (int, float)) else str(v) for v in (out or [])[:4])
        return "[%s]%s" % (vals, " " + backend if backend else "")


class FleetModel:
    """Devices keyed by id, plus totals for the whole stream."""

    def __init__(self, window=10.0):
        self.window = window
        self.devices = {}
        self.total = 0
        self.foreign = 0
        self.kinds = collections.Counter()
        self._rate = _Rate(window)

    def apply(self, rec):
        """Fold one Record into the state; returns the Device it touched, or None."""
        self.total += 1
        self.kinds[rec.kind] += 1
        self._rate.add(rec.t)
        if rec.foreign:
            self.foreign += 1
        dev = self.devices.get(rec.device) if rec.device else None
        if dev is None and rec.device and rec.device_event:
            dev = self.devices[rec.device] = Device(rec.device, self.window)
        if dev is None:
            return None
        if rec.kind == "ack" and isinstance(rec.fields.get("upto"), int):
            dev.acked = rec.fields["upto"]
            return dev
        if not rec.device_event:     # commands to it, its results, config: not a sign of life
            return dev
        dev.messages += 1
        if not rec.retain:           # a retained message is the broker's memory, not the device now
            dev.last_seen = rec.t
            dev._rate.add(rec.t)
        if rec.kind == "status":
            dev.status = rec.fields["status"]
        elif rec.kind == "telemetry":
            dev.telemetry += 1
            f = rec.fields
            if isinstance(f.get("seq"), int):
                dev.last_seq = f["seq"]
            if "q" in f:
                dev.queue = f["q"]
            if "out" in f:
                dev.inference = (f["out"], f.get("backend"))
            dev.readings = dict((k, v) for k, v in f.items()
                                if k not in ("seq", "ts", "q", "out", "backend")
                                and isinstance(v, (int, float)) and not isinstance(v, bool))
        elif rec.kind == "attest":
            dev.verdict = rec.verdict
            dev.verdicts[rec.verdict] += 1
            if isinstance(rec.fields.get("seq"), int):
                dev.attest_seq = rec.fields["seq"]
        return dev

    def rate(self, now=None):
        return self._rate.rate(now)

    def rows(self):
        return [self.devices[k] for k in sorted(self.devices)]

    def online(self):
        return sum(1 for d in self.devices.values() if d.status == "online")
