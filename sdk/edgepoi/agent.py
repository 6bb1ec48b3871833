"""The device agent: sensors → window → inference → telemetry + attestation → flash queue → MQTT link.

Usage (what ``firmware/main.py`` does on a board, and ``edgepoi agent`` on a Pi)::

    from edgepoi.agent import Agent, load_config
    agent = Agent(load_config("config.json"))
    agent.run()               # forever, or cfg["count"] cycles

One cycle reads the sensor, and once the window is full runs the model on it. Its telemetry and its
attestation form one queue record whose id is the cycle's sequence number, appended atomically: after a
power cut a cycle is either wholly queued or not at all, so sequence numbers have no gaps and the
attestation hash chain is never cut. The sequence number and the chain are recovered at boot from the
newest queue record. When the queue is full the agent pauses work (counted in ``stats["paused"]``)
until the link has drained it.

Config keys (``config.json``): device_id, broker_host, broker_port, username, password, keepalive,
period_s, count, sensor {type, seed, ...}, model (path), window, key (key URI), queue_bytes,
reveal_slots, reveal_bytes, backend. See docs/DEVICE.md.
"""
import gc
import json
import sys
import time

from edgepoi import cbor
from edgepoi.link.flashq import FlashQueue, QueueFull
from edgepoi.link.link import Link, ticks_ms
from edgepoi.sensors import ConfigError

TOPIC_ROOT = "edgepoi/v1/"
BEACON_TOPIC = "edgepoi/v1/edge/beacon"
MICROPYTHON = sys.implementation.name == "micropython"


def _make_sensor(spec):
    """The configured sensor; the factory (all the drivers' config parsing) is forgotten afterwards."""
    from edgepoi.sensors.factory import make_sensor
    try:
        return make_sensor(spec)
    finally:
        make_sensor = None
        if MICROPYTHON:
            import edgepoi
            edgepoi.unload("edgepoi.sensors.factory")


def load_config(path="config.json"):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError("cannot read %s: %s" % (path, e))
    if not isinstance(cfg, dict):
        raise ConfigError("%s: not a JSON object" % path)
    for key in ("device_id", "broker_host", "broker_port"):
        if key not in cfg:
            raise ConfigError("%s: missing %r" % (path, key))
    return cfg


class _QueueSeq:
    """Attester counter: the next sequence number is one past the newest queued record."""

    def __init__(self, queue):
        self.queue = queue

    def next(self):
        return self.queue.last_id + 1

    def peek(self):
        return self.queue.last_id + 1


class _QueueChain:
    """Attester state: the previous attestation is the one in the newest queue record."""

    def __init__(self, queue, attest_topic):
        self.queue = queue
        self.attest_topic = attest_topic

    def load(self):
        last = self.queue.last()
        if last is None:
            return None
        try:
            for topic, body, _r in cbor.loads(last[1]):
                if topic == self.attest_topic:
                    return body
        except (cbor.CBORError, ValueError, TypeError):
            pass
        return None

    def save(self, message):
        pass  # the agent appends the record holding it; that append is the durable act


def _quantize_into(values, dst, off, quantization):
    """Quantize readings with the input tensor's (scale, zero point) into dst[off:] as int8 bytes."""
    scale, zp = quantization
    for v in values:
        q = int(round(v / scale)) + zp
        dst[off] = (-128 if q < -128 else 127 if q > 127 else q) & 0xFF
        off += 1


class _Reveal:
    """The inputs of the newest inferences, for cmd/reveal audits: ``slots`` buffers allocated with the
    model (one per input, so no large contiguous block is needed), so keeping inputs never allocates
    (nor fragments a small heap) while the loop runs. When the heap cannot spare every slot it keeps
    as many as it could allocate (at least one); ``len(seqs)`` says how many."""

    def __init__(self, slots, n):
        self.bufs = []
        for _ in range(slots):
            try:
                self.bufs.append(bytearray(n))
            except MemoryError:
                if not self.bufs:
                    raise
                break
        self.seqs = [-1] * len(self.bufs)
        self.next = 0

    def put(self, seq, data):
        i = self.next
        self.bufs[i][:] = data
        self.seqs[i] = seq
        self.next = (i + 1) % len(self.seqs)

    def get(self, seq):
        """The input of inference ``seq`` (bytes), or None when it is no longer held."""
        if not isinstance(seq, int) or seq < 0:
            return None
        for i in range(len(self.seqs)):
            if self.seqs[i] == seq:
                return bytes(self.bufs[i])
        return None


class Agent:
    def __init__(self, cfg, sensor=None, flash_dir="."):
        self.cfg = cfg
        self.dev = cfg["device_id"]
        self.root = TOPIC_ROOT + self.dev + "/"
        self.sensor = sensor or _make_sensor(cfg.get("sensor", {}))
        self.ota = None
        if cfg.get("edge_key"):          # hex of the edge node's 65-byte public key: model updates on
            from edgepoi.ota import ModelUpdate
            mdir, _, mname = (cfg.get("model") or "model.tflite").rpartition("/")
            # before the model is loaded: start-up finishes or undoes a swap cut by a power loss
            self.ota = ModelUpdate(bytes.fromhex(cfg["edge_key"]), mdir or flash_dir, mname,
                                   reload=self._reload_model, device_id=self.dev,
                                   max_size=int(cfg.get("model_max_bytes", 1 << 20)))
        self.queue = FlashQueue(flash_dir + "/queue", max_bytes=int(cfg.get("queue_bytes", 64 * 1024)))
        self.link = Link(self.dev, cfg["broker_host"], int(cfg["broker_port"]), self.queue,
                         keepalive=int(cfg.get("keepalive", 30)), username=cfg.get("username"),
                         password=cfg.get("password"), status_topic=self.root + "status",
                         subscriptions=[self.root + "cmd/+", BEACON_TOPIC] +
                         ([self.root + "model/#"] if self.ota is not None else []),
                         on_message=self._on_message, ack_topic=self.root + "ack",
                         backoff_min_ms=int(cfg.get("backoff_min_ms", 250)),
                         backoff_max_ms=int(cfg.get("backoff_max_ms", 30000)))
        self.period_ms = int(float(cfg.get("period_s", 1.0)) * 1000)
        self.window = int(cfg.get("window", 16))
        self.input_reading = cfg.get("input", "temp_c")  # the reading the model's window is made of
        self.win = bytearray(0)  # the sliding window, already quantized: newest sample last
        self.filled = 0          # how many samples of the window are real (it is full at self.window)
        self.flash_dir = flash_dir
        self.epoch, self.nonce = self._load_beacon()
        self.reveal = None  # _Reveal: the inputs of the newest inferences (made with the model)
        self.stats = {"cycles": 0, "inferences": 0, "unattested": 0, "paused": 0, "commands": 0,
                      "heap_peak": 0, "heap_size": 0}
        # MicroPython: collect after every cycle (cheap on a small heap, and garbage freed in order keeps
        # it from fragmenting); heap_peak is then the most live heap seen after a cycle (the high-water
        # mark of what the loop keeps), heap_size the whole heap
        self.gc_every = int(cfg.get("gc_every", 1 if MICROPYTHON else 0))
        self.interp = None
        self.attester = None
        # the model first: its big buffers are allocated while the heap is still in one piece (a small
        # heap never moves what it allocated), and loading it peaks before the signing code is in
        if cfg.get("model"):
            self._load_model(cfg["model"], cfg.get("backend", "auto"))
        if cfg.get("key"):
            from edgepoi import attest
            from edgepoi.keys import open_key
            self.attester = attest.Attester(open_key(cfg["key"]), self.dev, _QueueSeq(self.queue),
                                            _QueueChain(self.queue, self.root + "attest"))

    # -- model --------------------------------------------------------------------------------
    def _load_model(self, path, backend):
        import hashlib
        from edgepoi.infer import Interpreter
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1024)
                if not chunk:
                    break
                h.update(chunk)
        self.model_digest = h.digest()
        self.interp = Interpreter(model_path=path, backend=backend)
        self.in_detail = self.interp.get_input_details()[0]
        self.out_detail = self.interp.get_output_details()[0]
        n = 1
        for d in self.in_detail["shape"]:
            n *= int(d)
        self.window = n
        # the agent's own big buffers next to the model's (reserved when it was opened), before
        # allocate_tensors() drops the parser and leaves holes only small objects fit in
        gc.collect()
        self.win = bytearray(n)
        self.filled = 0
        # audits need the inputs of recent inferences; a big input tensor gets fewer slots (heap)
        slots = max(1, min(int(self.cfg.get("reveal_slots", 8)), int(self.cfg.get("reveal_bytes", 8192)) // n))
        self.reveal = _Reveal(slots, n)
        self.interp.allocate_tensors()

    def _reload_model(self, path):
        """ModelUpdate's reload callback: drop the old interpreter first (heap), raise if it fails."""
        self.interp = None
        self.win = bytearray(0)
        self.filled = 0
        self.reveal = None
        gc.collect()
        self._load_model(path, self.cfg.get("backend", "auto"))

    def _quantize(self, values):
        out = bytearray(len(values))
        _quantize_into(values, out, 0, self.in_detail["quantization"])
        return out

    def _push(self, reading):
        """Slide the window by one reading: a number, or a frame (list) of numbers (e.g. a spectrogram
        row). The window stays one bytearray, so a 2 KB input costs 2 KB of heap, not a list of floats."""
        frame = reading if isinstance(reading, (list, tuple)) else (reading,)
        n, k = self.window, len(frame)
        if k >= n:
            frame, k = frame[k - n:], n
        elif self.filled:
            mv = memoryview(self.win)
            mv[0:n - k] = mv[k:n]
        _quantize_into(frame, self.win, n - k, self.in_detail["quantization"])
        self.filled = min(n, self.filled + k)

    def _infer(self, qin):
        it = self.interp
        if MICROPYTHON:
            it.set_tensor(self.in_detail["index"], qin)
            it.invoke()
            return bytes(it.get_tensor(self.out_detail["index"]))
        import numpy as np
        arr = np.frombuffer(bytes(qin), dtype=np.int8).reshape([int(d) for d in self.in_detail["shape"]])
        it.set_tensor(self.in_detail["index"], arr)
        it.invoke()
        return it.get_tensor(self.out_detail["index"]).tobytes()

    # -- one cycle ----------------------------------------------------------------------------
    def cycle(self):
        """Produce one record (telemetry, and an attestation when a model ran). False if paused."""
        seq = self.queue.last_id + 1
        readings = self.sensor.read()
        first = readings.get(self.input_reading)
        if first is None:  # the sensor has no reading of that name: the first one in name order
            for k in sorted(readings):
                first = readings[k]
                break
        # telemetry carries the scalar readings; a frame (a list) only feeds the model's window
        tele = {"dev": self.dev, "seq": seq, "ts": int(time.time()),
                "readings": {k: v for k, v in readings.items() if not isinstance(v, (list, tuple))}}
        messages = []
        att = None
        if self.interp is not None and first is not None:
            self._push(first)
            if self.filled == self.window:
                qin = self.win
                out = self._infer(qin)
                scale, zp = self.out_detail["quantization"]
                vals = [((b - 256 if b > 127 else b) - zp) * scale for b in out]
                tele["inference"] = {"out": [round(v, 4) for v in vals[:8]], "backend": self.interp.backend}
                self.stats["inferences"] += 1
                if self.attester is not None and len(self.nonce) < 8:
                    self.stats["unattested"] += 1  # no beacon seen yet: nothing fresh to sign with
                elif self.attester is not None:
                    import hashlib
                    prev = self.attester.prev
                    att = self.attester.attest(self.model_digest, hashlib.sha256(qin).digest(), out,
                                               self.interp.macs, self.interp.backend,
                                               bool(self.interp.bit_exact), self.epoch, self.nonce)
        tele["q"] = self.queue.pending_count
        if att is not None:
            tele["a"] = True  # this cycle's record also holds an attestation (the edge acks both)
        messages.append((self.root + "telemetry", cbor.dumps(tele), False))
        if att is not None:
            messages.append((self.root + "attest", att, False))
        try:
            self.queue.append(seq, Link.record(messages))
        except QueueFull:
            if att is not None:
                self.attester.prev = prev  # this attestation was never queued: keep the chain whole
            self.stats["paused"] += 1
            return False
        if att is not None:
            self.reveal.put(seq, qin)
        self.stats["cycles"] += 1
        return True

    # -- beacon -------------------------------------------------------------------------------
    def _load_beacon(self):
        """The last beacon seen, kept on flash so work done before the broker answers is still fresh."""
        try:
            with open(self.flash_dir + "/beacon.cbor", "rb") as f:
                b = cbor.loads(f.read(), max_depth=2, max_items=8)
            return int(b["epoch"]), bytes(b["nonce"])
        except (OSError, cbor.CBORError, KeyError, TypeError, ValueError):
            return 0, b""

    def _on_beacon(self, payload):
        try:
            b = cbor.loads(payload, max_depth=2, max_items=8)
        except cbor.CBORError:
            return
        if not (isinstance(b, dict) and isinstance(b.get("epoch"), int) and isinstance(b.get("nonce"), bytes)):
            return
        if (b["epoch"], b["nonce"]) == (self.epoch, self.nonce):
            return
        self.epoch, self.nonce = b["epoch"], b["nonce"]
        import os
        path = self.flash_dir + "/beacon.cbor"
        try:
            with open(path + ".tmp", "wb") as f:
                f.write(cbor.dumps({"epoch": self.epoch, "nonce": self.nonce}))
            os.rename(path + ".tmp", path)
        except OSError:
            pass

    # -- commands -----------------------------------------------------------------------------
    def _on_message(self, topic, payload, retain):
        if topic == BEACON_TOPIC:
            self._on_beacon(payload)
            return
        if topic.startswith(self.root + "model/"):
            if self.ota is not None:
                res = self.ota.handle(topic[len(self.root) + 6:], payload)
                if res is not None:
                    self._reply("model", res)
            return
        if not topic.startswith(self.root + "cmd/"):
            return
        name = topic[len(self.root) + 4:]
        self.stats["commands"] += 1
        try:
            args = cbor.loads(payload, max_depth=4, max_items=64) if payload else {}
        except cbor.CBORError as e:
            return self._reply(name, {"ok": False, "error": "bad arguments: %s" % e})
        if not isinstance(args, dict):
            args = {}
        result = self.command(name, args)
        if "id" in args:
            result["id"] = args["id"]
        self._reply(name, result)

    def command(self, name, args):
        if name == "ping":
            return {"ok": True, "seq": self.queue.last_id, "pending": self.queue.pending_count,
                    "stats": self.stats}
        if name == "reveal":
            seq = args.get("seq")
            data = self.reveal.get(seq) if self.reveal is not None else None
            if data is not None:
                return {"ok": True, "seq": seq, "input": data}
            return {"ok": False, "error": "input of seq %r is no longer held" % (seq,)}
        if name == "config":
            return {"ok": True, "config": {k: v for k, v in self.cfg.items() if k not in ("password",)}}
        if name == "reboot":
            self._reboot = True
            return {"ok": True}
        return {"ok": False, "error": "unknown command %r" % name}

    def _reply(self, name, result):
        if self.link.connected:
            try:
                self.link._send(self.link.session.publish(self.root + "cmd/" + name + "/result",
                                                          cbor.dumps(result), 1, False, ticks_ms()))
            except OSError:
                pass

    # -- main loop ----------------------------------------------------------------------------
    def run(self, count=None):
        """Run the loop until the sequence number reaches ``count`` (config "count"; 0 = forever), so a
        device restarted after a power cut finishes the same run. Returns the cycles done here."""
        count = int(self.cfg.get("count", 0)) if count is None else count
        self._reboot = False
        next_at = ticks_ms()
        done = 0
        while not count or self.queue.last_id < count:
            now = ticks_ms()
            if now - next_at >= 0:
                next_at = now + self.period_ms
                if self.cycle():
                    done += 1
                self._track_mem()
            self.link.step(wait_ms=max(0, min(50, next_at - ticks_ms())))
            if self._reboot:
                break
        deadline = ticks_ms() + int(self.cfg.get("drain_s", 10)) * 1000
        while not self.link.drained() and ticks_ms() - deadline < 0:
            self.link.step(wait_ms=20)
        self.link.close()
        return done

    def _track_mem(self):
        if not self.gc_every or self.stats["cycles"] % self.gc_every:
            return
        gc.collect()
        try:
            used, free = gc.mem_alloc(), gc.mem_free()
        except AttributeError:  # CPython
            return
        self.stats["heap_size"] = used + free
        if used > self.stats["heap_peak"]:
            self.stats["heap_peak"] = used
