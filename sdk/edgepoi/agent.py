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
from edgepoi.sensors import ConfigError
from edgepoi.window import Inputs, quantize_into

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


def _default_gc_every():
    if not MICROPYTHON:
        return 0
    try:
        total = gc.mem_alloc() + gc.mem_free()
    except AttributeError:
        return 1
    return 1 if total <= 192 * 1024 else 16


class _QueueState:
    """The attester's counter and chain state, both kept by the queue: the next sequence number is one past
    the newest queued record, and the previous attestation is the one in that record."""

    def __init__(self, queue, attest_topic):
        self.queue = queue
        self.attest_topic = attest_topic

    def next(self):
        return self.queue.last_id + 1

    peek = next

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


class Agent:
    def __init__(self, cfg, sensor=None, flash_dir="."):
        self.cfg = cfg
        self.dev = cfg["device_id"]
        self.root = TOPIC_ROOT + self.dev + "/"
        self.tele_topic = self.root + "telemetry"
        self.attest_topic = self.root + "attest"
        self.ota = None
        if cfg.get("edge_key"):          # hex of the edge node's 65-byte public key: model updates on
            from edgepoi.ota import ModelUpdate
            mdir, _, mname = (cfg.get("model") or "model.tflite").rpartition("/")
            # before the model is loaded: start-up finishes or undoes a swap cut by a power loss
            self.ota = ModelUpdate(bytes.fromhex(cfg["edge_key"]), mdir or flash_dir, mname,
                                   reload=self._reload_model, device_id=self.dev,
                                   max_size=int(cfg.get("model_max_bytes", 1 << 20)))
        self.period_ms = int(float(cfg.get("period_s", 1.0)) * 1000)
        self.window = int(cfg.get("window", 16))
        self.input_reading = cfg.get("input", "temp_c")  # the reading the model's window is made of
        self.win = bytearray(0)  # the sliding window, already quantized: newest sample last
        self.filled = 0          # how many samples of the window are real (it is full at self.window)
        self.flash_dir = flash_dir
        self.epoch, self.nonce = self._load_beacon()
        self.reveal = None  # Inputs: the window and the newest attested inputs (made with the model)
        self.stats = {"cycles": 0, "inferences": 0, "unattested": 0, "paused": 0, "commands": 0,
                      "heap_peak": 0, "heap_size": 0}
        # MicroPython: collect around every cycle on a small heap (cheap there, and garbage freed in order
        # keeps it from fragmenting), every 16th on a large one (where a collection costs more than it
        # saves); heap_peak is the most live heap seen after a collecting cycle (the high-water mark of
        # what the loop keeps), heap_size the whole heap
        self.gc_every = int(cfg.get("gc_every", _default_gc_every()))
        self.interp = None
        self.attester = None
        # set after the model, assigned now: the instance's attribute table reaches its size early
        self.queue = self.sensor = self.link = None
        self._reboot = False
        # The model first: its big buffers are allocated while the heap is still in one piece (a small
        # heap never moves what it allocated), and loading it peaks before the rest is in: the queue,
        # sensor, signing and MQTT code is imported only then (small objects, into the holes it left).
        # Each later step starts with a collection, so that what it keeps goes into the holes the
        # previous step's garbage left rather than past it (fewer, larger holes for the loop).
        if cfg.get("model"):
            self._load_model(cfg["model"], cfg.get("backend", "auto"))
        gc.collect()
        # Then a block is held while the rest is set up, and freed at the end: the loop starts with one
        # free block of that size beyond the holes start-up leaves (first fit fills those first), for
        # the few allocations of a cycle too big for them (the attestation's). Without it, 1 in 3 runs
        # of a micro_speech-sized agent in 96K failed at its first attestation. The rest is set up
        # again without it if it leaves too little for the set-up itself.
        n = int(cfg.get("loop_reserve", 4096 if self.gc_every == 1 else 0))
        try:
            reserve = bytearray(n) if n > 0 else None
        except MemoryError:
            reserve = None
        try:
            self._setup(cfg, sensor, flash_dir)
        except MemoryError:
            if reserve is None:
                raise
            reserve = None
            if self.queue is not None:
                self.queue.close()
            self.queue = self.attester = self.link = None
            gc.collect()
            self._setup(cfg, sensor, flash_dir)
        self.stats["loop_reserve"] = len(reserve) if reserve is not None else 0
        reserve = None
        gc.collect()

    def _setup(self, cfg, sensor, flash_dir):
        """Start-up after the model: the flash queue, the sensor, the signing key and the MQTT link."""
        from edgepoi.link.flashq import FlashQueue
        self.queue = FlashQueue(flash_dir + "/queue", max_bytes=int(cfg.get("queue_bytes", 64 * 1024)))
        gc.collect()
        self.sensor = sensor or _make_sensor(cfg.get("sensor", {}))
        if cfg.get("key"):
            gc.collect()
            from edgepoi import attest
            from edgepoi.keys import open_key
            state = _QueueState(self.queue, self.attest_topic)
            self.attester = attest.Attester(open_key(cfg["key"]), self.dev, state, state)
        gc.collect()
        from edgepoi.link.link import Link
        self.link = Link(self.dev, cfg["broker_host"], int(cfg["broker_port"]), self.queue,
                         keepalive=int(cfg.get("keepalive", 30)), username=cfg.get("username"),
                         password=cfg.get("password"), status_topic=self.root + "status",
                         subscriptions=[self.root + "cmd/+", BEACON_TOPIC] +
                         ([self.root + "model/#"] if self.ota is not None else []),
                         on_message=self._on_message, ack_topic=self.root + "ack",
                         backoff_min_ms=int(cfg.get("backoff_min_ms", 250)),
                         backoff_max_ms=int(cfg.get("backoff_max_ms", 30000)))

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
        # of the tensor details only what the loop uses (the detail dicts hold ~600 bytes each)
        d = self.interp.get_input_details()[0]
        self.in_index, self.in_shape, self.in_q = d["index"], d["shape"], d["quantization"]
        d = self.interp.get_output_details()[0]
        self.out_index, self.out_q = d["index"], d["quantization"]
        d = None
        n = 1
        for k in self.in_shape:
            n *= int(k)
        self.window = n
        # the agent's own big buffers next to the model's (reserved when it was opened), before
        # allocate_tensors() drops the parser and leaves holes only small objects fit in
        gc.collect()
        # audits need the inputs of recent inferences: they overlap the window (see window.Inputs)
        shape = self.in_shape
        step = n // int(shape[1]) if len(shape) > 1 and int(shape[1]) else 1
        self.reveal = Inputs(n, step, max(1, int(self.cfg.get("reveal_slots", 8))),
                              int(self.cfg.get("reveal_bytes", 8192)))
        self.win = self.reveal.win
        self.filled = 0
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
        quantize_into(values, out, 0, self.in_q)
        return out

    def _push(self, reading):
        """Slide the window by one reading: a number, or a frame (list) of numbers (e.g. a spectrogram
        row). The window stays one bytearray, so a 2 KB input costs 2 KB of heap, not a list of floats."""
        frame = reading if isinstance(reading, (list, tuple)) else (reading,)
        n, k = self.window, len(frame)
        if k >= n:
            frame, k = frame[k - n:], n
        self.reveal.slide(k)
        quantize_into(frame, self.win, n - k, self.in_q)
        self.filled = min(n, self.filled + k)

    def _infer(self, qin):
        it = self.interp
        if MICROPYTHON:
            it.set_tensor(self.in_index, qin)
            it.invoke()
            return bytes(it.get_tensor(self.out_index))
        import numpy as np
        arr = np.frombuffer(bytes(qin), dtype=np.int8).reshape([int(d) for d in self.in_shape])
        it.set_tensor(self.in_index, arr)
        it.invoke()
        return it.get_tensor(self.out_index).tobytes()

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
        ts = int(time.time())
        scalars = {k: v for k, v in readings.items() if not isinstance(v, (list, tuple))}
        out = att = None
        if self.interp is not None and first is not None:
            self._push(first)
            readings = first = None  # a frame (a list of floats) is in the window now: not held meanwhile
            if self.filled == self.window:
                qin = self.win
                out = self._infer(qin)
                self.stats["inferences"] += 1
                if self.attester is not None and len(self.nonce) < 8:
                    self.stats["unattested"] += 1  # no beacon seen yet: nothing fresh to sign with
                elif self.attester is not None:
                    import hashlib
                    prev = self.attester.prev
                    att = self.attester.attest(self.model_digest, hashlib.sha256(qin).digest(), out,
                                               self.interp.macs, self.interp.backend,
                                               bool(self.interp.bit_exact), self.epoch, self.nonce)
        # the telemetry is made after the signing, the step that needs the most heap
        tele = {"dev": self.dev, "seq": seq, "ts": ts, "readings": scalars, "q": self.queue.pending_count}
        if out is not None:
            scale, zp = self.out_q
            tele["inference"] = {"out": [round(((b - 256 if b > 127 else b) - zp) * scale, 4) for b in out[:8]],
                                 "backend": self.interp.backend}
        if att is not None:
            tele["a"] = True  # this cycle's record also holds an attestation (the edge acks both)
        messages = [(self.tele_topic, cbor.dumps(tele), False)]
        tele = None
        if att is not None:
            messages.append((self.attest_topic, att, False))
        try:
            self.queue.append(seq, self.link.record(messages))
        except self.queue.Full:
            if att is not None:
                self.attester.prev = prev  # this attestation was never queued: keep the chain whole
            self.stats["paused"] += 1
            return False
        if att is not None:
            self.reveal.mark(seq)
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
        if topic.startswith(self.root + "cmd/"):
            # rare: the command code is imported for it and forgotten again (its heap is free meanwhile)
            from edgepoi import commands
            try:
                commands.handle(self, topic[len(self.root) + 4:], payload)
            finally:
                commands = None
                if MICROPYTHON:
                    import edgepoi
                    edgepoi.unload("edgepoi.commands")

    def _reply(self, name, result):
        """Publish a command's result: a map, or its CBOR as a list of pieces (sent one after another)."""
        if not self.link.connected:
            return
        if not isinstance(result, list):
            try:
                result = [cbor.dumps(result)]
            except MemoryError:  # a small heap full of this step's garbage (the request): collect, again
                gc.collect()
                result = [cbor.dumps(result)]
        try:
            self.link.publish_now(self.root + "cmd/" + name + "/result", result)
        except OSError:
            pass

    # -- main loop ----------------------------------------------------------------------------
    def run(self, count=None):
        """Run the loop until the sequence number reaches ``count`` (config "count"; 0 = forever), so a
        device restarted after a power cut finishes the same run. Returns the cycles done here."""
        from edgepoi.link.link import ticks_ms
        count = int(self.cfg.get("count", 0)) if count is None else count
        self._reboot = False
        next_at = ticks_ms()
        done = 0
        while not count or self.queue.last_id < count:
            now = ticks_ms()
            if now - next_at >= 0:
                next_at = now + self.period_ms
                if self.gc_every and not self.stats["cycles"] % self.gc_every:
                    gc.collect()  # the link's garbage too: the cycle starts from a compact heap
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
