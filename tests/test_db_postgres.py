"""The ledger's database layer on SQLite AND PostgreSQL: the same tests, one parametrized fixture.

PostgreSQL comes from EDGEPOI_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres, trust auth);
the session creates its own database edgepoi_test_<random> and drops it at the end; every test gets a
fresh schema (fixtures ``pg_base_url`` and ``ledger_url`` in tests/conftest.py).
"""
import hashlib
import os
import threading

import pytest

from edgepoi_host.edge import db, merkle, settle
from edgepoi_host.edge.registry import Registry

# The session's own PostgreSQL database and the SQLite/PostgreSQL pair come from tests/conftest.py.
@pytest.fixture(scope="session")
def pg_database(pg_base_url):
    return pg_base_url


@pytest.fixture
def url(ledger_url):
    return ledger_url


@pytest.fixture
def database(url):
    d = db.connect(url)
    yield d
    d.close()


STEPS = ["CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB NOT NULL, n INTEGER NOT NULL DEFAULT 0, r REAL)",
         "-- the log; it's append-only\n"
         "CREATE TABLE log (id INTEGER PRIMARY KEY, k TEXT NOT NULL DEFAULT 'a;b', at REAL NOT NULL); "
         "CREATE INDEX log_k ON log (k)"]


def test_migrations_are_versioned_and_applied_once(database):
    assert database.migrate("t", STEPS[:1]) == 1
    assert database.migrate("t", STEPS[:1]) == 1
    assert database.migrate("t", STEPS) == 2
    assert database.migrate("other", []) == 0
    rows = database.query("SELECT component, version FROM schema_migrations ORDER BY version")
    assert rows == [("t", 1), ("t", 2)]
    with pytest.raises(db.DatabaseError):
        database.migrate("t", STEPS + ["CREATE TABLE good (a INTEGER); CREATE TABLE broken (;"])
    assert database.version("t") == 2
    assert db.split_script(STEPS[1]) == [
        "CREATE TABLE log (id INTEGER PRIMARY KEY, k TEXT NOT NULL DEFAULT 'a;b', at REAL NOT NULL)",
        "CREATE INDEX log_k ON log (k)"]
    database.execute("INSERT INTO log (k, at) VALUES (?, ?)", ("x", 1.0))   # still usable after rollback
    with pytest.raises(Exception):
        database.query("SELECT * FROM good")            # the failed migration left nothing behind


def test_portable_sql_runs_the_same_on_both(database):
    database.migrate("t", STEPS)
    big = 2 ** 62 + 7
    with database.transaction():
        ignore = "INSERT OR IGNORE INTO kv (k, v, n) VALUES (?, ?, ?)"
        assert database.execute(ignore, ("a", b"\x00\xff", big)) == 1
        assert database.execute(ignore, ("a", b"zz", 1)) == 0
        assert database.execute("INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT DO NOTHING", ("a", b"")) == 0
        assert database.executemany("INSERT INTO log (k, at) VALUES (?, ?)",
                                    [("a", i * 0.5) for i in range(5)]) == 5
    upsert = ("INSERT INTO kv (k, v, n) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET "
              "n = %s, v = excluded.v" % database.greatest("kv.n", "excluded.n"))
    database.execute(upsert, ("a", b"new", 5))
    database.execute(upsert, ("b", b"b", 3))
    assert database.query("SELECT k, v, n FROM kv ORDER BY k") == [("a", b"new", big), ("b", b"b", 3)]
    assert database.query_one("SELECT '100%', 'why?', ? FROM kv WHERE k = ?", (1, "b")) == ("100%", "why?", 1)
    assert database.scalar("SELECT count(*) FROM log WHERE at >= ?", (1.0,)) == 3
    assert [r[0] for r in database.query("SELECT id FROM log ORDER BY id")] == [1, 2, 3, 4, 5]
    with pytest.raises(KeyError):
        with database.transaction():
            database.execute("DELETE FROM kv")
            with database.transaction():                  # nested: joins the outer one
                database.execute("INSERT INTO log (k, at) VALUES (?, ?)", ("z", 9.0))
            raise KeyError("abort")
    assert database.scalar("SELECT count(*) FROM kv") == 2
    assert database.scalar("SELECT count(*) FROM log WHERE k = 'z'") == 0


def test_concurrent_connections_migrate_and_write_safely(url):
    errors, conns = [], [db.connect(url) for _ in range(4)]

    def worker(d, i):
        try:
            d.migrate("t", STEPS)
            for j in range(25):
                with d.transaction():
                    d.execute("INSERT INTO log (k, at) VALUES (?, ?)", ("w%d" % i, float(j)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(d, i)) for i, d in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert conns[0].scalar("SELECT count(*) FROM log") == 100
    assert conns[0].query("SELECT count(*) FROM schema_migrations WHERE component = 't'") == [(2,)]
    for d in conns:
        d.close()


def test_registry_and_settlement_agree_across_backends(database, tmp_path):
    """Device ids whose order differs between byte order and a locale collation: leaf order is bytes."""
    from edgepoi.keys import open_key
    settle.migrate(database)
    reg = Registry(database)
    rows = []
    for i, dev in enumerate(["dev_b", "Dev-Z", "dev-a", "DEV.c"]):
        key = open_key("file:" + str(tmp_path / ("k%d.pem" % i)))
        assert reg.register(dev, key.public_key())[1] == "created"
        assert reg.lookup(key.key_id)[0] == dev
        for seq in (1, 2, 10):
            rows.append((dev, seq, 3, b"message %s %d" % (dev.encode(), seq), 7 * seq + i, "accepted", 0.0))
    settle.add_attestations(database, rows)
    settle.add_attestations(database, rows[:2])        # duplicates ignored
    got = settle.epoch_attestations(database, 3)
    order = sorted(rows, key=lambda r: (r[0].encode(), r[1]))
    assert [(r[0], r[1]) for r in got] == [(r[0], r[1]) for r in order]
    batch = settle.settle(database, 3, str(tmp_path / "out"), open_key("file:" + str(tmp_path / "edge.pem")),
                          now=1)
    assert batch["header"]["root"] == merkle.root_of([hashlib.sha256(r[3]).digest() for r in order])
    assert batch["header"]["total_work"] == sum(r[4] for r in rows)
    assert database.query("SELECT epoch, leaf_count, total_work FROM settlements") == [(3, 12, str(sum(
        r[4] for r in rows)))]


def test_urls_are_parsed_and_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for u, path in (("rel.db", "rel.db"), ("sqlite:///rel2.db", "rel2.db"),
                    ("sqlite:///" + str(tmp_path / "abs.db"), str(tmp_path / "abs.db"))):
        with db.connect(u) as d:
            assert d.dialect == "sqlite" and d.path == path
        assert os.path.exists(path)
    with db.connect("sqlite://:memory:") as d:
        assert d.path == ":memory:"
    with pytest.raises(db.DatabaseError):
        db.connect("mysql://x")
    with pytest.raises(db.DatabaseError) as e:
        db.connect("postgresql://user:hunter2@127.0.0.1:1/nope?connect_timeout=2")
    assert "hunter2" not in str(e.value) and "***" in str(e.value)


def test_postgres_connection_lost_is_reopened(pg_database):
    """The server ends our session (as on a restart): the failed transaction raises, the next one works."""
    import psycopg
    d = db.connect(pg_database)
    d.migrate("t", STEPS)
    pid = d.scalar("SELECT pg_backend_pid()")
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert d.scalar("SELECT count(*) FROM log") == 0          # a read is retried on a new connection
    pid2 = d.scalar("SELECT pg_backend_pid()")
    assert pid2 != pid
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid2,))
    with d.transaction():                                     # BEGIN reconnects too
        d.execute("INSERT INTO log (k, at) VALUES (?, ?)", ("after", 1.0))
    with pytest.raises(psycopg.OperationalError):
        with d.transaction():
            d.execute("INSERT INTO log (k, at) VALUES (?, ?)", ("lost", 2.0))
            with psycopg.connect(pg_database, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (d.scalar("SELECT pg_backend_pid()"),))
            d.execute("INSERT INTO log (k, at) VALUES (?, ?)", ("lost", 3.0))
    assert [r[0] for r in d.query("SELECT k FROM log ORDER BY id")] == ["after"]
    d.close()
