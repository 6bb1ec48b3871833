"""The freshness beacon: each epoch the edge node publishes a retained (epoch, random nonce) that devices
put into their attestations, so a verifier can tell fresh work from replayed or pre-computed work.

Topic ``edgepoi/v1/edge/beacon`` (retained, QoS 1), payload CBOR ``{"epoch": uint, "nonce": bstr(16),
"t": unix seconds}``. Epochs are numbered from 1 and persisted in the ledger's ``beacons`` table; the
verifier accepts the last ``keep`` beacons (the freshness window, ``keep`` × ``epoch_seconds``).
"""
import os
import threading
import time

from edgepoi import cbor

BEACON_TOPIC = "edgepoi/v1/edge/beacon"


class Beacon:
    def __init__(self, ledger, policy, publish, epoch_seconds=600.0):
        self.ledger = ledger
        self.policy = policy
        self.publish = publish  # function(topic, payload_bytes, retain)
        self.epoch_seconds = epoch_seconds
        self.current = None
        self._stop = threading.Event()
        self._thread = None
        for epoch, nonce in ledger.recent_beacons(policy.keep):
            policy.add(epoch, nonce)
            self.current = (epoch, nonce)

    def payload(self):
        epoch, nonce = self.current
        return cbor.dumps({"epoch": epoch, "nonce": nonce, "t": int(time.time())})

    def rotate(self):
        """Start a new epoch: a fresh nonce, stored, accepted, published retained."""
        epoch = (self.current[0] + 1) if self.current else 1
        nonce = os.urandom(16)
        self.ledger.add_beacon(epoch, nonce)
        self.policy.add(epoch, nonce)
        self.current = (epoch, nonce)
        self.publish(BEACON_TOPIC, self.payload(), True)
        return self.current

    def start(self):
        if self.current is None:
            self.rotate()
        else:
            self.publish(BEACON_TOPIC, self.payload(), True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edge-beacon", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.epoch_seconds):
            self.rotate()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(2)
