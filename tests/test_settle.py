"""Settlement: RFC 6962 Merkle trees against an independent recursive definition, signed batches,
EIP-712 recovery with eth-account, and `verify-batch` accepting good and rejecting tampered input."""
import hashlib
import json
import os
import random
import stat
import subprocess
import sys

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from edgepoi import attest, cbor, cose_verify
from edgepoi.keys import open_key
from edgepoi_host.edge import db, edge_cli, merkle, settle
from edgepoi_host.edge.registry import Registry


# -- an independent RFC 6962 section 2.1 implementation, written straight from the definitions --------

def _h(b):
    return hashlib.sha256(b).digest()


def _k(n):          # the largest power of two smaller than n
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d):
    if len(d) == 0:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m, d):
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def test_merkle_roots_and_audit_paths_match_rfc6962_for_1_to_40_leaves():
    rnd = random.Random(6962)
    assert merkle.root_of([]) == _h(b"")
    for n in range(1, 41):
        leaves = [rnd.randbytes(rnd.randrange(0, 40)) for _ in range(n)]
        tree = merkle.Tree(leaves)
        root = ref_mth(leaves)
        assert tree.root == root, n
        for m in range(n):
            path = tree.path(m)
            assert path == ref_path(m, leaves), (n, m)
            assert merkle.verify_inclusion(leaves[m], m, n, path, root)
            assert not merkle.verify_inclusion(leaves[m] + b"x", m, n, path, root)      # tampered leaf
            assert not merkle.verify_inclusion(leaves[m], m, n, path, root[:-1] + b"\x00" if root[-1]
                                               else root[:-1] + b"\x01")                  # tampered root
            if n > 1:
                assert not merkle.verify_inclusion(leaves[m], (m + 1) % n, n, path, root)  # wrong index
                bad = list(path)
                i = rnd.randrange(len(bad))
                bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
                assert not merkle.verify_inclusion(leaves[m], m, n, bad, root)            # tampered path
                assert not merkle.verify_inclusion(leaves[m], m, n, path[:-1], root)      # truncated
            assert not merkle.verify_inclusion(leaves[m], m, n, path + [root], root)      # too long
            assert not merkle.verify_inclusion(leaves[m], n, n, path, root)               # index >= size


def test_leaf_and_node_hashes_have_distinct_prefixes():
    a, b = b"a" * 32, b"b" * 32
    assert merkle.Tree([a, b]).root == _h(b"\x01" + _h(b"\x00" + a) + _h(b"\x00" + b))
    assert merkle.Tree([a + b]).root != merkle.node_hash(a, b)      # a leaf cannot pose as a node


# -- an epoch of real attestations --------------------------------------------------------------------

class Counter:
    def __init__(self):
        self.n = 0

    def next(self):
        self.n += 1
        return self.n


@pytest.fixture
def ledger(tmp_path):
    """A SQLite ledger with 3 registered devices and attestations in epochs 5 and 6."""
    d = db.connect(str(tmp_path / "edge.db"))
    settle.migrate(d)
    reg = Registry(d)
    msgs, rows = {}, []
    for i, dev in enumerate(["dev-b", "dev-a", "dev-c"]):
        key = open_key("file:" + str(tmp_path / ("%s.pem" % dev)))
        reg.register(dev, key.public_key(), kind="file")
        att = attest.Attester(key, dev, Counter(), attest.MemoryStore())
        for j in range(4 + i):
            epoch = 5 if j < 3 + i else 6
            work = 1000 * (i + 1) + j
            m = att.attest(_h(b"model"), _h(b"in%d" % j), b"\x01\x02", work, "numpy-ref", True, epoch,
                           b"n" * 16)
            status = {("dev-c", 1): "rejected", ("dev-a", 0): "verified"}.get((dev, j), "accepted")
            rows.append((dev, j + 1, epoch, m, work, status, 1.0 + j))
            msgs[(dev, j + 1)] = m
    settle.add_attestations(d, rows)
    d.rows, d.msgs, d.reg = rows, msgs, reg
    yield d
    d.close()


def signer_and_eth(tmp_path):
    return (open_key("file:" + str(tmp_path / "edge-key.pem")),
            settle.load_eth_key(str(tmp_path / "edge-eth.key")))


def test_settle_builds_a_signed_batch_over_the_accepted_attestations(ledger, tmp_path):
    signer, eth = signer_and_eth(tmp_path)
    out = str(tmp_path / "out")
    batch = settle.settle(ledger, 5, out, signer, eth_key=eth, chain_id=31337, now=1700000000)
    want = sorted((r for r in ledger.rows if r[2] == 5 and r[5] in ("accepted", "verified")),
                  key=lambda r: (r[0], r[1]))
    h = batch["header"]
    assert h["leaf_count"] == len(want) == 11
    assert [leaf[:2] for leaf in batch["leaves"]] == [[r[0], r[1]] for r in want]
    assert h["root"] == ref_mth([_h(r[3]) for r in want])
    totals = {}
    for r in want:
        totals[r[0]] = totals.get(r[0], 0) + r[4]
    assert batch["work"] == totals and h["total_work"] == sum(totals.values())
    assert cbor.loads(cose_verify.verify1(batch["signature"], signer.public_key())) == h
    with open(os.path.join(out, "batch-5.cbor"), "rb") as f:
        raw = f.read()
    assert raw == cbor.dumps(batch) and cbor.loads(raw) == batch
    with open(os.path.join(out, "batch-5.json"), "rb") as f:
        assert settle.load_batch(f.read()) == batch
    # EIP-712: recovered with eth-account from typed data built here, not by the module
    typed = {"types": {"EIP712Domain": [{"name": "name", "type": "string"},
                                        {"name": "version", "type": "string"},
                                        {"name": "chainId", "type": "uint256"}],
                       "SettlementBatch": [{"name": "epoch", "type": "uint64"},
                                           {"name": "root", "type": "bytes32"},
                                           {"name": "totalWork", "type": "uint256"},
                                           {"name": "leafCount", "type": "uint32"}]},
             "primaryType": "SettlementBatch",
             "domain": {"name": "edgepoi", "version": "1", "chainId": 31337},
             "message": {"epoch": 5, "root": h["root"], "totalWork": sum(totals.values()), "leafCount": 11}}
    signable = encode_typed_data(full_message=typed)
    assert Account.recover_message(signable, signature=batch["eip712"]["signature"]) == eth.address
    key_mode = stat.S_IMODE(os.stat(str(tmp_path / "edge-eth.key")).st_mode)
    assert key_mode == 0o600
    assert settle.load_eth_key(str(tmp_path / "edge-eth.key")).address == eth.address


def test_flagged_unregistered_fraudulent_and_other_epochs_are_left_out(ledger, tmp_path):
    ledger.reg.flag("dev-b", "audit: output mismatch")
    settle.add_attestations(ledger, [("ghost", 1, 6, b"unregistered device", 50, "accepted", 1.0),
                                     ("dev-a", 50, 6, b"caught by an audit", 50, "fraudulent", 1.0)])
    signer, _eth = signer_and_eth(tmp_path)
    batch = settle.settle(ledger, 6, str(tmp_path / "o"), signer)
    assert [leaf[:2] for leaf in batch["leaves"]] == [["dev-a", 5], ["dev-c", 6]]
    assert "eip712" not in batch and batch["work"] == {"dev-a": 2004, "dev-c": 3005}


def test_an_empty_epoch_settles_to_the_empty_tree(ledger, tmp_path):
    signer, eth = signer_and_eth(tmp_path)
    batch = settle.settle(ledger, 99, str(tmp_path / "o"), signer, eth_key=eth)
    assert batch["header"]["root"] == _h(b"") and batch["header"]["leaf_count"] == 0
    assert batch["leaves"] == [] and batch["work"] == {} and batch["header"]["total_work"] == 0
    data = (tmp_path / "o" / "batch-99.json").read_bytes()
    ok, verdict = settle.verify_batch(data, ledger.msgs[("dev-a", 1)])
    assert not ok and verdict.startswith("not_included")


def test_settling_again_is_idempotent_but_changed_leaves_are_refused(ledger, tmp_path):
    signer, eth = signer_and_eth(tmp_path)
    first = settle.settle(ledger, 5, str(tmp_path / "a"), signer, eth_key=eth, now=1)
    again = settle.settle(ledger, 5, str(tmp_path / "b"), signer, eth_key=eth, now=2)
    assert again == first
    assert open(str(tmp_path / "a" / "batch-5.cbor"), "rb").read() == \
        open(str(tmp_path / "b" / "batch-5.cbor"), "rb").read()
    ledger.execute("UPDATE attestations SET status = 'accepted' WHERE device_id = 'dev-c' AND seq = 2")
    with pytest.raises(settle.SettlementError) as e:
        settle.settle(ledger, 5, str(tmp_path / "c"), signer)
    assert e.value.reason == "already_settled"


# -- the verify-batch command ------------------------------------------------------------------------

def run_verify(capsys, *argv):
    rc = edge_cli.main(["verify-batch"] + [str(a) for a in argv])
    out = capsys.readouterr()
    lines = (out.out + out.err).strip().splitlines()
    assert len(lines) == 1, lines
    return rc, lines[0]


def test_verify_batch_accepts_every_included_attestation_and_rejects_tampering(ledger, tmp_path, capsys):
    signer, eth = signer_and_eth(tmp_path)
    out = tmp_path / "out"
    batch = settle.settle(ledger, 5, str(out), signer, eth_key=eth)
    pub = tmp_path / "edge.pub"
    pub.write_text(signer.public_key().hex())
    for dev, seq, _hash in batch["leaves"]:
        f = tmp_path / ("%s-%d.cose" % (dev, seq))
        f.write_bytes(ledger.msgs[(dev, seq)])
        for kind in ("json", "cbor"):
            rc, line = run_verify(capsys, out / ("batch-5." + kind), "--attestation", f, "--edge-pubkey", pub,
                                  "--eth-address", eth.address)
            assert rc == 0 and line.startswith("verify-batch: OK"), line
    good = tmp_path / "dev-a-1.cose"
    msg = ledger.msgs[("dev-a", 1)]
    cases = []
    tampered = bytearray(msg)
    tampered[-1] ^= 1                                   # the signature of the attestation
    cases.append(("not_included", bytes(tampered), None))
    cases.append(("not_included", ledger.msgs[("dev-a", 5)], None))          # epoch 6: not in this batch
    cases.append(("not_included", ledger.msgs[("dev-c", 2)], None))          # rejected: not settled
    doc = json.loads((out / "batch-5.json").read_text())

    def edited(fn):
        d = json.loads(json.dumps(doc))
        fn(d)
        return json.dumps(d).encode()

    flip = lambda h: h[:-1] + ("0" if h[-1] != "0" else "1")       # noqa: E731
    cases.append(("bad_root", None, edited(lambda d: d["header"].update(root=flip(d["header"]["root"])))))
    cases.append(("bad_root", None, edited(lambda d: d["leaves"][3].__setitem__(2, flip(d["leaves"][3][2])))))
    cases.append(("bad_batch", None, edited(lambda d: d["work"].update({"dev-a": d["work"]["dev-a"] + 1}))))
    cases.append(("bad_signature", None, edited(lambda d: d.update(signature=flip(d["signature"])))))
    cases.append(("bad_eip712", None,
                  edited(lambda d: d["eip712"].update(signature=flip(d["eip712"]["signature"])))))
    cases.append(("bad_batch", None, edited(lambda d: d["leaves"].pop())))
    cases.append(("bad_batch", None, b"not a batch"))
    for what, att, bdata in cases:
        a = tmp_path / "case.cose"
        a.write_bytes(att if att is not None else msg)
        b = tmp_path / "case.json"
        b.write_bytes(bdata if bdata is not None else (out / "batch-5.json").read_bytes())
        rc, line = run_verify(capsys, b, "--attestation", a, "--edge-pubkey", pub)
        assert rc == 1 and line.startswith("verify-batch: FAIL " + what), (what, line)
    other = open_key("file:" + str(tmp_path / "other.pem"))
    (tmp_path / "other.pub").write_text(other.public_key().hex())
    good.write_bytes(msg)
    rc, line = run_verify(capsys, out / "batch-5.json", "--attestation", good, "--edge-pubkey",
                          tmp_path / "other.pub")
    assert rc == 1 and "bad_signature" in line
    rc, line = run_verify(capsys, out / "batch-5.json", "--attestation", good, "--eth-address",
                          Account.create().address)
    assert rc == 1 and "bad_eip712" in line
    r = subprocess.run([sys.executable, "-m", "edgepoi_host.edge.edge_cli", "verify-batch",
                        str(out / "batch-5.cbor"), "--attestation", str(good)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "not pinned" in r.stdout


def test_verify_batch_checks_the_device_signature_with_keys_listed_in_the_batch(ledger, tmp_path, capsys):
    """A ledger row that no registered key signed is caught; an old key retired by rotation still counts."""
    rogue = open_key("file:" + str(tmp_path / "rogue.pem"))
    forged = attest.Attester(rogue, "dev-a", Counter(), attest.MemoryStore())
    forged.counter.n = 99
    bad = forged.attest(_h(b"model"), _h(b"x"), b"\x00", 5, "numpy-ref", True, 5, b"n" * 16)
    old_msg = ledger.msgs[("dev-b", 1)]
    settle.add_attestations(ledger, [("dev-a", 100, 5, bad, 5, "accepted", 9.0)])
    ledger.reg.register("dev-b", open_key("file:" + str(tmp_path / "new-b.pem")).public_key(), rotate=True)
    signer, _eth = signer_and_eth(tmp_path)
    batch = settle.settle(ledger, 5, str(tmp_path / "o"), signer)
    assert len(batch["keys"]["dev-b"]) == 2 and len(batch["keys"]["dev-a"]) == 1
    for msg, want in ((bad, "verify-batch: FAIL bad_attestation"), (old_msg, "verify-batch: OK")):
        (tmp_path / "m.cose").write_bytes(msg)
        for kind in ("json", "cbor"):
            rc, line = run_verify(capsys, tmp_path / "o" / ("batch-5." + kind), "--attestation",
                                  tmp_path / "m.cose")
            assert rc == (0 if "OK" in want else 1) and line.startswith(want), line
    doc = json.loads((tmp_path / "o" / "batch-5.json").read_text())
    doc["keys"]["dev-a"].append("0x" + rogue.public_key().hex())     # smuggling a key in breaks the digest
    (tmp_path / "t.json").write_text(json.dumps(doc))
    (tmp_path / "m.cose").write_bytes(bad)
    rc, line = run_verify(capsys, tmp_path / "t.json", "--attestation", tmp_path / "m.cose")
    assert rc == 1 and "bad_batch" in line


def test_settle_command_writes_batch_keys_and_exported_proofs(ledger, tmp_path, capsys):
    home, out = tmp_path / "home", tmp_path / "out"
    rc = edge_cli.main(["settle", "--db", "sqlite:///" + ledger.path, "--epoch", "5", "--out", str(out),
                        "--home", str(home), "--chain-id", "5", "--attestations"])
    assert rc == 0, capsys.readouterr().err
    assert stat.S_IMODE(os.stat(str(home / "edge-key.pem")).st_mode) == 0o600
    batch = settle.load_batch((out / "batch-5.json").read_bytes())
    assert batch["eip712"]["chain_id"] == 5
    for dev, seq, leaf in batch["leaves"]:
        proof = json.loads((out / "epoch-5" / ("%s-%d.proof.json" % (dev, seq))).read_text())
        msg = (out / "epoch-5" / ("%s-%d.cose" % (dev, seq))).read_bytes()
        assert _h(msg) == leaf
        path = [bytes.fromhex(p) for p in proof["path"]]
        assert merkle.verify_inclusion(_h(msg), proof["index"], proof["leaf_count"], path,
                                       bytes.fromhex(proof["root"]))
