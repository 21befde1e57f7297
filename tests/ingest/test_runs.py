"""Repeated readings stored as runs (ingest.runs): nothing lost, late readings, rollups,
retention; on the real TimescaleDB (Apache edition), time passed in."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import psycopg
import pytest

from estate.db import Conn
from ingest import contract
from ingest.batch import DeviceRef, Incoming, Rows, decode_batch
from ingest.contract import Bounds, Reason
from ingest.rollup import Retention, apply_retention, roll_up
from ingest.runs import (
    NATIVE_POLICY,
    NATIVE_SETUP,
    compact,
    due_chunks,
    edition,
    native_compression,
)
from ingest.worker import IngestConfig, Maintainer, Metrics
from ingest.writer import Writer

pytestmark = pytest.mark.integration

DAY = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)  # midnight UTC: one day chunk
LATER = DAY + dt.timedelta(days=3)
AFTER = dt.timedelta(days=2)
Reading = tuple[str, dt.datetime, int, dict[str, Any]]
IDLE = {"floor": 3.0, "door_open": False, "speed_mps": 0.0, "running": False}


def write(conn: Conn, devices: dict[str, DeviceRef], readings: list[Reading]) -> Rows:
    """Store readings through the real decode and writer path; the rows as written."""
    msgs = [
        Incoming(
            f"estate/v1/RE/elevator/{code}/telemetry",
            contract.dumps(contract.telemetry(ts, seq, values)),
            0,
            1,
            0,
            ts,
        )
        for code, ts, seq, values in readings
    ]
    rows = decode_batch(
        msgs,
        lambda e, c: devices.get(c) if e == "RE" else None,
        bounds=Bounds(past=dt.timedelta(days=3650), future=dt.timedelta(days=3650)),
    )
    assert not rows.dead, rows.dead
    Writer(conn).write(rows)
    return rows


def everything(conn: Conn) -> list[str]:
    """Every stored reading, raw or in a run, as its full row text."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT t::text FROM telemetry_between('-infinity', 'infinity') t"
            " ORDER BY device_id, ts, seq"
        )
    ]


def day_of_readings() -> list[Reading]:
    """A day of two lifts: long idle stretches, trips, and the awkward cases."""
    out: list[Reading] = []
    t = DAY + dt.timedelta(hours=8)
    seq = 1
    for minute in range(90):  # L1 idle for 90 minutes every 2 s: three half hours
        for s in range(0, 60, 2):
            out.append(("L1", t + dt.timedelta(minutes=minute, seconds=s, milliseconds=s % 7),
                        seq, IDLE))  # fmt: skip
            seq += 1
    trip = dict(IDLE, floor=5.0, running=True, speed_mps=1.5)
    t2 = t + dt.timedelta(minutes=90)
    out += [
        ("L1", t2, seq, trip),
        ("L1", t2 + dt.timedelta(seconds=2), seq + 1, trip),
        ("L1", t2 + dt.timedelta(seconds=4), seq + 2, IDLE),  # back to idle: a new run
        ("L1", t2 + dt.timedelta(seconds=4), seq + 3, IDLE),  # same ts, next seq
        ("L1", t2 + dt.timedelta(seconds=6), seq + 4, dict(IDLE, speed_mps=-0.0)),  # -0 != 0
        ("L1", t2 + dt.timedelta(seconds=8), 2, IDLE),  # the device restarted its count
        # sequence numbers either side of a 2^30 block boundary, otherwise a repeat
        ("L1", t2 + dt.timedelta(seconds=10), 2**30 - 1, IDLE),
        ("L1", t2 + dt.timedelta(seconds=12), 2**30, IDLE),
        ("L1", t2 + dt.timedelta(seconds=14), 2**32 - 3, IDLE),
        # an unknown metric, kept in extra, repeated
        ("L1", t2 + dt.timedelta(seconds=16), 2**32 - 2, dict(IDLE, vendor_temp=41.5)),
        ("L1", t2 + dt.timedelta(seconds=18), 2**32 - 1, dict(IDLE, vendor_temp=41.5)),
    ]
    for i in range(200):  # L2 changes every reading: runs of one
        out.append(("L2", t + dt.timedelta(seconds=5 * i), i, {"load_pct": float(i % 100)}))
    return out


def test_runs_give_back_every_reading_exactly(conn: Conn, devices: dict[str, DeviceRef]) -> None:
    readings = day_of_readings()
    # out of order, in batches, as a broker may deliver them
    for i in range(0, len(readings), 500):
        write(conn, devices, readings[::-1][i : i + 500])
    before = everything(conn)
    assert len(before) == len(readings)
    roll_up(conn, LATER)
    minutes_before = conn.execute(
        "SELECT device_id, bucket, messages FROM telemetry_1m ORDER BY 1, 2"
    ).fetchall()
    done = compact(conn, LATER, AFTER)
    assert (done.days, done.readings) == (1, len(readings))
    # the raw day is gone; the runs hold it in far fewer rows
    assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (0,)
    runs = conn.execute("SELECT count(*) FROM telemetry_runs").fetchone()
    assert runs == (done.runs,)
    assert done.runs < len(readings) / 10
    assert everything(conn) == before
    # L1's 90 idle minutes are one run per half hour, each < 30 min long
    idle = conn.execute(
        "SELECT cardinality(rep_us), last_ts - ts FROM telemetry_runs"
        " WHERE device_id = %s AND ts < %s ORDER BY ts",
        (devices["L1"].id, DAY + dt.timedelta(hours=9, minutes=30)),
    ).fetchall()
    assert [n for n, _ in idle] == [899, 899, 899]
    assert all(span < dt.timedelta(minutes=30) for _, span in idle)
    # -0.0 came back as -0.0, not as the 0.0 around it
    assert conn.execute(
        "SELECT count(*) FROM telemetry_between(%s, %s) WHERE speed_mps::text = '-0'",
        (DAY, LATER),
    ).fetchone() == (1,)
    # a minute recomputed from the runs counts what it counted from the raw rows
    conn.execute("INSERT INTO rollup_dirty SELECT DISTINCT '1m', bucket FROM telemetry_1m")
    roll_up(conn, LATER)
    assert (
        conn.execute("SELECT device_id, bucket, messages FROM telemetry_1m ORDER BY 1, 2")
        .fetchall() == minutes_before
    )  # fmt: skip


def test_only_old_rolled_up_days_become_runs(conn: Conn, devices: dict[str, DeviceRef]) -> None:
    write(conn, devices, [("L1", DAY + dt.timedelta(hours=1), 1, IDLE)])
    # the day's minute is not rolled up yet: it stays raw
    assert due_chunks(conn, LATER, AFTER) == []
    roll_up(conn, LATER)
    # a day ending less than two days ago stays raw
    assert due_chunks(conn, DAY + dt.timedelta(days=2, hours=23), AFTER) == []
    assert due_chunks(conn, LATER, AFTER) == [(DAY, DAY + dt.timedelta(days=1))]
    assert compact(conn, LATER, AFTER).days == 1
    assert compact(conn, LATER, AFTER).days == 0  # nothing left to do


def test_a_late_reading_for_a_day_kept_as_runs(conn: Conn, devices: dict[str, DeviceRef]) -> None:
    t = DAY + dt.timedelta(hours=8)
    write(conn, devices, [("L1", t + dt.timedelta(seconds=2 * i), i, IDLE) for i in range(30)])
    roll_up(conn, LATER)
    compact(conn, LATER, AFTER)
    stored = everything(conn)
    # the broker redelivers a repeat from inside the run: stored once, not passed on
    again = write(conn, devices, [("L1", t + dt.timedelta(seconds=20), 10, IDLE)])
    assert again.telemetry == []
    assert again.dead == []
    assert everything(conn) == stored
    # the same ts and seq with other content: a conflict, the first is kept
    other = write(conn, devices, [("L1", t + dt.timedelta(seconds=20), 10, {"floor": 9.0})])
    assert other.telemetry == []
    assert [d[3] for d in other.dead] == [Reason.CONFLICT.value]
    assert everything(conn) == stored
    # a reading the device buffered: stored (as a run of one), in its minute's rollup
    late = write(conn, devices, [("L1", t + dt.timedelta(seconds=61), 100, {"floor": 4.0})])
    assert len(late.telemetry) == 1
    assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (0,)
    assert len(everything(conn)) == 31
    roll_up(conn, LATER)
    assert conn.execute(
        "SELECT messages, floor_max FROM telemetry_1m WHERE device_id = %s AND bucket = %s",
        (devices["L1"].id, t + dt.timedelta(minutes=1)),
    ).fetchone() == (1, 4.0)


def test_compaction_waits_for_a_writer_already_in_the_day(
    conn: Conn, database_url: str, devices: dict[str, DeviceRef]
) -> None:
    t = DAY + dt.timedelta(hours=8)
    write(conn, devices, [("L1", t + dt.timedelta(seconds=2 * i), i, IDLE) for i in range(30)])
    roll_up(conn, LATER)
    with psycopg.connect(database_url) as writer_conn:
        # a writer inserts a late reading into the raw day and has not committed yet
        writer_conn.execute("SELECT 1")  # its transaction is open from here
        write(writer_conn, devices, [("L1", t + dt.timedelta(seconds=90), 99, {"floor": 7.0})])
        outcome: list[Any] = []
        worker = threading.Thread(target=lambda: outcome.append(compact(conn, LATER, AFTER)))
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive(), "the compaction must wait for the writer's transaction"
        writer_conn.commit()
        worker.join(30)
    assert outcome
    assert outcome[0].readings == 31
    assert len(everything(conn)) == 31
    assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (0,)


def test_retention_drops_old_runs(conn: Conn, devices: dict[str, DeviceRef]) -> None:
    write(
        conn, devices, [("L1", DAY + dt.timedelta(hours=1, seconds=i), i, IDLE) for i in range(5)]
    )
    roll_up(conn, LATER)
    compact(conn, LATER, AFTER)
    keep = Retention(raw_days=30, events_days=0, minute_days=0, hour_days=0)
    assert apply_retention(conn, DAY + dt.timedelta(days=20), keep)["telemetry_runs"] == 0
    assert apply_retention(conn, DAY + dt.timedelta(days=40), keep)["telemetry_runs"] == 1
    assert everything(conn) == []


def test_every_telemetry_column_has_its_place_in_a_run(conn: Conn) -> None:
    def columns(table: str) -> list[str]:
        return [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                " ORDER BY ordinal_position",
                (table,),
            )
        ]

    raw, runs = columns("telemetry"), columns("telemetry_runs")
    assert runs == [*raw, "last_ts", "rep_us", "rep_seq"]


def test_the_maintainer_keeps_old_days_as_runs(
    conn: Conn, database_url: str, devices: dict[str, DeviceRef]
) -> None:
    """The ingest worker's maintainer, as `ESTATE_RUNS_AFTER_DAYS=2` configures it: its
    runs thread rewrites the rolled-up old day on its own; with 0 it never does."""
    readings = [("L1", DAY + dt.timedelta(hours=1, seconds=2 * i), i, IDLE) for i in range(50)]
    write(conn, devices, readings)
    stored = everything(conn)
    roll_up(conn, LATER)
    stop = threading.Event()
    # the default (0): the maintainer's rounds leave raw telemetry as it is
    off = Maintainer(database_url, IngestConfig(rollup_every_s=0.1), lambda: LATER, Metrics())
    idle = threading.Thread(target=off.run, args=(stop,), daemon=True)
    idle.start()
    time.sleep(1.0)
    stop.set()
    idle.join(10)
    assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (50,)
    stop = threading.Event()
    config = IngestConfig(retention=Retention(runs_after_days=2), rollup_every_s=0.2)
    m = Maintainer(database_url, config, lambda: LATER, Metrics())
    thread = threading.Thread(target=m.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM telemetry").fetchone() != (0,):
            assert time.monotonic() < deadline, "the maintainer did not make runs"
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(10)
    assert conn.execute("SELECT count(*) FROM telemetry_runs").fetchone() == (1,)
    assert everything(conn) == stored


def test_the_apache_edition_gets_runs_and_the_native_path_reaches_timescaledb(
    conn: Conn,
) -> None:
    """This server is the Apache edition, so the maintainer makes runs. The native path
    (for a Timescale-licensed server) cannot run here; its statements must still reach
    TimescaleDB's license check, not fail as unknown functions or wrong arguments."""
    assert edition(conn) == "apache"
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="license"):
        native_compression(conn, AFTER)
    for statement, args in ((NATIVE_SETUP, ()), (NATIVE_POLICY, (AFTER,))):
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="license"):
            conn.execute(statement, args)


def test_a_day_left_raw_after_the_horizon_moved_takes_no_duplicate(
    conn: Conn, devices: dict[str, DeviceRef]
) -> None:
    """The compaction moves the horizon, then fails (a restart, a bug): the day is still
    raw. A redelivery of one of its readings is not stored again as a run of one, and the
    next compaction of the day still succeeds."""
    t = DAY + dt.timedelta(hours=8)
    write(conn, devices, [("L1", t + dt.timedelta(seconds=2 * i), i, IDLE) for i in range(10)])
    roll_up(conn, LATER)
    conn.execute("UPDATE telemetry_runs_horizon SET through = %s", (DAY + dt.timedelta(days=1),))
    stored = everything(conn)
    again = write(conn, devices, [("L1", t + dt.timedelta(seconds=8), 4, IDLE)])
    assert again.telemetry == []
    assert everything(conn) == stored
    late = write(conn, devices, [("L1", t + dt.timedelta(seconds=21), 50, IDLE)])
    assert len(late.telemetry) == 1
    roll_up(conn, LATER)
    assert compact(conn, LATER, AFTER).readings == 10
    assert len(everything(conn)) == 11
