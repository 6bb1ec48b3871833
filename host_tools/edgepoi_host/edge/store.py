"""The edge node's ledger on SQLite (WAL mode), with versioned migrations.

Usage::

    store = Store("edge.db")
    store.add_telemetry([(device_id, seq, ts, received_at, payload_bytes), ...])
    store.add_rejected([(topic, reason, detail, received_at, payload_bytes), ...])
    store.stats()

Writes come in batches (one transaction each); duplicates of (device_id, seq) are ignored, so a QoS 1
redelivery is stored once.
"""
import sqlite3
import threading
import time

MIGRATIONS = [
    # 1: devices, telemetry, rejected messages
    """
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'unknown',
        telemetry_count INTEGER NOT NULL DEFAULT 0
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
    CREATE TABLE rejected (
        id INTEGER PRIMARY KEY,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        received_at REAL NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX rejected_reason ON rejected (reason);
    """,
]


class Store:
    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.migrate()

    def migrate(self):
        with self._lock:
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                self.db.execute("BEGIN")
                try:
                    for stmt in sql.split(";"):
                        if stmt.strip():
                            self.db.execute(stmt)
                    self.db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                    self.db.execute("COMMIT")
                except Exception:
                    self.db.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self):
        return self.db.execute("SELECT max(version) FROM schema_version").fetchone()[0]

    def write_batch(self, telemetry=(), rejected=(), statuses=()):
        """Store one batch in one transaction. Returns the number of new telemetry rows."""
        with self._lock:
            self.db.execute("BEGIN")
            try:
                new = 0
                for dev, seq, ts, received_at, payload in telemetry:
                    cur = self.db.execute(
                        "INSERT OR IGNORE INTO telemetry (device_id, seq, ts, received_at, payload) "
                        "VALUES (?, ?, ?, ?, ?)", (dev, seq, ts, received_at, payload))
                    if cur.rowcount:
                        new += 1
                        self._touch(dev, received_at, 1)
                    else:
                        self._touch(dev, received_at, 0)
                for row in rejected:
                    self.db.execute("INSERT INTO rejected (topic, reason, detail, received_at, payload) "
                                    "VALUES (?, ?, ?, ?, ?)", row)
                for dev, status, at in statuses:
                    self._touch(dev, at, 0)
                    self.db.execute("UPDATE devices SET status = ? WHERE device_id = ?", (status, dev))
                self.db.execute("COMMIT")
            except Exception:
                self.db.execute("ROLLBACK")
                raise
            return new

    def _touch(self, dev, at, count):
        self.db.execute(
            "INSERT INTO devices (device_id, first_seen, last_seen, telemetry_count) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen), "
            "telemetry_count = telemetry_count + excluded.telemetry_count",
            (dev, at, at, count))

    def devices(self):
        with self._lock:
            cur = self.db.execute("SELECT device_id, status, telemetry_count, last_seen FROM devices "
                                  "ORDER BY device_id")
            return [dict(zip(("device_id", "status", "telemetry", "last_seen"), r)) for r in cur]

    def stats(self):
        with self._lock:
            q = self.db.execute
            reasons = dict(q("SELECT reason, count(*) FROM rejected GROUP BY reason").fetchall())
            return {
                "schema_version": self.schema_version,
                "devices": q("SELECT count(*) FROM devices").fetchone()[0],
                "telemetry": q("SELECT count(*) FROM telemetry").fetchone()[0],
                "rejected": sum(reasons.values()),
                "rejected_by_reason": reasons,
            }

    def telemetry_seqs(self, device_id):
        with self._lock:
            return [r[0] for r in self.db.execute(
                "SELECT seq FROM telemetry WHERE device_id = ? ORDER BY seq", (device_id,))]

    def close(self):
        with self._lock:
            self.db.close()


def now():
    return time.time()
