"""Schema, migrations and TimescaleDB behaviour, against the session's real TimescaleDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from estate import db
from estate.db import Conn

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_timescaledb_is_loaded_with_telemetry_off(conn: Conn) -> None:
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    assert row is not None
    assert str(row[0]) >= "2.19"
    assert conn.execute("SHOW timescaledb.telemetry_level").fetchone() == ("off",)


def test_hypertable_write_and_read_back_through_time_bucket(conn: Conn) -> None:
    conn.execute("CREATE TABLE m (ts timestamptz NOT NULL, device_id int, v double precision)")
    conn.execute("SELECT create_hypertable('m', 'ts', chunk_time_interval => interval '1 hour')")
    rows = [(T0 + timedelta(seconds=30 * i), 1, float(i)) for i in range(240)]  # 2 hours
    with (
        conn.cursor() as cur,
        cur.copy("COPY m (ts, device_id, v) FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.set_types(["timestamptz", "int4", "float8"])
        for r in rows:
            cp.write_row(r)
    buckets = conn.execute(
        "SELECT time_bucket('1 hour', ts) AS b, count(*), avg(v) FROM m GROUP BY b ORDER BY b"
    ).fetchall()
    assert buckets == [(T0, 120, 59.5), (T0 + timedelta(hours=1), 120, 179.5)]
    chunks = conn.execute("SELECT count(*) FROM show_chunks('m')").fetchone()
    assert chunks == (2,)


def test_telemetry_and_events_are_hypertables(conn: Conn) -> None:
    names = {
        str(r[0])
        for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
    }
    assert {"telemetry", "events"} <= names


def test_telemetry_stores_a_redelivered_message_once(conn: Conn) -> None:
    insert = (
        "INSERT INTO telemetry (ts, device_id, seq, floor, door_open) VALUES (%s, 1, 7, 3, false)"
        " ON CONFLICT (device_id, ts, seq) DO NOTHING"
    )
    conn.execute(insert, (T0,))
    conn.execute(insert, (T0,))
    assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (1,)


def test_migrations_are_recorded_and_idempotent(database_url: str) -> None:
    assert db.upgrade(database_url) == []
    assert db.current_version(database_url) == db.migrations()[-1].version
    with psycopg.connect(database_url) as c:
        versions = [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in db.migrations()]


def test_upgrade_of_an_empty_database_applies_everything(stack: object, database_url: str) -> None:
    empty = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(empty, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS t_empty WITH (FORCE)")
        c.execute("CREATE DATABASE t_empty")
    url = database_url.rsplit("/", 1)[0] + "/t_empty"
    try:
        assert db.current_version(url) is None
        applied = db.upgrade(url)
        assert [m.version for m in applied] == [m.version for m in db.migrations()]
    finally:
        with psycopg.connect(empty, autocommit=True) as c:
            c.execute("DROP DATABASE t_empty WITH (FORCE)")


def test_an_edited_migration_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(db.DatabaseError, match="was changed after it was applied"):
        db.upgrade(database_url)


def test_unreachable_database_says_what_to_do() -> None:
    with pytest.raises(db.DatabaseError, match="estate services start"):
        db.connect("postgresql://nobody:x@127.0.0.1:1/none")


def test_device_subtype_must_belong_to_its_kind(conn: Conn) -> None:
    conn.execute("INSERT INTO areas (code, name, level) VALUES ('C', 'c', 'city')")
    conn.execute("INSERT INTO estates (code, name, area_code) VALUES ('E', 'e', 'C')")
    with pytest.raises(psycopg.errors.CheckViolation, match="not a subtype of kind elevator"):
        conn.execute(
            "INSERT INTO devices (estate_code, code, kind, subtype)"
            " VALUES ('E', 'D', 'elevator', 'sump_pit')"
        )
