# heapsize: 96K
"""The model-update state machine (edgepoi.ota) fed manifests and chunks directly, on flash files,
under MicroPython and CPython: resume after a reboot, any chunk order and repeats, a corrupted chunk
(SHA mismatch, no swap), forged / unsigned / older manifests, a model that fails to load (rollback).

Manifests are signed with a real P-256 key (edgepoi.p256); expected digests are hashlib's.
"""
import hashlib
import os

import checks
from edgepoi import cbor
from edgepoi import cose
from edgepoi import p256
from edgepoi.keys import key_id_of
from edgepoi.ota import ModelUpdate


class Signer:
    def __init__(self):
        self.d = p256.keygen()
        self.pub = p256.public_key(self.d)
        self.key_id = key_id_of(self.pub)

    def sign_digest(self, digest):
        return p256.sign_digest(self.d, digest)


EDGE = Signer()


def model_bytes(n, seed):
    out = bytearray(n)
    x = seed
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = x >> 16 & 0xFF
    return bytes(out)


def manifest(data, version, chunk_size=128, signer=EDGE, **extra):
    m = {"name": "m.tflite", "size": len(data), "sha256": hashlib.sha256(data).digest(),
         "chunk_size": chunk_size, "chunks": (len(data) + chunk_size - 1) // chunk_size, "version": version}
    for k in extra:
        m[k] = extra[k]
    return cose.sign1(cbor.dumps(m), signer)


def chunks(data, chunk_size=128):
    return [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Loader:
    """The reload callback: records paths; fails for models whose first byte is 0xEE."""

    def __init__(self):
        self.calls = []

    def __call__(self, path):
        self.calls.append(path)
        if read(path)[:1] == b"\xee":
            raise ValueError("not a TFLite model")


def device(d=None, **kw):
    d = d or checks.scratch_dir("ota")
    loader = Loader()
    return d, ModelUpdate(EDGE.pub, d, "model.tflite", reload=loader, device_id="dev-1",
                          progress_every=0, **kw), loader


def install(ota, data, version, order=None):
    res = ota.handle("manifest", manifest(data, version))
    assert res["ok"] and res["state"] == "receiving", res
    parts = chunks(data)
    last = None
    for n in (order if order is not None else range(len(parts))):
        r = ota.handle("chunk/%d" % n, parts[n])
        if r is not None:
            last = r
    return last


def test_install_in_any_order_with_repeats():
    d, ota, loader = device()
    v1 = model_bytes(1000, 1)                           # 8 chunks, the last one 104 bytes
    res = install(ota, v1, 1, order=[7, 3, 3, 0, 5, 1, 7, 2, 6, 4])
    assert res["ok"] and res["state"] == "installed" and res["version"] == 1, res
    assert read(d + "/model.tflite") == v1 and loader.calls == [d + "/model.tflite"]
    assert ota.stats["duplicates"] == 2 and ota.installed == 1
    assert not exists(d + "/model.new") and not exists(d + "/model.ota")
    v2 = model_bytes(700, 2)
    assert install(ota, v2, 2)["state"] == "installed"
    assert read(d + "/model.tflite") == v2 and read(d + "/model.bak") == v1
    # the same manifest again: already installed, nothing to do
    again = ota.handle("manifest", manifest(v2, 2))
    assert again["ok"] and again["state"] == "installed", again


def test_reboot_mid_update_resumes():
    d, ota, _ = device()
    data = model_bytes(1300, 3)                          # 11 chunks
    ota.handle("manifest", manifest(data, 5))
    parts = chunks(data)
    for n in (0, 2, 4, 10):
        assert ota.handle("chunk/%d" % n, parts[n]) is None
    del ota
    _, ota2, loader = device(d)                          # power cut; the device boots again
    assert ota2.have == 4 and ota2.missing() == [1, 3, 5, 6, 7, 8, 9]
    res = ota2.handle("manifest", manifest(data, 5))    # the edge re-sends the manifest
    assert res["ok"] and res["missing"] == [1, 3, 5, 6, 7, 8, 9], res
    for n in res["missing"]:
        r = ota2.handle("chunk/%d" % n, parts[n])
    assert r["state"] == "installed" and read(d + "/model.tflite") == data


def test_corrupted_chunk_is_caught_by_sha256_and_nothing_is_swapped():
    d, ota, loader = device()
    old = model_bytes(500, 4)
    install(ota, old, 1)
    new = model_bytes(600, 5)
    ota.handle("manifest", manifest(new, 2))
    parts = chunks(new)
    bad = bytearray(parts[2])
    bad[17] ^= 0x01
    parts[2] = bytes(bad)
    r = None
    for n in range(len(parts)):
        r = ota.handle("chunk/%d" % n, parts[n])
    assert not r["ok"] and r["reason"] == "sha_mismatch" and r["state"] == "receiving", r
    assert read(d + "/model.tflite") == old and loader.calls == [d + "/model.tflite"]
    assert ota.have == 0 and len(ota.missing(100)) == 5  # everything must be sent again
    assert install(ota, new, 2)["state"] == "installed" and read(d + "/model.tflite") == new


def test_forged_unsigned_malformed_and_old_manifests_are_rejected():
    d, ota, _ = device()
    data = model_bytes(300, 6)
    install(ota, data, 4)
    other = Signer()
    r = ota.handle("manifest", manifest(model_bytes(300, 7), 9, signer=other))
    assert not r["ok"] and r["reason"] == "bad_signature", r
    m = {"name": "x", "size": 3, "sha256": bytes(32), "chunk_size": 128, "chunks": 1, "version": 9}
    r = ota.handle("manifest", cbor.dumps(m))                       # unsigned
    assert r["reason"] == "bad_signature", r
    good = manifest(model_bytes(300, 7), 9)
    forged = bytearray(good)
    forged[-70] ^= 0x40                                             # a flipped payload bit
    assert ota.handle("manifest", bytes(forged))["reason"] == "bad_signature"
    r = ota.handle("manifest", manifest(model_bytes(300, 7), 3))    # older than installed (4)
    assert r["reason"] == "old_version" and r["installed"] == 4, r
    r = ota.handle("manifest", manifest(model_bytes(300, 7), 9, chunk_size=16))
    assert r["reason"] == "bad_manifest", r
    r = ota.handle("manifest", manifest(model_bytes(300, 7), 9, device="dev-2"))
    assert r["reason"] == "wrong_device", r
    assert ota.handle("chunk/0", b"x" * 128) is None and ota.stats["ignored"] == 1
    assert read(d + "/model.tflite") == data and not exists(d + "/model.new")


def test_bad_chunks_are_reported():
    d, ota, _ = device()
    data = model_bytes(300, 8)                          # chunks 128, 128, 44
    ota.handle("manifest", manifest(data, 1))
    assert ota.handle("chunk/3", b"x" * 44)["reason"] == "bad_chunk"
    assert ota.handle("chunk/2", b"x" * 128)["reason"] == "bad_chunk"
    assert ota.handle("chunk/x", b"")["reason"] == "bad_chunk"
    assert ota.have == 0


def test_model_that_fails_to_load_rolls_back():
    d, ota, loader = device()
    good = model_bytes(400, 9)
    install(ota, good, 1)
    broken = b"\xee" + model_bytes(399, 10)
    r = install(ota, broken, 2)
    assert not r["ok"] and r["state"] == "rolled_back" and r["reason"] == "load_failed", r
    assert "not a TFLite model" in r["error"]
    assert read(d + "/model.tflite") == good              # the old model is back, and reloaded
    assert loader.calls[-2:] == [d + "/model.tflite", d + "/model.tflite"]
    assert ota.installed == 1 and not exists(d + "/model.new") and not exists(d + "/model.bak")
    assert install(ota, model_bytes(400, 11), 3)["state"] == "installed"


def test_first_install_that_fails_leaves_no_model():
    d, ota, loader = device()
    r = install(ota, b"\xee" * 200, 1)
    assert r["state"] == "rolled_back" and not exists(d + "/model.tflite")


def test_power_cut_between_the_two_renames_finishes_the_swap():
    d, ota, _ = device()
    old, new = model_bytes(300, 12), model_bytes(300, 13)
    install(ota, old, 1)
    ota.handle("manifest", manifest(new, 2))
    parts = chunks(new)
    for n in range(len(parts) - 1):
        ota.handle("chunk/%d" % n, parts[n])
    # simulate: last chunk written and marked, SHA checked, model.tflite -> model.bak, then power cut
    with open(d + "/model.new", "r+b") as f:
        f.seek(256)
        f.write(parts[2])
    with open(d + "/model.map", "wb") as f:
        f.write(b"\x07")
    os.rename(d + "/model.tflite", d + "/model.bak")
    _, ota2, _ = device(d)
    assert read(d + "/model.tflite") == new and ota2.installed == 2 and ota2.m is None


def test_flash_failure_is_a_result_not_an_exception():
    d, ota, _ = device()
    data = model_bytes(300, 14)
    ota.handle("manifest", manifest(data, 1))
    os.remove(d + "/model.new")                           # the flash lost the file
    r = ota.handle("chunk/0", chunks(data)[0])
    assert not r["ok"] and r["reason"] == "io_error" and ota.have == 0, r
    assert ota.missing(5) == [0, 1, 2]


def test_power_cut_before_the_check_is_finished_by_the_next_manifest():
    d, ota, _ = device()
    data = model_bytes(300, 15)
    ota.handle("manifest", manifest(data, 1))
    parts = chunks(data)
    for n in range(2):
        ota.handle("chunk/%d" % n, parts[n])
    with open(d + "/model.new", "r+b") as f:             # the last chunk and its bit reached flash,
        f.seek(256)                                      # then the power went before the check
        f.write(parts[2])
    with open(d + "/model.map", "wb") as f:
        f.write(b"\x07")
    _, ota2, loader = device(d)
    assert ota2.have == 3 and not exists(d + "/model.tflite")
    r = ota2.handle("manifest", manifest(data, 1))
    assert r["state"] == "installed" and read(d + "/model.tflite") == data, r


def test_missing_model_with_a_backup_is_restored_at_start():
    d, ota, _ = device()
    old, new = model_bytes(200, 16), model_bytes(200, 17)
    install(ota, old, 1)
    install(ota, new, 2)
    os.remove(d + "/model.tflite")                        # cut between the two steps of a rollback
    device(d)
    assert read(d + "/model.tflite") == old
