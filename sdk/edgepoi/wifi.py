"""Joining Wi-Fi at start-up (station mode), for boards with a ``network`` module.

Used once by ``edgepoi.app`` before the agent starts, then forgotten (``edgepoi.unload``): its code and
texts need no heap while the agent runs.
"""
import time


def connect(cfg, timeout_s=20):
    """Join cfg["wifi_ssid"]; True when joined (or when there is nothing to join: no SSID configured, or
    the OS does the networking), False after timeout_s seconds without a connection."""
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
