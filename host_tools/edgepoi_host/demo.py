"""``edgepoi demo``: a broker, the edge node and a simulated MicroPython fleet, with a live view.

Everything runs on embedded defaults in a work folder (default ``.edgepoi/demo``): its own Mosquitto on a
free loopback port, the edge node on SQLite, N devices on the real MicroPython. Ctrl-C (or --seconds)
stops everything cleanly and prints a summary.
"""
import os
import shutil
import signal
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from edgepoi_host.edge.ingest import EdgeNode
from edgepoi_host.runtime.broker import Mosquitto
from edgepoi_host.sim import Fleet


def _table(node, fleet, started):
    t = Table(title="edgepoi demo — %ds — broker %s:%d" % (time.time() - started, node.host, node.port))
    for col in ("device", "process", "status", "telemetry", "last seq", "temp °C", "humidity %"):
        t.add_column(col)
    devs = {d["device_id"]: d for d in node.store.devices()}
    for sd in fleet.devices:
        row = devs.get(sd.device_id, {})
        last = node.latest.get(sd.device_id, {})
        r = last.get("readings", {})
        t.add_row(sd.device_id, "running" if sd.alive else "stopped", row.get("status", "-"),
                  str(row.get("telemetry", 0)), str(last.get("seq", "-")),
                  str(r.get("temp_c", "-")), str(r.get("humidity", "-")))
    s = node.counters
    t.caption = "received %d  stored %d  duplicates %d  rejected %d" % (
        s["received"], s["stored"], s["duplicates"], s["rejected"])
    return t


def run(devices=3, seconds=None, workdir=".edgepoi/demo", period_s=1.0, plain=False, console=None):
    console = console or Console()
    if os.path.isdir(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    broker = Mosquitto(workdir=os.path.join(workdir, "broker"))
    broker.start()
    node = fleet = None
    stats = {"telemetry": 0, "rejected": 0}
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    old = signal.signal(signal.SIGINT, on_signal), signal.signal(signal.SIGTERM, on_signal)
    started = time.time()
    try:
        node = EdgeNode(broker.url, os.path.join(workdir, "edge.db")).start()
        fleet = Fleet(broker.url, count=devices, workdir=os.path.join(workdir, "fleet"),
                      period_s=period_s).start()
        console.print("[bold]edgepoi demo[/]: broker %s, edge ledger %s, %d MicroPython devices. "
                      "Ctrl-C to stop." % (broker.url, os.path.join(workdir, "edge.db"), devices))
        if plain:
            last_print = 0
            while not stop["now"] and (seconds is None or time.time() - started < seconds):
                time.sleep(0.2)
                if time.time() - last_print >= 1:
                    last_print = time.time()
                    c = node.counters
                    console.print("t=%3ds stored=%d rejected=%d devices=%d" % (
                        time.time() - started, c["stored"], c["rejected"], len(node.latest)))
        else:
            with Live(_table(node, fleet, started), console=console, refresh_per_second=4) as live:
                while not stop["now"] and (seconds is None or time.time() - started < seconds):
                    time.sleep(0.25)
                    live.update(_table(node, fleet, started))
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])
        if fleet is not None:
            fleet.stop()
        if node is not None:
            time.sleep(0.3)  # let the last messages land
            stats = node.stats()
            node.stop()
        broker.close()
    seen = sorted(node.latest) if node is not None else []
    console.print("[bold]summary[/]: %d devices seen (%s), %d telemetry messages stored, %d rejected" % (
        len(seen), ", ".join(sorted(seen)) or "none", stats["telemetry"], stats["rejected"]))
    return stats
