"""The live telemetry console (``edgepoi console``): decode any MQTT message, keep fleet state, show it.

- ``decode``: pure functions, MQTT message -> Record (CBOR telemetry, COSE attestations with signatures
  checked, JSON/text/hex for everything else).
- ``model``: fleet state built from Records (devices table, rates, verdicts).
- ``source``: the paho-mqtt client in its own thread, handing Records over through a queue.
- ``app``: the textual App; ``plain``: one line per message for scripts.
"""
