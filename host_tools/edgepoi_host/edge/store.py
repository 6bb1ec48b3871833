"""The edge node's ledger: telemetry, attestations, rejections, chain state, beacons and audits.

Usage::

    ledger = Ledger(db.connect("edge.db"))           # or "postgresql://user@host/db"
    ledger.write_batch(telemetry=[...], attestations=[...], rejected=[...], statuses=[...], chains=[...])
    ledger.stats()

Tables (component "ledger", versioned migrations; docs/EDGE.md has the full schema):
``ledger_devices``, ``telemetry`` (UNIQUE device_id, seq), ``attestations`` (PRIMARY KEY device_id, seq —
the table the settlement reads), ``rejected`` (every refused message, with a reason), ``chain_state``
(per device: last accepted seq and message hash), ``beacons`` (published freshness nonces) and ``audits``.
A batch is written in one transaction; repeated (device_id, seq) rows are ignored, so a QoS 1 redelivery is
stored once.
"""
import time

from edgepoi_host.edge import db as dblib

MIGRATIONS = [
    """
    CREATE TABLE ledger_devices (
        device_id TEXT PRIMARY KEY,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'unknown'
    );
    CREATE TABLE telemetry (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        received_at REAL NOT NULL,
        payload BLOB NOT NULL,
        UNIQUE (device_id, seq)
    );
    CREATE TABLE IF NOT EXISTS attestations (
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        message BLOB NOT NULL,
        msg_hash BLOB NOT NULL,
        work_units INTEGER NOT NULL,
        status TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (device_id, seq)
    );
    CREATE INDEX IF NOT EXISTS attestations_epoch ON attestations (epoch, status);
    CREATE TABLE rejected (
        id INTEGER PRIMARY KEY,
        topic TEXT NOT NULL,
        device_id TEXT,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        received_at REAL NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX rejected_reason ON rejected (reason);
    CREATE TABLE chain_state (
        device_id TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        last_hash BLOB NOT NULL
    );
    CREATE TABLE device_acks (
        device_id TEXT PRIMARY KEY,
        upto INTEGER NOT NULL
    );
    CREATE TABLE beacons (
        epoch INTEGER PRIMARY KEY,
        nonce BLOB NOT NULL,
        published_at REAL NOT NULL
    );
    CREATE TABLE audits (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        requested_at REAL NOT NULL,
        finished_at REAL,
        verdict TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audits_device ON audits (device_id, seq)
    """,
]


_TELEMETRY = ("device_id", "seq", "ts", "received_at", "payload")
_ATTESTATIONS = ("device_id", "seq", "epoch", "message", "msg_hash", "work_units", "status", "received_at")
_REJECTED = ("topic", "device_id", "reason", "detail", "received_at", "payload")


class Ledger:
    def __init__(self, database):
        self.db = database if isinstance(database, dblib.Database) else dblib.connect(database)
        self.db.migrate("ledger", MIGRATIONS)

    @property
    def schema_version(self):
        return self.db.version("ledger")

    def write_batch(self, telemetry=(), attestations=(), rejected=(), statuses=(), chains=(), acks=()):
        """Store one batch in one transaction. Returns (new telemetry rows, new attestation rows).

        telemetry: (device_id, seq, ts, received_at, payload)
        attestations: (device_id, seq, epoch, message, msg_hash, work_units, status, received_at)
        rejected: (topic, device_id or None, reason, detail, received_at, payload)
        statuses: (device_id, "online"/"offline", at)
        chains: (device_id, last_seq, last_hash) — the verifier's state after this batch
        acks: (device_id, upto) — how far the device's records are handled (its ``ack``)
        """
        d = self.db
        if not (telemetry or attestations or rejected or statuses or chains or acks):
            return 0, 0
        seen = {}
        for row in telemetry:
            seen[row[0]] = max(seen.get(row[0], 0), row[3])
        for row in attestations:
            seen[row[0]] = max(seen.get(row[0], 0), row[7])
        for dev, _status, at in statuses:
            seen[dev] = max(seen.get(dev, 0), at)
        with d.transaction():
            new_t = d.insert_many("telemetry", _TELEMETRY, telemetry, ignore_conflicts=True)
            new_a = d.insert_many("attestations", _ATTESTATIONS, attestations, ignore_conflicts=True)
            d.insert_many("rejected", _REJECTED, rejected)
            if seen:
                d.executemany("INSERT INTO ledger_devices (device_id, first_seen, last_seen) VALUES (?, ?, ?) "
                              "ON CONFLICT (device_id) DO UPDATE SET last_seen = %s"
                              % d.greatest("ledger_devices.last_seen", "excluded.last_seen"),
                              [(dev, at, at) for dev, at in seen.items()])
            for dev, status, at in statuses:
                d.execute("UPDATE ledger_devices SET status = ? WHERE device_id = ?", (status, dev))
            if chains:
                d.executemany("INSERT INTO chain_state (device_id, last_seq, last_hash) VALUES (?, ?, ?) "
                              "ON CONFLICT (device_id) DO UPDATE SET last_seq = excluded.last_seq, "
                              "last_hash = excluded.last_hash WHERE excluded.last_seq > chain_state.last_seq",
                              chains)
            if acks:
                d.executemany("INSERT INTO device_acks (device_id, upto) VALUES (?, ?) "
                              "ON CONFLICT (device_id) DO UPDATE SET upto = excluded.upto", acks)
        return new_t, new_a

    # -- verifier state --------------------------------------------------------------------------
    def chain_states(self):
        return {r[0]: (r[1], bytes(r[2])) for r in
                self.db.query("SELECT device_id, last_seq, last_hash FROM chain_state")}

    def chain_state(self, device_id):
        row = self.db.query_one("SELECT last_seq, last_hash FROM chain_state WHERE device_id = ?", (device_id,))
        return (row[0], bytes(row[1])) if row else None

    def device_ack(self, device_id):
        return self.db.scalar("SELECT upto FROM device_acks WHERE device_id = ?", (device_id,))

    def add_beacon(self, epoch, nonce, at=None):
        self.db.execute("INSERT INTO beacons (epoch, nonce, published_at) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING", (epoch, nonce, at or time.time()))

    def recent_beacons(self, keep):
        rows = self.db.query("SELECT epoch, nonce FROM beacons ORDER BY epoch DESC LIMIT ?", (keep,))
        return [(r[0], bytes(r[1])) for r in reversed(rows)]

    # -- audits ------------------------------------------------------------------------------------
    def add_audit(self, device_id, seq, verdict, detail="", requested_at=None, finished_at=None):
        self.db.execute("INSERT INTO audits (device_id, seq, requested_at, finished_at, verdict, detail) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (device_id, seq, requested_at or time.time(),
                                                      finished_at, verdict, detail))

    def set_attestation_status(self, device_id, seq, status):
        self.db.execute("UPDATE attestations SET status = ? WHERE device_id = ? AND seq = ?",
                        (status, device_id, seq))

    def attestation_hash(self, device_id, seq):
        row = self.db.query_one("SELECT msg_hash FROM attestations WHERE device_id = ? AND seq = ?",
                                (device_id, seq))
        return bytes(row[0]) if row else None

    def attestation(self, device_id, seq):
        row = self.db.query_one("SELECT message, status FROM attestations WHERE device_id = ? AND seq = ?",
                                (device_id, seq))
        return (bytes(row[0]), row[1]) if row else None

    # -- reading -----------------------------------------------------------------------------------
    def devices(self):
        rows = self.db.query(
            "SELECT d.device_id, d.status, "
            "(SELECT count(*) FROM telemetry t WHERE t.device_id = d.device_id), "
            "(SELECT count(*) FROM attestations a WHERE a.device_id = d.device_id), d.last_seen "
            "FROM ledger_devices d ORDER BY d.device_id")
        return [dict(zip(("device_id", "status", "telemetry", "attestations", "last_seen"), r))
                for r in rows]

    def telemetry_seqs(self, device_id):
        return [r[0] for r in self.db.query("SELECT seq FROM telemetry WHERE device_id = ? ORDER BY seq",
                                            (device_id,))]

    def attestation_seqs(self, device_id, statuses=("accepted", "verified")):
        marks = ", ".join("?" for _ in statuses)
        return [r[0] for r in self.db.query(
            "SELECT seq FROM attestations WHERE device_id = ? AND status IN (%s) ORDER BY seq" % marks,
            (device_id,) + tuple(statuses))]

    def stats(self):
        q = self.db.scalar
        reasons = dict(self.db.query("SELECT reason, count(*) FROM rejected GROUP BY reason"))
        att = dict(self.db.query("SELECT status, count(*) FROM attestations GROUP BY status"))
        audits = dict(self.db.query("SELECT verdict, count(*) FROM audits GROUP BY verdict"))
        return {
            "schema_version": self.schema_version,
            "devices": q("SELECT count(*) FROM ledger_devices", default=0),
            "telemetry": q("SELECT count(*) FROM telemetry", default=0),
            "attestations": sum(att.values()),
            "attestations_by_status": att,
            "rejected": sum(reasons.values()),
            "rejected_by_reason": reasons,
            "audits": audits,
            "epochs": q("SELECT count(*) FROM beacons", default=0),
            "current_epoch": q("SELECT max(epoch) FROM beacons"),
            "settled_epochs": self._settled(),
        }

    def _settled(self):
        if self.db.version("settlement") == 0:
            return []  # no batch was ever settled on this database
        return [r[0] for r in self.db.query("SELECT epoch FROM settlements ORDER BY epoch")]

    def close(self):
        self.db.close()
