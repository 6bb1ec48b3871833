# Device application (MicroPython board or CPython host): runs the edgepoi agent from config.json.
#
#   micropython main.py [config.json]      (on a board, boot.py runs first and the port starts main.py)
#
# Joins Wi-Fi when the board has it and the config names a network, then runs the agent: read the sensor,
# run the model, sign attestations, queue everything on flash and drain the queue over MQTT
# (see edgepoi/agent.py). boot.py leaves a board problem in edgepoi.BOOT_ERROR: then nothing starts.
# The code is edgepoi.app (main.py is compiled from source on the board: the less it holds, the less heap).
import sys

from edgepoi.app import main

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "config.json")
