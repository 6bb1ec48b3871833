# Device application (MicroPython board or CPython host): runs the edgepoi agent from config.json.
#
#   micropython main.py [config.json]      (on a board, boot.py runs first and the port starts main.py)
#
# Joins Wi-Fi when the board has it and the config names a network, then runs the agent: read the sensor,
# run the model, sign attestations, queue everything on flash and drain the queue over MQTT
# (see edgepoi/agent.py). boot.py leaves a board problem in edgepoi.BOOT_ERROR: then nothing starts.
import sys
import time

import edgepoi
from edgepoi.agent import Agent, load_config


def connect_wifi(cfg, timeout_s=20):
    """Station mode on boards with a network module; a no-op where the OS does networking."""
    ssid = cfg.get("wifi_ssid")
    if not ssid:
        return True
    try:
        import network
    except ImportError:
        return True
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(ssid, cfg.get("wifi_password", ""))
        deadline = time.ticks_add(time.ticks_ms(), timeout_s * 1000)
        while not wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            time.sleep_ms(200)
    if not wlan.isconnected():
        print("wifi: could not join", ssid, "- the agent queues work and retries the broker")
        return False
    return True


def main(path="config.json"):
    err = getattr(edgepoi, "BOOT_ERROR", None)
    if err:
        print("edgepoi: not starting, boot reported:", err)
        return
    cfg = load_config(path)
    connect_wifi(cfg)
    agent = Agent(cfg, flash_dir=cfg.get("flash_dir", "."))
    print("edgepoi agent", cfg["device_id"], "seq", agent.queue.last_id, "pending", agent.queue.pending_count)
    done = agent.run()
    print("done", cfg["device_id"], done, agent.stats, agent.link.stats)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "config.json")
