"""The freshness beacon: each epoch the edge node publishes a retained (epoch, random nonce) that devices
put into their attestations, so a verifier can tell fresh work from replayed or pre-computed work.

Topic ``edgepoi/v1/edge/beacon`` (retained, QoS 1), payload CBOR ``{"epoch": uint, "nonce": bstr(16),
"t": unix seconds}``. Epochs are numbered from 1 and persisted in the ledger's ``beacons`` table; the
verifier (``verify.BeaconPolicy``) accepts the last ``keep`` beacons (the freshness window, ``keep`` x
``epoch_seconds``). The ledger worker rotates it (``worker.LedgerWorker.rotate``) and the MQTT side
publishes it and republishes it after every reconnect.
"""
import time

from edgepoi import cbor

BEACON_TOPIC = "edgepoi/v1/edge/beacon"


def beacon_payload(epoch, nonce):
    return cbor.dumps({"epoch": epoch, "nonce": nonce, "t": int(time.time())})
