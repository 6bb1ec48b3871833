"""The device application that ``firmware/main.py`` starts: join Wi-Fi, then run the agent from config.json.

It lives in the package rather than in main.py because main.py is compiled from source on the board (its
bytecode and names would take heap), while this module runs from the package's .mpy (in place on a ROMFS
board). Usage (what main.py does)::

    from edgepoi.app import main
    main("config.json")
"""
import sys

import edgepoi
from edgepoi.agent import Agent, load_config


def connect_wifi(cfg, timeout_s=20):
    """Station mode on boards with a network module (edgepoi.wifi, forgotten again afterwards)."""
    from edgepoi import wifi
    try:
        return wifi.connect(cfg, timeout_s)
    finally:
        wifi = None
        if sys.implementation.name == "micropython":
            edgepoi.unload("edgepoi.wifi")


def main(path="config.json"):
    """Start the agent (unless boot.py left a board problem in edgepoi.BOOT_ERROR) and run it."""
    err = getattr(edgepoi, "BOOT_ERROR", None)
    if err:
        print("edgepoi: not starting, boot reported:", err)
        return
    cfg = load_config(path)
    connect_wifi(cfg)
    agent = Agent(cfg, flash_dir=cfg.get("flash_dir", "."))
    print("edgepoi agent", cfg["device_id"], "seq", agent.queue.last_id, "pending", agent.queue.pending_count)
    done = agent.run()
    print("done", cfg["device_id"], done, agent.stats, agent.link.stats, "last link error:", agent.link.last_error)
