"""Edge node ingest throughput against a bare paho subscriber, on the same broker, in the same run.

    python benchmarks/edge_ingest.py [--devices 50] [--records 600] [--db sqlite|postgresql://...] [--kill]

Each simulated device record is a CBOR telemetry message and a signed attestation (COSE_Sign1, ES256,
chained), pre-signed before the clock starts. Both consumers are measured the same way: their persistent
session exists, the messages are queued at the broker while they are offline, then they connect and the
time to drain everything is measured (the bare subscriber only counts; the edge node decodes, verifies
every signature, chain and nonce, writes the ledger and acks). With --kill the edge node is SIGKILLed
half way, restarted, and the stored count must still equal the sent count.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as mqtt

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "host_tools"))

from edgepoi import attest, cbor  # noqa: E402
from edgepoi.counter import MemoryCounter  # noqa: E402
from edgepoi.keys import open_key  # noqa: E402
from edgepoi_host.edge import db as dblib  # noqa: E402
from edgepoi_host.edge.registry import Registry  # noqa: E402
from edgepoi_host.edge.store import Ledger  # noqa: E402
from edgepoi_host.runtime.broker import Mosquitto  # noqa: E402


def make_messages(workdir, devices, records, epoch, nonce):
    msgs = []
    keys = {}
    for d in range(devices):
        dev = "bench-%03d" % d
        key = open_key("file:" + os.path.join(workdir, dev + ".pem"))
        keys[dev] = key.public_key()
        att = attest.Attester(key, dev, MemoryCounter(), attest.MemoryStore())
        for seq in range(1, records + 1):
            msgs.append(("edgepoi/v1/%s/telemetry" % dev,
                         cbor.dumps({"dev": dev, "seq": seq, "ts": 1795000000 + seq,
                                     "readings": {"temp_c": 21.5, "humidity": 40.0}})))
            msgs.append(("edgepoi/v1/%s/attest" % dev,
                         att.attest(b"\x11" * 32, os.urandom(32), b"\x05" * 12, 336000, "numpy", True,
                                    epoch, nonce)))
    # interleave devices the way a fleet publishes
    msgs.sort(key=lambda m: (int(cbor.loads(m[1])["seq"]) if m[0].endswith("telemetry") else 0))
    return msgs, keys


def publish_all(broker, msgs):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(broker.host, broker.port)
    c.loop_start()
    pending = []
    for t, p in msgs:
        pending.append(c.publish(t, p, qos=1))
        if len(pending) >= 5000:  # keep paho's own queue bounded
            for i in pending:
                i.wait_for_publish(60)
            pending = []
    for i in pending:
        i.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def bare_subscriber_drain(broker, msgs):
    got = [0, None, None]

    def on_msg(c, u, m):
        now = time.perf_counter()
        if got[1] is None:
            got[1] = now
        got[0] += 1
        got[2] = now

    def session():
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare", protocol=mqtt.MQTTv5)
        c.on_message = on_msg
        c.max_inflight_messages_set(1000)
        return c

    p = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    p.SessionExpiryInterval = 3600
    c = session()
    c.connect(broker.host, broker.port, clean_start=False, properties=p)
    c.subscribe([("edgepoi/v1/+/telemetry", 1), ("edgepoi/v1/+/attest", 1)])
    c.loop_start()
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()
    publish_all(broker, msgs)
    c = session()
    t0 = time.perf_counter()
    c.connect(broker.host, broker.port, clean_start=False, properties=p)
    c.loop_start()
    while got[0] < len(msgs):
        time.sleep(0.01)
        if time.perf_counter() - t0 > 600:
            break
    c.disconnect()
    c.loop_stop()
    return got[0], time.perf_counter() - t0


def edge_cmd(broker, db_url, seconds=None):
    cmd = [sys.executable, "-m", "edgepoi_host.cli", "edge", "--broker", broker.url, "--db", db_url,
           "--epoch-seconds", "3600"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_line(proc, text, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        line = proc.stdout.readline()
        if text in line:
            return
    raise RuntimeError("edge node did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--records", type=int, default=600, help="records per device (x2 messages)")
    ap.add_argument("--db", default="sqlite",
                    help="sqlite, or a PostgreSQL server URL: the benchmark creates and drops its own database")
    ap.add_argument("--kill", action="store_true", help="SIGKILL the edge node half way and restart it")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="edgepoi-bench-")
    pg_admin = None
    if a.db == "sqlite":
        db_url = "sqlite:///" + os.path.join(work, "edge.db")
    else:  # a throwaway database on that server, never the server's own ones
        import psycopg
        import uuid
        pg_admin = psycopg.connect(a.db, autocommit=True)
        name = "edgepoi_bench_" + uuid.uuid4().hex[:8]
        pg_admin.execute("CREATE DATABASE %s" % name)
        db_url = a.db.rsplit("/", 1)[0] + "/" + name
    try:
        return run(a, work, db_url)
    finally:
        if pg_admin is not None:
            pg_admin.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


def run(a, work, db_url):
    with Mosquitto(workdir=os.path.join(work, "broker")) as broker:
        # the ledger with its first beacon epoch; devices sign with that nonce
        ledger = Ledger(db_url)
        epoch, nonce = 1, os.urandom(16)
        ledger.add_beacon(epoch, nonce)
        t0 = time.perf_counter()
        msgs, keys = make_messages(work, a.devices, a.records, epoch, nonce)
        print("signed %d records for %d devices in %.1fs" % (len(msgs) // 2, a.devices,
                                                              time.perf_counter() - t0))
        reg = Registry(ledger.db)
        for dev, pub in keys.items():
            reg.register(dev, pub, kind="file")
        ledger.close()

        n, dt = bare_subscriber_drain(broker, msgs)
        bare_rate = n / dt
        print("bare paho subscriber: %d messages in %.2fs = %.0f msg/s" % (n, dt, bare_rate))

        edge = edge_cmd(broker, db_url)  # creates its persistent session, then goes away
        wait_line(edge, "edge node:")
        edge.send_signal(signal.SIGINT)
        edge.wait(30)
        publish_all(broker, msgs)  # everything waits at the broker for the edge node's session
        t0 = time.perf_counter()
        edge = edge_cmd(broker, db_url)
        killed = False
        total = len(msgs)
        ledger = Ledger(db_url)
        while True:
            s = ledger.stats()
            done = s["telemetry"] + s["attestations"] + s["rejected"]
            if a.kill and not killed and done >= total // 2:
                edge.kill()
                edge.wait()
                killed = True
                print("edge node SIGKILLed at %d of %d stored; restarting" % (done, total))
                edge = edge_cmd(broker, db_url)
            if done >= total or time.perf_counter() - t0 > 900:
                break
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        edge.send_signal(signal.SIGINT)
        edge.wait(30)
        s = ledger.stats()
        ledger.close()
        edge_rate = total / dt
        print("edge node (verify + ledger): %d messages in %.2fs = %.0f msg/s" % (total, dt, edge_rate))
        print("stored telemetry %d + attestations %d (rejected %d: %s) of %d sent"
              % (s["telemetry"], s["attestations"], s["rejected"], s["rejected_by_reason"], total))
        print("ratio edge/bare = %.2f (target >= 0.50)" % (edge_rate / bare_rate))
        ok = s["telemetry"] + s["attestations"] == total and s["rejected"] == 0
        print("stored == sent: %s" % ok)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
