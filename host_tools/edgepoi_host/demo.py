"""``edgepoi demo``: a hardened broker, the edge node and MicroPython boards provisioned over serial, live.

Usage::

    edgepoi demo [--devices 3] [--seconds N] [--plain] [--workdir .edgepoi/demo] [--period S]
    summary = edgepoi_host.demo.run(devices=3, seconds=30, workdir="/tmp/d", plain=True)

In the work folder (wiped at the start but for ``models/``): Mosquitto on a free loopback port with a
password file and an ACL (each board's user added as it is provisioned, then SIGHUP); the edge node on
SQLite verifying attestations and re-executing a share of them (audits) with the demo model; N MicroPython
boards on pseudo-terminals (``runtime.ptyboard``), each put on the network by the real ``provision`` path.
Boards are provisioned one after another: ``provision`` rewrites the broker's password file and ACL
(read-modify-write, temp files named by pid), which is not safe from parallel threads; a board takes 2-5 s.
The view is the textual console plus the demo's events and an edge ledger line; with ``--plain`` (or no
terminal) the console's plain lines for device events and a status line per second. Ctrl-C, SIGTERM or
``--seconds`` stop boards, edge node and broker in that order, then print a summary. Helpers start with
SIGINT blocked, so a terminal's Ctrl-C reaches the demo alone, which stops them in order.
Work folder: ``edge.db``, ``broker/`` (passwd, acl, credentials), ``mosquitto/`` (config, log),
``boards/<id>/`` (a board's flash) and ``boards/<id>.console.log``, ``models/``, ``pids.json``.
"""
import contextlib
import json
import os
import queue
import shutil
import signal
import sys
import threading
import time

from edgepoi_host import demo_model
from edgepoi_host import provision as prov
from edgepoi_host.edge import db as dblib
from edgepoi_host.edge.ingest import EdgeNode
from edgepoi_host.edge.store import Ledger
from edgepoi_host.runtime.broker import Mosquitto
from edgepoi_host.runtime.ptyboard import SerialDevice

MARKER = ".edgepoi-demo"             # a work folder holding this was made by the demo: it may be wiped
KEEP = ("models", MARKER)            # what a new run keeps: the model is trained once
# What the view subscribes to: all but the edge's per-record acks, which would double the stream's lines.
TOPICS = ("edgepoi/v1/+/status", "edgepoi/v1/+/telemetry", "edgepoi/v1/+/attest", "edgepoi/v1/+/cmd/#",
          "edgepoi/v1/edge/beacon")
EVENT_STYLE = {"broker": "blue", "edge": "blue", "model": "blue", "provision": "yellow", "audit": "green",
               "rejected": "bold red", "failed": "bold red"}


class DemoError(RuntimeError):
    """The demo cannot start: its work folder belongs to something else."""


@contextlib.contextmanager
def _sigint_blocked():
    """Processes started inside inherit SIGINT blocked: a terminal's Ctrl-C reaches the demo alone."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _fresh(workdir):
    try:
        with open(os.path.join(workdir, "pids.json")) as f:
            pid = json.load(f)["demo"]
        if pid != os.getpid():
            os.kill(pid, 0)                         # raises if it is gone
            raise DemoError("another edgepoi demo (pid %d) runs in %s: stop it or name another --workdir"
                            % (pid, workdir))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if os.path.isdir(workdir) and os.listdir(workdir) and not os.path.exists(os.path.join(workdir, MARKER)):
        raise DemoError("--workdir %s exists and was not made by edgepoi demo: name a new folder" % workdir)
    os.makedirs(workdir, exist_ok=True)
    for name in set(os.listdir(workdir)) - set(KEEP):
        path = os.path.join(workdir, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    open(os.path.join(workdir, MARKER), "w").close()


class Demo:
    """The running parts: ``prepare()`` (broker, edge node), ``launch()`` (boards, in a thread), ``poll()``
    (ledger facts as events), ``stop()`` (all, in order), ``summary()``. Events queue up as
    (time, device or None, kind, text) for whichever view runs (``drain_events()``)."""

    def __init__(self, workdir=".edgepoi/demo", devices=3, period_s=1.0, audit_rate=0.2, epoch_s=60.0):
        self.workdir = os.path.abspath(workdir)
        self.devices, self.period_s, self.audit_rate, self.epoch_s = devices, period_s, audit_rate, epoch_s
        self.t0 = time.time()
        self.creds = self.path("broker")
        self.db_url = "sqlite:///" + self.path("edge.db")
        self.events = queue.Queue()
        self.broker = self.node = self.ledger = self.model = self.edge_user = None
        self.boards = {}                  # device id -> SerialDevice
        self.provisioned = {}             # device id -> seconds from the start until it was online
        self.failed = {}                  # device id -> one-line reason
        self.first_telemetry = None       # seconds from the start
        self.stopping = threading.Event()
        self._thread = self._left = None
        self._lock = threading.Lock()
        self._seen = {"audits": 0, "rejected": 0}

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    def say(self, kind, text, dev=None):
        self.events.put((time.time(), dev, kind, text))

    def drain_events(self):
        return [self.events.get_nowait() for _ in range(self.events.qsize())]

    # -- start --------------------------------------------------------------------------------
    def prepare(self):
        """Work folder, model, broker files, Mosquitto and the edge node (a second or two)."""
        _fresh(self.workdir)
        if not demo_model.is_current(self.path("models", "anomaly.tflite")):
            self.say("model", "training the demo model, an int8 spike detector (first run only)")
        self.model = demo_model.ensure(self.path("models", "anomaly.tflite"))
        prov.update_broker_files(self.creds, [])
        self.edge_user = prov.read_credentials(self.creds, "edge")
        conf = "password_file %s\nacl_file %s" % (os.path.join(self.creds, "passwd"),
                                                 os.path.join(self.creds, "acl"))
        with _sigint_blocked():
            self.broker = Mosquitto(workdir=self.path("mosquitto"), anonymous=False, extra_config=conf).start()
            self.say("broker", "Mosquitto on %s: password file + ACL, no anonymous clients" % self.broker.url)
            self.node = EdgeNode(self.broker.url, self.db_url, username=self.edge_user[0],
                                 password=self.edge_user[1], epoch_seconds=self.epoch_s,
                                 models_dir=self.path("models"), audit_rate=self.audit_rate,
                                 audit_timeout=10.0).start()
        self.ledger = Ledger(dblib.connect(self.db_url))        # the demo's own read connection
        self.say("edge", "edge node: ledger %s, beacon every %.0f s, audits of %.0f%% of the attestations"
                 % (self.path("edge.db"), self.epoch_s, 100 * self.audit_rate))
        return self

    def launch(self):
        """Power the boards on and provision them one by one, in a background thread."""
        self._thread = threading.Thread(target=self._provision_all, name="demo-provision", daemon=True)
        self._thread.start()

    def _provision_all(self):
        try:
            self._provision_boards(["demo-%02d" % (i + 1) for i in range(self.devices)])
        except Exception as e:  # noqa: BLE001 - e.g. micropython missing: one line in the view, not a traceback
            if self.stopping.is_set():
                return
            self.failed["boards"] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.say("failed", "boards: %s" % self.failed["boards"])

    def _provision_boards(self, ids):
        with _sigint_blocked(), self._lock:                 # stop() waits for the boards being started
            for dev in ids:
                if self.stopping.is_set():
                    return
                os.makedirs(self.path("boards", dev))
                self.boards[dev] = SerialDevice(self.path("boards", dev)).start()
        with open(self.path("pids.json"), "w") as f:
            json.dump({"demo": os.getpid(), "broker": self.broker.proc.pid, "edge_worker": self.node._proc.pid,
                       "boards": [b.proc.pid for b in self.boards.values()]}, f)
        for i, dev in enumerate(ids):
            if self.stopping.is_set():
                return
            board = self.boards[dev]
            self.say("provision", "provisioning the board on %s" % board.port, dev)
            try:
                r = prov.provision(board.port, "unix", self.broker.url, dev, self.db_url, model=self.model,
                                   key_uri="file:key.pem", credentials_dir=self.creds,
                                   edge_home=self.path("edge-home"), reload_broker=self._reload, timeout=30,
                                   log=lambda s, d=dev: self.say("provision", s, d),
                                   extra_config={"sensor": {"type": "synthetic", "seed": i + 1},
                                                 "period_s": self.period_s})
            except prov.ProvisionError as e:
                if not self.stopping.is_set():
                    self.failed[dev] = str(e)
                    self.say("failed", "provisioning failed: %s" % e, dev)
                continue
            board.monitor(self.path("boards", dev + ".console.log"))
            self.provisioned[dev] = time.time() - self.t0
            self.say("provision", "provisioned in %.1f s: %d files, %d bytes over serial" % (
                r.seconds, len(r.sync.sent), r.wire_bytes), dev)

    def _reload(self):
        os.kill(self.broker.proc.pid, signal.SIGHUP)        # Mosquitto re-reads its password file and ACL

    # -- watch --------------------------------------------------------------------------------
    def counts(self):
        db = self.ledger.db
        att = dict(db.query("SELECT status, count(*) FROM attestations GROUP BY status"))
        return {"devices": [r[0] for r in db.query("SELECT device_id FROM ledger_devices ORDER BY device_id")],
                "online": db.scalar("SELECT count(*) FROM ledger_devices WHERE status = 'online'", default=0),
                "telemetry": db.scalar("SELECT count(*) FROM telemetry", default=0),
                "accepted": att.get("accepted", 0) + att.get("verified", 0),
                "rejected": db.scalar("SELECT count(*) FROM rejected WHERE topic LIKE '%/attest'", default=0),
                "audits": dict(db.query("SELECT verdict, count(*) FROM audits GROUP BY verdict"))}

    def poll(self):
        """Turn what the ledger learnt since the last call into events (audits, rejections, the first
        telemetry); returns counts()."""
        db = self.ledger.db
        for rid, dev, seq, verdict, detail in db.query("SELECT id, device_id, seq, verdict, detail FROM audits "
                                                       "WHERE id > ? ORDER BY id", (self._seen["audits"],)):
            self._seen["audits"] = rid
            self.say("audit" if verdict == "verified" else "rejected", "seq %d %s: %s" % (seq, verdict, detail),
                     dev)
        for rid, dev, topic, reason, detail in db.query(
                "SELECT id, device_id, topic, reason, detail FROM rejected WHERE id > ? ORDER BY id LIMIT 50",
                (self._seen["rejected"],)):
            self._seen["rejected"] = rid
            self.say("rejected", "%s refused by the edge: %s %s" % (topic.rsplit("/", 1)[-1], reason, detail), dev)
        if self.first_telemetry is None:
            first = db.scalar("SELECT min(received_at) FROM telemetry")
            if first is not None:
                self.first_telemetry = first - self.t0
                self.say("edge", "first telemetry stored %.1f s after the start" % self.first_telemetry)
        return self.counts()

    def status_line(self, c):
        return "%d/%d online · %d telemetry · attestations %d accepted, %d rejected · audits %d verified, " \
               "%d fraudulent" % (c["online"], self.devices, c["telemetry"], c["accepted"], c["rejected"],
                                  c["audits"].get("verified", 0), c["audits"].get("fraudulent", 0))

    def source(self):
        """A console Source on the demo broker (edge credentials) checking signatures with the registry."""
        from edgepoi_host.console.decode import KeyRing
        from edgepoi_host.console.source import Source
        from edgepoi_host.edge.registry import Registry
        return Source(self.broker.url, TOPICS, keys=KeyRing(Registry(dblib.connect(self.db_url))),
                      username=self.edge_user[0], password=self.edge_user[1])

    # -- stop ---------------------------------------------------------------------------------
    def stop(self):
        """Boards (a Ctrl-C on their line: they leave the broker saying offline), edge node, broker.
        Returns the parts still running afterwards (none, normally); a second call returns the same."""
        if self.stopping.is_set() and self._left is not None:
            return self._left
        self.stopping.set()
        with self._lock:
            boards = list(self.boards.values())
        for b in boards:
            if b.alive:
                b.send(b"\x03")
        deadline = time.monotonic() + 2.0
        while self.ledger is not None and self.provisioned and time.monotonic() < deadline and \
                self.ledger.db.scalar("SELECT count(*) FROM ledger_devices WHERE status = 'online'"):
            time.sleep(0.1)
        for b in boards:
            b.close()                # a provisioning in flight fails at once on the closed port
        if self._thread is not None:
            self._thread.join(15)
        left = [d for d, b in self.boards.items() if b.alive]
        if self.node is not None:
            self.node.drain(2.0)
            self.node.stop()
            left += ["edge worker"] if self.node.worker_alive() else []
        if self.broker is not None:
            self.broker.stop()
            left += ["broker"] if self.broker.running else []
        self._left = left
        return left

    def summary(self):
        c = self.counts() if self.ledger else dict(devices=[], telemetry=0, accepted=0, rejected=0, audits={})
        c.update(seconds=time.time() - self.t0, first_telemetry=self.first_telemetry,
                 provisioned=dict(self.provisioned), failed=dict(self.failed))
        return c


def format_summary(s, left=()):
    a, first = s["audits"], s["first_telemetry"]
    lines = ["", "edgepoi demo summary after %.1f s" % s["seconds"],
             "  %d device%s seen (%s)" % (len(s["devices"]), "" if len(s["devices"]) == 1 else "s",
                                           ", ".join(s["devices"]) or "none"),
             "  %d telemetry messages stored" % s["telemetry"],
             "  attestations: %d accepted, %d rejected" % (s["accepted"], s["rejected"]),
             "  audits (re-executed bit-exact by the edge): %d verified, %d fraudulent, %d unverifiable" % (
                 a.get("verified", 0), a.get("fraudulent", 0), a.get("unverifiable", 0)),
             "  time to first telemetry: %s" % ("none arrived" if first is None else "%.1f s" % first)]
    lines += ["  not provisioned: %s: %s" % kv for kv in sorted(s["failed"].items())]
    lines.append("  still running: %s" % ", ".join(left) if left else
                 "  stopped: boards, edge node, broker (nothing left running)")
    return "\n".join(lines) + "\n"


# -- views ------------------------------------------------------------------------------------------

def run_plain(demo, out, seconds=None):
    """Device events as the console's plain lines, the demo's own events, a status line per second."""
    source = demo.source().start()
    next_status = 0.0
    try:
        while not demo.stopping.is_set() and (seconds is None or time.time() - demo.t0 < seconds):
            rec = source.get(timeout=0.1)
            while rec is not None:
                if rec.device_event:
                    out.write(rec.line() + "\n")
                rec = source.get(timeout=0)
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + 1.0
                demo.say("status", demo.status_line(demo.poll()))       # after the events poll() found
            for t, dev, kind, text in demo.drain_events():
                out.write("[%6.1fs] %-8s %-9s %s\n" % (t - demo.t0, dev or "demo", kind, text))
            out.flush()
    finally:
        source.stop()


def make_app(demo, seconds=None):
    """The console app, with the demo's events in its stream and the edge ledger's line under it."""
    from rich.text import Text
    from textual.binding import Binding
    from textual.widgets import RichLog, Static

    from edgepoi_host.console.app import ConsoleApp

    class DemoApp(ConsoleApp):
        TITLE = "edgepoi demo"
        CSS = ConsoleApp.CSS + "\n#edge { height: 1; padding: 0 1; background: $panel; }\n"
        BINDINGS = ConsoleApp.BINDINGS + [Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

        def __init__(self):
            left = None if seconds is None else max(0.5, seconds - (time.time() - demo.t0))
            super().__init__(demo.source(), seconds=left)
            self.demo = demo
            self._next_edge = 0.0

        def compose(self):
            yield from super().compose()
            yield Static(id="edge")

        def poll(self):
            if demo.stopping.is_set():
                self.exit()
                return
            lines = []
            for t, dev, kind, text in demo.drain_events():
                line = Text(time.strftime("%H:%M:%S ", time.localtime(t)), style="dim")
                line.append((dev or "demo").ljust(12), style="bold")
                line.append(" %-9s " % kind, style=EVENT_STYLE.get(kind, ""))
                lines.append(line.append(text, style=EVENT_STYLE.get(kind, "")))
            if lines:
                self.query_one("#stream", RichLog).write(Text("\n").join(lines), expand=True)
            super().poll()
            if time.monotonic() >= self._next_edge:
                self._next_edge = time.monotonic() + 0.5
                self.query_one("#edge", Static).update(Text("edge ledger: " + demo.status_line(demo.poll()),
                                                            style="bold"))

    return DemoApp()


def _devnull(out):
    """After EPIPE: send what is left of ``out`` (and Python's exit-time flush) nowhere."""
    if out is sys.stdout:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return open(os.devnull, "w")


def run(devices=3, seconds=None, workdir=".edgepoi/demo", period_s=1.0, plain=False, out=None):
    """Run the demo until Ctrl-C, SIGTERM or ``seconds``; print and return the summary dict."""
    out = out or sys.stdout
    plain = plain or not out.isatty()
    demo = Demo(workdir, devices, period_s)
    handlers = {sig: signal.signal(sig, lambda signum, frame: demo.stopping.set())
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    left = []
    try:
        out.write("edgepoi demo: Mosquitto, the edge node and %d MicroPython boards provisioned over pseudo-"
                  "terminals, in %s. %s stops it.\n" % (devices, demo.workdir, "Ctrl-C" if plain else "q or Ctrl-C"))
        out.flush()
        demo.prepare()
        demo.launch()
        if plain:
            run_plain(demo, out, seconds)
        else:
            make_app(demo, seconds).run()
    except BrokenPipeError:          # `edgepoi demo --plain | head`: the reader left, stop
        out = _devnull(out)
    finally:
        left = demo.stop()
        for sig, h in handlers.items():
            signal.signal(sig, h)
    summary = demo.summary()
    try:
        out.write(format_summary(summary, left))
        out.flush()
    except BrokenPipeError:
        _devnull(out)
    if demo.ledger is not None:
        demo.ledger.close()
    return summary
