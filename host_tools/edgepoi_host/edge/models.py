"""Edge side of a model update over MQTT: sign a manifest, publish it, then the chunks (CPython, paho).

    from edgepoi.keys import open_key
    from edgepoi_host.edge.models import publish_model
    info = publish_model(client, "kitchen-1", "model.tflite", open_key("file:edge.pem"), version=3)
    # the device answers on edgepoi/v1/kitchen-1/cmd/model/result; resend what it reports missing:
    publish_model(client, "kitchen-1", "model.tflite", signer, 3, only=result["missing"])

Topics (docs/DEVICE.md "Model updates"): ``edgepoi/v1/<id>/model/manifest`` carries a COSE_Sign1
(ES256, the edge key) over the deterministic-CBOR map {name, size, sha256, chunk_size, chunks,
version, device}; ``edgepoi/v1/<id>/model/chunk/<n>`` the raw bytes of chunk n, all QoS 1, not
retained. The client must be connected with its network loop running (``loop_start()``).
"""
import hashlib
import os

from edgepoi import cbor
from edgepoi import cose

TOPIC_ROOT = "edgepoi/v1/"


class ModelPublishError(RuntimeError):
    """The model cannot be published (bad file or chunk size, broker did not take a message)."""


def build_manifest(path, version, chunk_size=2048, name=None, device_id=None):
    """The manifest dict of the model file at path (read in chunks, hashed)."""
    if not 64 <= chunk_size <= 8192:
        raise ModelPublishError("chunk_size %d not in 64..8192 (the device's MQTT packet limit)" % chunk_size)
    if not isinstance(version, int) or version < 0:
        raise ModelPublishError("version must be an integer >= 0")
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(65536), b""):
            h.update(block)
            size += len(block)
    if not size:
        raise ModelPublishError("%s is empty" % path)
    m = {"name": name or os.path.basename(path), "size": size, "sha256": h.digest(),
         "chunk_size": chunk_size, "chunks": (size + chunk_size - 1) // chunk_size, "version": version}
    if device_id is not None:
        m["device"] = device_id
    return m


def sign_manifest(manifest, signer):
    """COSE_Sign1 bytes of the manifest, signed by the edge node's key."""
    return cose.sign1(cbor.dumps(manifest), signer)


def publish_model(client, device_id, path, signer, version, chunk_size=2048, name=None, only=None,
                  timeout=30.0, bind_device=True):
    """Publish a signed manifest and the model's chunks to one device.

    Args:
        client: a connected paho-mqtt Client with its loop running.
        device_id: the target device; the manifest names it unless bind_device is False.
        path: the .tflite file.
        signer: the edge node's key (edgepoi.keys signer).
        version: the model version (must be newer than the device's).
        chunk_size: bytes per chunk (64..8192).
        only: chunk indices to send, in that order (a resend of what the device reports missing);
            default all of them in order.
        timeout: seconds to wait for the broker to take each message.
    Returns:
        {"manifest": dict, "topic": manifest topic, "sent": chunks published}
    Raises:
        ModelPublishError.
    """
    m = build_manifest(path, version, chunk_size, name, device_id if bind_device else None)
    root = TOPIC_ROOT + device_id + "/model/"
    _publish(client, root + "manifest", sign_manifest(m, signer), timeout)
    indices = range(m["chunks"]) if only is None else list(only)
    sent = 0
    pending = []
    with open(path, "rb") as f:
        for n in indices:
            if not 0 <= n < m["chunks"]:
                raise ModelPublishError("chunk %d not in 0..%d" % (n, m["chunks"] - 1))
            f.seek(n * chunk_size)
            info = client.publish(root + "chunk/%d" % n, f.read(chunk_size), qos=1, retain=False)
            if info.rc != 0:
                raise ModelPublishError("publish of chunk %d failed (rc %d)" % (n, info.rc))
            pending.append(info)
            sent += 1
            if len(pending) >= 16:          # bounded in-flight: never the whole model queued in paho
                _wait(pending.pop(0), timeout)
    for info in pending:
        _wait(info, timeout)
    return {"manifest": m, "topic": root + "manifest", "sent": sent}


def _publish(client, topic, payload, timeout):
    info = client.publish(topic, payload, qos=1, retain=False)
    if info.rc != 0:
        raise ModelPublishError("publish to %s failed (rc %d)" % (topic, info.rc))
    _wait(info, timeout)


def _wait(info, timeout):
    try:
        info.wait_for_publish(timeout)
    except (ValueError, RuntimeError) as e:
        raise ModelPublishError("broker did not take message %d: %s" % (info.mid, e))
    if not info.is_published():
        raise ModelPublishError("broker did not acknowledge message %d within %.0f s" % (info.mid, timeout))
