# Device application (MicroPython board or CPython host): runs the edgepoi agent from config.json.
#
#   micropython main.py [config.json]      (on a board, boot.py runs first and main.py is started by the port)
#
# The agent reads the sensor, runs the model, signs attestations, queues everything on flash and drains
# the queue over MQTT; see edgepoi/agent.py.
import sys

from edgepoi.agent import Agent, load_config


def main(path="config.json"):
    cfg = load_config(path)
    agent = Agent(cfg, flash_dir=cfg.get("flash_dir", "."))
    print("edgepoi agent", cfg["device_id"], "seq", agent.queue.last_id, "pending", agent.queue.pending_count)
    done = agent.run()
    print("done", cfg["device_id"], done, agent.stats, agent.link.stats)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "config.json")
