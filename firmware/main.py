# Device application (MicroPython and CPython): read the sensor, publish CBOR telemetry over MQTT.
#
# Thin first version: config.json in the working directory (the board's flash) names the device, the broker
# and the sampling period. The full runtime (store-and-forward queue, inference, attestations) replaces
# this loop as the device runtime lands.
import json
import sys
import time

from edgepoi import cbor
from edgepoi.mqtt.client import MQTTClient, MQTTError
from edgepoi.sensors.synthetic import SyntheticSensor

TOPIC_ROOT = "edgepoi/v1/"


def load_config(path="config.json"):
    with open(path) as f:
        cfg = json.load(f)
    for key in ("device_id", "broker_host", "broker_port"):
        if key not in cfg:
            raise ValueError("config.json: missing %r" % key)
    return cfg


def now_ms():
    try:
        return time.ticks_ms()
    except AttributeError:
        return int(time.monotonic() * 1000)


def connect(cfg, status_topic):
    client = MQTTClient(cfg["device_id"], cfg["broker_host"], int(cfg["broker_port"]),
                        keepalive=int(cfg.get("keepalive", 30)),
                        will=(status_topic, b"offline", 1, True),
                        username=cfg.get("username"), password=cfg.get("password"))
    client.connect()
    client.publish(status_topic, b"online", qos=1, retain=True)
    return client


def run(cfg):
    dev = cfg["device_id"]
    root = TOPIC_ROOT + dev + "/"
    status_topic = root + "status"
    sensor = SyntheticSensor(seed=int(cfg.get("seed", 1)))
    period_ms = int(float(cfg.get("period_s", 1.0)) * 1000)
    limit = int(cfg.get("count", 0))  # 0 = run forever
    qos = int(cfg.get("qos", 1))
    seq = 0
    client = None
    backoff_ms = 250
    while not limit or seq < limit:
        if client is None:
            try:
                client = connect(cfg, status_topic)
                backoff_ms = 250
                print("online", dev)
            except (MQTTError, OSError) as e:
                print("connect failed:", e)
                time.sleep_ms(backoff_ms) if hasattr(time, "sleep_ms") else time.sleep(backoff_ms / 1000)
                backoff_ms = min(backoff_ms * 2, 8000)
                continue
        started = now_ms()
        msg = {"dev": dev, "seq": seq, "ts": int(time.time()), "readings": sensor.read()}
        try:
            client.publish(root + "telemetry", cbor.dumps(msg), qos=qos)
            client.poll()
            seq += 1
        except (MQTTError, OSError) as e:
            print("link lost:", e)
            client.close()
            client = None
            continue
        wait = period_ms - (now_ms() - started)
        if wait > 0:
            time.sleep(wait / 1000)
    if client is not None:
        client.publish(status_topic, b"offline", qos=1, retain=True)
        client.disconnect()
    print("done", dev, seq)


if __name__ == "__main__":
    run(load_config(sys.argv[1] if len(sys.argv) > 1 else "config.json"))
