"""Settlement: close an epoch into a signed batch (Merkle root over accepted attestations) anyone can verify.

Usage::

    from edgepoi_host.edge import db, settle
    from edgepoi.keys import open_key
    d = db.connect("edge.db")
    batch = settle.settle(d, epoch=7, out_dir="batches", signer=open_key("file:edge.pem"),
                          eth_key=settle.load_eth_key("edge-eth.key"), chain_id=1)
    ok, verdict = settle.verify_batch(open("batches/batch-7.json", "rb").read(), attestation_bytes)

Leaves: the accepted (status ``accepted`` or ``verified``) attestations of the epoch from registered
devices not flagged for fraud, ordered by (UTF-8 bytes of device_id, seq); leaf data = SHA-256 of the
whole COSE_Sign1 message; tree per RFC 6962 (edgepoi_host.edge.merkle). The batch header (deterministic
CBOR: format, epoch, root, leaf_count, total_work, digests of the per-device work and key maps,
created_at) is signed by the edge node's P-256 key as a COSE_Sign1 (edgepoi.cose), and (epoch, root,
totalWork, leafCount) as EIP-712 typed data with its secp256k1 key. Files: ``batch-<epoch>.json`` and
``batch-<epoch>.cbor``; every inclusion proof is derivable from the batch's leaf list (``proof_for``).
Format: docs/EDGE.md.
"""
import hashlib
import json
import os
import time

from edgepoi import cbor, cose, cose_verify
from edgepoi_host.edge import merkle
from edgepoi_host.edge.registry import MIGRATIONS as REGISTRY_MIGRATIONS

FORMAT = "edgepoi-settlement-batch/1"
SETTLED_STATUSES = ("accepted", "verified")

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS attestations (
        device_id TEXT NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL, message BLOB NOT NULL,
        msg_hash BLOB NOT NULL, work_units INTEGER NOT NULL, status TEXT NOT NULL,
        received_at REAL NOT NULL, PRIMARY KEY (device_id, seq)
    );
    CREATE INDEX IF NOT EXISTS attestations_epoch ON attestations (epoch, status);
    CREATE TABLE settlements (
        epoch INTEGER PRIMARY KEY, root BLOB NOT NULL, leaf_count INTEGER NOT NULL,
        total_work TEXT NOT NULL, created_at REAL NOT NULL, batch BLOB NOT NULL
    )
    """,
]


class SettlementError(RuntimeError):
    """``reason``: already_settled, bad_batch."""

    def __init__(self, reason, detail):
        RuntimeError.__init__(self, "%s: %s" % (reason, detail))
        self.reason = reason


def migrate(database):
    database.migrate("registry", REGISTRY_MIGRATIONS)
    database.migrate("settlement", MIGRATIONS)


def add_attestations(database, rows):
    """Store (device_id, seq, epoch, message, work_units, status, received_at) rows; duplicates ignored."""
    with database.transaction():
        return database.executemany(
            "INSERT INTO attestations (device_id, seq, epoch, message, msg_hash, work_units, status, "
            "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(d, s, e, bytes(m), hashlib.sha256(m).digest(), w, st, t) for d, s, e, m, w, st, t in rows])


def epoch_attestations(database, epoch):
    """[(device_id, seq, message, work_units)] to settle for epoch, in leaf order."""
    placeholders = ", ".join("?" for _ in SETTLED_STATUSES)
    rows = database.query(
        "SELECT a.device_id, a.seq, a.message, a.work_units FROM attestations a "
        "JOIN registry_devices r ON r.device_id = a.device_id "
        "WHERE a.epoch = ? AND a.status IN (%s) AND r.flagged = 0" % placeholders,
        (epoch,) + SETTLED_STATUSES)
    rows.sort(key=lambda r: (r[0].encode(), r[1]))
    return rows


def device_keys(database, device_ids):
    """{device_id: [public keys]}: the current key and any rotated-out ones, oldest first."""
    keys = {}
    for dev in sorted(set(device_ids)):
        rows = database.query("SELECT public_key, retired_at FROM registry_key_history WHERE device_id = ? "
                              "UNION ALL SELECT public_key, NULL FROM registry_devices WHERE device_id = ?",
                              (dev, dev))
        keys[dev] = [r[0] for r in sorted(rows, key=lambda r: (r[1] is None, r[1] or 0))]
    return keys


def build_batch(epoch, rows, created_at, keys=None):
    """The unsigned batch dict (bytes values) and its Merkle tree from epoch_attestations() rows;
    keys: device_keys() of the devices in rows (their digest goes into the signed header)."""
    leaves = [(dev, seq, hashlib.sha256(msg).digest()) for dev, seq, msg, _w in rows]
    tree = merkle.Tree([h for _d, _s, h in leaves])
    work = {}
    for dev, _seq, _msg, units in rows:
        work[dev] = work.get(dev, 0) + int(units)
    header = {"format": FORMAT, "epoch": int(epoch), "root": tree.root, "leaf_count": tree.size,
              "total_work": sum(work.values()), "work_digest": work_digest(work),
              "keys_digest": work_digest(keys or {}), "created_at": int(created_at)}
    return {"header": header, "work": work, "keys": keys or {},
            "leaves": [[d, s, h] for d, s, h in leaves]}, tree


def work_digest(mapping):
    """SHA-256 of the deterministic CBOR of a per-device map (work units, or keys)."""
    return hashlib.sha256(cbor.dumps(dict(mapping))).digest()


def sign_header(header, signer):
    """COSE_Sign1 over the deterministic CBOR of the header, by the edge node's P-256 signer."""
    return cose.sign1(cbor.dumps(header), signer)


# -- EIP-712 ---------------------------------------------------------------------------------------

EIP712_TYPES = {
    "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                     {"name": "chainId", "type": "uint256"}],
    "SettlementBatch": [{"name": "epoch", "type": "uint64"}, {"name": "root", "type": "bytes32"},
                        {"name": "totalWork", "type": "uint256"}, {"name": "leafCount", "type": "uint32"}],
}


def eip712_typed_data(header, chain_id):
    """The EIP-712 typed data (eth-account full_message form) for a batch header."""
    return {"types": EIP712_TYPES, "primaryType": "SettlementBatch",
            "domain": {"name": "edgepoi", "version": "1", "chainId": int(chain_id)},
            "message": {"epoch": header["epoch"], "root": "0x" + bytes(header["root"]).hex(),
                        "totalWork": header["total_work"], "leafCount": header["leaf_count"]}}


def load_eth_key(path, create=True):
    """The edge node's secp256k1 key (hex in a 0600 file), created on first use -> LocalAccount."""
    from eth_account import Account
    if not os.path.exists(path):
        if not create:
            raise FileNotFoundError("no Ethereum key at %s" % path)
        acct = Account.create()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(bytes(acct.key).hex() + "\n")
        return acct
    if os.stat(path).st_mode & 0o077:
        raise PermissionError("%s is readable by group or others: chmod 600 it" % path)
    with open(path) as f:
        return Account.from_key(bytes.fromhex(f.read().strip().removeprefix("0x")))


def _signable(header, chain_id):
    from eth_account.messages import encode_typed_data
    return encode_typed_data(full_message=eip712_typed_data(header, chain_id))


def sign_eip712(header, account, chain_id):
    from eth_account import Account
    sig = Account.sign_message(_signable(header, chain_id), private_key=account.key)
    return {"chain_id": int(chain_id), "signer": account.address, "signature": bytes(sig.signature)}


def recover_eip712(header, eip):
    from eth_account import Account
    return Account.recover_message(_signable(header, eip["chain_id"]), signature=eip["signature"])


# -- settle and write ------------------------------------------------------------------------------

def settle(database, epoch, out_dir, signer, eth_key=None, chain_id=1, now=None):
    """Close ``epoch``: build, sign, record and write the batch. Returns the batch dict (bytes values).

    Settling an epoch again rewrites the recorded batch when the leaves are unchanged, and raises
    SettlementError(already_settled) when they changed.
    """
    migrate(database)
    rows = epoch_attestations(database, epoch)
    batch, _tree = build_batch(epoch, rows, time.time() if now is None else now,
                               device_keys(database, [r[0] for r in rows]))
    old = database.query_one("SELECT root, batch FROM settlements WHERE epoch = ?", (epoch,))
    if old is not None:
        if old[0] != batch["header"]["root"]:
            raise SettlementError("already_settled", "epoch %d was settled with root %s; its leaves "
                                  "changed since" % (epoch, old[0].hex()))
        encoded = old[1]
        batch = cbor.loads(encoded, max_length=1 << 30, max_items=1 << 26)
    else:
        pub = signer.public_key()
        batch["edge"] = {"public_key": pub, "key_id": signer.key_id}
        batch["signature"] = sign_header(batch["header"], signer)
        if eth_key is not None:
            batch["eip712"] = sign_eip712(batch["header"], eth_key, chain_id)
        h = batch["header"]
        encoded = cbor.dumps(batch)
        with database.transaction():
            database.execute("INSERT INTO settlements (epoch, root, leaf_count, total_work, created_at, "
                             "batch) VALUES (?, ?, ?, ?, ?, ?)", (epoch, h["root"], h["leaf_count"],
                                                                 str(h["total_work"]), h["created_at"],
                                                                 encoded))
    write_batch(batch, out_dir, encoded)
    return batch


def write_batch(batch, out_dir, encoded=None):
    """Write batch-<epoch>.cbor (deterministic CBOR) and batch-<epoch>.json (bytes as 0x-hex)."""
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, "batch-%d" % batch["header"]["epoch"])
    for ext, data in ((".cbor", encoded or cbor.dumps(batch)), (".json", batch_json(batch).encode())):
        tmp = base + ext + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, base + ext)
    return base + ".json", base + ".cbor"


def batch_json(batch):
    """The JSON text: everything indented, sorted keys, then the leaves one per line (fast to write)."""
    rest = to_json(dict((k, v) for k, v in batch.items() if k != "leaves"))
    text = json.dumps(rest, indent=1, sort_keys=True)
    dumps = json.dumps
    leaves = ",\n  ".join('[%s,%d,"0x%s"]' % (dumps(d), s, h.hex()) for d, s, h in batch["leaves"])
    return text[:-2] + ',\n "leaves": [\n  ' + leaves + "\n ]\n}\n"


def to_json(obj):
    if isinstance(obj, (bytes, bytearray)):
        return "0x" + bytes(obj).hex()
    if isinstance(obj, dict):
        return dict((k, to_json(v)) for k, v in obj.items())
    return [to_json(v) for v in obj] if isinstance(obj, (list, tuple)) else obj


_BYTES_KEYS = ("root", "public_key", "key_id", "signature", "work_digest", "keys_digest")


def from_json(obj, key=None):
    if isinstance(obj, str) and obj.startswith("0x") and key in _BYTES_KEYS:
        return bytes.fromhex(obj[2:])
    if isinstance(obj, dict) and key == "work":
        return obj
    if isinstance(obj, dict) and key == "keys":
        return dict((d, [bytes.fromhex(k[2:]) for k in ks]) for d, ks in obj.items())
    if isinstance(obj, dict):
        return dict((k, from_json(v, k)) for k, v in obj.items())
    if isinstance(obj, list):
        if key == "leaves":
            return [[d, s, bytes.fromhex(h[2:])] for d, s, h in obj]
        return [from_json(v) for v in obj]
    return obj


def load_batch(data):
    """A batch from its JSON or CBOR bytes -> dict with bytes values. Raises SettlementError(bad_batch)."""
    try:
        if data.lstrip()[:1] == b"{":
            return from_json(json.loads(data.decode()))
        return cbor.loads(data, max_length=1 << 30, max_items=1 << 26)
    except (ValueError, UnicodeDecodeError, TypeError) as e:
        raise SettlementError("bad_batch", "neither batch JSON nor CBOR: %s" % e)


def proof_for(batch, message_hash, tree=None):
    """(index, audit path) of the leaf whose data is message_hash; (None, None) when absent."""
    hashes = [leaf[2] for leaf in batch["leaves"]]
    try:
        index = hashes.index(message_hash)
    except ValueError:
        return None, None
    tree = tree or merkle.Tree(hashes)
    return index, tree.path(index)


def verify_batch(data, attestation, edge_pubkey=None, eth_address=None):
    """Check, without any database, that ``attestation`` (COSE_Sign1 bytes) is in the batch (``data``:
    JSON or CBOR bytes) and that the batch is signed by the edge node (``edge_pubkey``: 65 bytes; None
    trusts the key embedded in the batch) and, when present, by ``eth_address`` under EIP-712.

    Returns (ok, one-line verdict); never raises on bad input.
    """
    try:
        return _verify(load_batch(data), bytes(attestation), edge_pubkey, eth_address)
    except SettlementError as e:
        return False, str(e)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        return False, "bad_batch: malformed batch (%s: %s)" % (type(e).__name__, e)


def _verify(batch, attestation, edge_pubkey, eth_address):
    h = batch["header"]
    msg_hash = hashlib.sha256(attestation).digest()
    hashes = [leaf[2] for leaf in batch["leaves"]]
    if len(hashes) != h["leaf_count"]:
        return False, "bad_batch: %d leaves listed, header says %d" % (len(hashes), h["leaf_count"])
    if work_digest(batch["work"]) != h["work_digest"] or sum(batch["work"].values()) != h["total_work"]:
        return False, "bad_batch: the per-device work map does not match the header"
    if work_digest(batch["keys"]) != h["keys_digest"]:
        return False, "bad_batch: the device key map does not match the header"
    tree = merkle.Tree(hashes)
    if tree.root != h["root"]:
        return False, "bad_root: the listed leaves do not hash to the batch root"
    index, path = proof_for(batch, msg_hash, tree)
    if index is None:
        return False, "not_included: attestation %s is not a leaf of epoch %d" % (msg_hash.hex()[:16],
                                                                                  h["epoch"])
    if not merkle.verify_inclusion(msg_hash, index, h["leaf_count"], path, h["root"]):
        return False, "bad_proof: inclusion proof does not reach the root"
    try:
        claims = cbor.loads(cose_verify.decode1(attestation)[2], max_depth=4, max_items=64)
        dev, seq = claims.get(-65537), claims.get(-65538)
    except (cose.CoseError, cbor.CBORError, AttributeError) as e:
        return False, "bad_attestation: %s" % e
    if [dev, seq] != list(batch["leaves"][index][:2]):
        return False, "bad_leaf_label: leaf %d is labelled %r, the attestation says %r" % (
            index, batch["leaves"][index][:2], [dev, seq])
    kid = cose_verify.kid_of(attestation)
    device_pub = [k for k in batch["keys"].get(dev, ()) if hashlib.sha256(k).digest()[:16] == kid]
    try:
        cose_verify.verify1(attestation, device_pub[0] if device_pub else b"")
    except cose.CoseError as e:
        return False, "bad_attestation: not signed by a key of %s listed in the batch (%s)" % (dev, e)
    pub = bytes(edge_pubkey) if edge_pubkey is not None else batch["edge"]["public_key"]
    try:
        signed = cbor.loads(cose_verify.verify1(batch["signature"], pub))
    except (cose.CoseError, cbor.CBORError) as e:
        return False, "bad_signature: edge signature over the batch header: %s" % e
    if signed != h:
        return False, "bad_signature: the signed header differs from the batch header"
    who = "edge key %s" % hashlib.sha256(pub).digest()[:16].hex()
    if edge_pubkey is None:
        who += " (embedded, not pinned)"
    eip = batch.get("eip712")
    if eip is not None:
        try:
            signer = recover_eip712(h, eip)
        except Exception as e:  # noqa: BLE001 - any recovery failure is a bad signature
            return False, "bad_eip712: %s" % e
        if signer != eip["signer"] or (eth_address and signer.lower() != eth_address.lower()):
            return False, "bad_eip712: EIP-712 signature recovers %s, expected %s" % (
                signer, eth_address or eip["signer"])
        who += ", EIP-712 by %s on chain %d" % (signer, eip["chain_id"])
    elif eth_address:
        return False, "bad_eip712: the batch carries no EIP-712 signature"
    return True, "OK: %s seq %d is leaf %d of %d in epoch %d, root %s, signed by %s" % (
        dev, seq, index, h["leaf_count"], h["epoch"], h["root"].hex()[:16], who)
