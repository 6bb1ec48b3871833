"""The PoI claims profile end to end: a device-side Attester (CPython and the real MicroPython) chains signed
attestations; pycose/cbor2 read them; the verifier accepts the chain and rejects each kind of bad message
with its typed reason."""
import hashlib
import os

import cbor2
import pytest
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import CoseMessage

from edgepoi import attest, attest_verify, cbor, cose
from edgepoi.attest_verify import Rejection
from edgepoi.counter import FileCounter, MemoryCounter
from edgepoi.keys import open_key

MODEL = hashlib.sha256(b"model.tflite bytes").digest()
NONCE = os.urandom(16)


@pytest.fixture
def key(tmp_path):
    return open_key("file:%s" % (tmp_path / "dev.pem"))


def work(a, i=0, epoch=7, nonce=NONCE, model=MODEL):
    inp = bytes([i]) * 49
    return a.attest(model, hashlib.sha256(inp).digest(), bytes([i, 255 - i]), 10000 + i, "mpy-ref",
                    True, epoch, nonce)


def setup(key, device="dev-1", models=None):
    reg = attest_verify.MemoryRegistry()
    reg.add(device, key.public_key(), models)
    beacons = attest_verify.BeaconWindow(keep=2)
    beacons.add(7, NONCE)
    return attest_verify.Verifier(reg, attest_verify.MemoryState(), beacons)


def rejected(v, msg):
    with pytest.raises(Rejection) as e:
        v.verify(msg)
    assert e.value.reason in attest_verify.REASONS
    return e.value.reason


def test_chain_is_accepted_and_claims_are_complete(key):
    a = attest.Attester(key, "dev-1", MemoryCounter(), attest.MemoryStore(), clock=lambda: 1700000000)
    v = setup(key)
    prev = attest.ZERO_HASH
    for i in range(5):
        msg = work(a, i)
        claims = v.verify(msg)
        assert claims[attest.SEQ] == i + 1 and claims[attest.PREV] == prev
        assert claims[attest.DEVICE_ID] == "dev-1" and claims[attest.EPOCH] == 7
        assert claims[attest.EAT_NONCE] == NONCE and claims[attest.IAT] == 1700000000
        assert claims[attest.UEID] == attest.ueid_for("dev-1") and len(claims[attest.UEID]) == 17
        assert claims[attest.MODEL] == MODEL and claims[attest.OUTPUT] == bytes([i, 255 - i])
        assert claims[attest.WORK] == 10000 + i and claims[attest.BIT_EXACT] is True
        assert v.state.get_state("dev-1") == (i + 1, hashlib.sha256(msg).digest())
        prev = hashlib.sha256(msg).digest()


def test_third_party_tools_read_an_attestation(key):
    a = attest.Attester(key, "dev-1", MemoryCounter(), attest.MemoryStore())
    msg = work(a)
    m = CoseMessage.decode(msg)
    pub = key.public_key()
    m.key = EC2Key(crv=P256, x=pub[1:33], y=pub[33:])
    assert m.verify_signature()
    claims = cbor2.loads(m.payload)
    assert claims[256][0] == 1 and claims[10] == NONCE and isinstance(claims[6], int)
    assert claims[-65537] == "dev-1" and claims[-65541] == MODEL and claims[-65546] is True
    assert cbor.dumps(claims) == m.payload          # the payload is deterministic CBOR


def test_each_rejection_reason(key, tmp_path):
    a = attest.Attester(key, "dev-1", MemoryCounter(), attest.MemoryStore())
    v = setup(key)
    m1, m2, m3 = work(a, 1), work(a, 2), work(a, 3)
    assert rejected(v, b"\x00garbage") == "malformed"
    assert rejected(v, cose.sign1(b"\xa1\x01\x02", key)) == "malformed"       # not our claims map
    bad = bytearray(m1)
    bad[-1] ^= 1
    assert rejected(v, bytes(bad)) == "bad_signature"
    stranger = open_key("file:%s" % (tmp_path / "other.pem"))
    assert rejected(v, work(attest.Attester(stranger, "dev-1", MemoryCounter(),
                                            attest.MemoryStore()))) == "unknown_key"
    assert rejected(v, work(attest.Attester(key, "dev-2", MemoryCounter(),
                                            attest.MemoryStore()))) == "unknown_device"
    assert rejected(v, work(a, 9, nonce=os.urandom(16))) == "stale_nonce"
    assert rejected(v, work(a, 9, epoch=6)) == "stale_nonce"
    other_model = hashlib.sha256(b"another model").digest()
    assert setup(key, models=[MODEL]).verify(m1)
    assert rejected(setup(key, models=[MODEL]), work(a, 9, model=other_model)) == "wrong_model"
    assert v.verify(m1)[attest.SEQ] == 1
    assert rejected(v, m1) == "replayed"                 # exact duplicate of the last accepted one
    assert rejected(v, m3) == "sequence_gap"             # m2 never arrived
    assert v.verify(m2) and v.verify(m3)
    assert rejected(v, m2) == "replayed"                 # an older one
    # a fork: another message claiming the next seq but chaining to something else
    fork = attest.Attester(key, "dev-1", MemoryCounter(v.state.get_state("dev-1")[0] + 1),
                           attest.MemoryStore(m1))
    assert rejected(v, work(fork, 4)) == "chain_broken"
    same_seq = attest.Attester(key, "dev-1", MemoryCounter(3), attest.MemoryStore(m2))
    assert rejected(v, work(same_seq, 5)) == "chain_broken"


def test_beacon_window_keeps_the_last_beacons(key):
    w = attest_verify.BeaconWindow(keep=2)
    w.add(1, b"a" * 16)
    w.add(2, b"b" * 16)
    assert w.accepts(1, b"a" * 16) and w.accepts(2, b"b" * 16)
    w.add(3, b"c" * 16)
    assert not w.accepts(1, b"a" * 16) and w.accepts(2, b"b" * 16) and not w.accepts(3, b"b" * 16)


def test_counter_skip_after_crash_still_chains(key, tmp_path):
    store = attest.FileStore(str(tmp_path / "last.cose"))
    seq_path = str(tmp_path / "seq")
    v = setup(key)
    a = attest.Attester(key, "dev-1", FileCounter(seq_path, block=8), store)
    first = work(a, 1)
    assert v.verify(first)[attest.SEQ] == 1
    # reboot: the counter jumps past its reservation, the chain comes from the stored last message
    b = attest.Attester(key, "dev-1", FileCounter(seq_path, block=8), attest.FileStore(store.path))
    assert b.last() == first
    claims = v.verify(work(b, 2))
    assert claims[attest.SEQ] == 9 and claims[attest.PREV] == hashlib.sha256(first).digest()
    assert rejected(v, b.last()) == "replayed"           # republishing the last message is harmless


def test_commit_false_and_genesis_policy(key):
    a = attest.Attester(key, "dev-1", MemoryCounter(), attest.MemoryStore())
    m1, m2 = work(a, 1), work(a, 2)
    v = setup(key)
    v.verify(m1, commit=False)
    assert v.state.get_state("dev-1") is None
    strict = setup(key)
    strict.require_genesis = True
    assert rejected(strict, m2) == "chain_broken"
    assert strict.verify(m1) and strict.verify(m2)


def test_make_claims_validates_and_names_round_trip():
    good = dict(device_id="d", seq=1, prev=b"\x00" * 32, epoch=1, nonce=b"n" * 8, model_digest=MODEL,
                input_digest=MODEL, output=b"", work_units=0, backend="b", bit_exact=False, iat=0)
    claims = attest.make_claims(**good)
    assert attest_verify.from_named(attest_verify.named(claims)) == claims
    for k, v in (("seq", -1), ("seq", True), ("prev", b"short"), ("nonce", b"1234567"),
                 ("device_id", ""), ("work_units", 1.5), ("bit_exact", 1), ("backend", b"x")):
        with pytest.raises(attest.ClaimsError):
            attest.make_claims(**dict(good, **{k: v}))
    with pytest.raises(attest.ClaimsError):
        attest.make_claims(**dict(good, ueid=b"\x02" + b"x" * 16))
    with pytest.raises(attest.ClaimsError):
        attest_verify.from_named({"no_such_claim": 1})


def test_micropython_attester_chain_verifies_on_cpython(micropython, tmp_path, key):
    code = """
from edgepoi import attest
from edgepoi.counter import FileCounter
from edgepoi.keys import open_key
k = open_key('file:%s', False)
a = attest.Attester(k, 'mp-dev', FileCounter('%s'), attest.FileStore('%s'), clock=lambda: 1234)
for i in range(3):
    print(a.attest(%r, %r, bytes([i]), 99 + i, 'mpy-viper', True, 7, %r).hex())
""" % (key.path, tmp_path / "seq", tmp_path / "last", MODEL, MODEL, NONCE)
    out = micropython(heapsize="512K").run_code(code).stdout.split()
    v = setup(key, device="mp-dev")
    seqs = [v.verify(bytes.fromhex(h))[attest.SEQ] for h in out]
    assert seqs == [1, 2, 3]
    assert (tmp_path / "last").read_bytes() == bytes.fromhex(out[-1])


def test_a_signing_device_loads_no_verifier_side(tmp_path):
    # the agent's path under MicroPython, from ROMFS: create a key, attest; the verifier modules and the
    # key-file set-up code are never (or no longer) in memory, and the message verifies on CPython
    from edgepoi_host import bundle
    from edgepoi_host.runtime.micropython import MicroPython
    rom = bundle.build("unix", str(tmp_path / "rom"), romfs=True)
    code = """
import gc, sys
from edgepoi import attest
from edgepoi.counter import MemoryCounter
from edgepoi.keys import open_key
k = open_key('file:%s')
a = attest.Attester(k, 'mp-dev', MemoryCounter(), attest.MemoryStore(), clock=lambda: 1234)
print(a.attest(%r, %r, b'out', 99, 'mpy-viper', True, 7, %r).hex())
print(k.public_key().hex())
print(' '.join(sorted(m for m in sys.modules if m.startswith('edgepoi'))))
""" % (tmp_path / "dev.pem", MODEL, MODEL, NONCE)
    out = MicroPython(heapsize="64K", sdk=False, romfs=rom.romfs_image).run_code(code).stdout.splitlines()
    loaded = set(out[2].split())
    assert {"edgepoi.attest", "edgepoi.cose", "edgepoi.p256", "edgepoi.keys.file"} <= loaded, loaded
    assert not loaded & {"edgepoi.attest_verify", "edgepoi.cose_verify", "edgepoi.p256_verify",
                         "edgepoi.keys.keyfile", "edgepoi.keys.pkcs8"}, loaded
    reg = attest_verify.MemoryRegistry()
    reg.add("mp-dev", bytes.fromhex(out[1]))
    claims = attest_verify.verify_attestation(bytes.fromhex(out[0]), reg, attest_verify.MemoryState())
    assert claims[attest.SEQ] == 1 and claims[attest.OUTPUT] == b"out"


def test_file_store_returns_only_whole_messages(key, tmp_path):
    path = tmp_path / "last"
    store = attest.FileStore(str(path))
    assert store.load() is None
    msg = work(attest.Attester(key, "dev-1", MemoryCounter(), store))
    assert store.load() == msg and not (tmp_path / "last.tmp").exists()
    path.write_bytes(msg[:-5])                          # torn / corrupted: never used as a chain link
    assert store.load() is None
    path.unlink()
    (tmp_path / "last.tmp").write_bytes(msg)            # FAT-style rename lost the target: recover
    assert store.load() == msg
    (tmp_path / "last.tmp").write_bytes(msg[:10])       # a torn tmp file is ignored
    assert store.load() is None
    a = attest.Attester(key, "dev-1", MemoryCounter(), store)
    assert a.prev == attest.ZERO_HASH
