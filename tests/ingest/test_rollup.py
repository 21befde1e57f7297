"""Rollups and retention on the real TimescaleDB (Apache edition), with time passed in."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from estate.db import Conn
from ingest import contract
from ingest.batch import DeviceRef, Incoming, decode_batch
from ingest.contract import Bounds
from ingest.rollup import ROLLUP_COLUMNS, Retention, apply_retention, roll_up
from ingest.writer import Writer

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # a Monday, on the hour


def write(
    conn: Conn,
    devices: dict[str, DeviceRef],
    readings: list[tuple[str, dt.datetime, dict[str, float | bool]]],
) -> None:
    """Store readings through the real decode and writer path."""
    msgs = [
        Incoming(
            f"estate/v1/RE/elevator/{code}/telemetry",
            contract.dumps(contract.telemetry(ts, int(ts.timestamp()) % 2**32, values)),
            0,
            1,
            0,
            ts,
        )
        for code, ts, values in readings
    ]
    rows = decode_batch(
        msgs,
        lambda e, c: devices.get(c) if e == "RE" else None,
        bounds=Bounds(past=dt.timedelta(days=3650), future=dt.timedelta(days=3650)),
    )
    assert not rows.dead, rows.dead
    Writer(conn).write(rows)


def minute_row(conn: Conn, table: str, device: DeviceRef, bucket: dt.datetime) -> dict[str, Any]:
    cols = ", ".join(ROLLUP_COLUMNS)
    row = conn.execute(
        f"SELECT {cols} FROM {table} WHERE device_id = %s AND bucket = %s",  # noqa: S608
        (device.id, bucket),
    ).fetchone()
    assert row is not None, f"no {table} row for {device.code} at {bucket}"
    return dict(zip(ROLLUP_COLUMNS, row, strict=True))


def test_rollup_columns_match_the_migration(conn: Conn) -> None:
    for table in ("telemetry_1m", "telemetry_1h"):
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                " ORDER BY ordinal_position",
                (table,),
            )
        ]
        assert cols == ["bucket", "device_id", *ROLLUP_COLUMNS]


def test_minutes_are_rolled_up_once_complete(conn: Conn, devices: dict[str, DeviceRef]) -> None:
    l1, l2 = devices["L1"], devices["L2"]
    write(
        conn,
        devices,
        [
            ("L1", T0 + dt.timedelta(seconds=1), {"load_pct": 10.0, "door_open": True}),
            ("L1", T0 + dt.timedelta(seconds=20), {"load_pct": 30.0, "door_open": False}),
            ("L1", T0 + dt.timedelta(seconds=59), {"load_pct": 50.0}),
            ("L2", T0 + dt.timedelta(seconds=30), {"floor": 3.0}),
            ("L1", T0 + dt.timedelta(seconds=61), {"load_pct": 99.0}),  # the next minute
        ],
    )
    # the minute is not complete until settle_s after its end
    assert roll_up(conn, T0 + dt.timedelta(seconds=62), settle_s=5).minutes == 0
    r = roll_up(conn, T0 + dt.timedelta(seconds=66), settle_s=5)
    assert (r.minutes, r.hours) == (1, 0)
    m = minute_row(conn, "telemetry_1m", l1, T0)
    assert (m["messages"], m["load_pct_min"], m["load_pct_max"]) == (3, 10.0, 50.0)
    assert (m["load_pct_sum"], m["load_pct_n"]) == (90.0, 3)
    assert (m["door_open_true"], m["door_open_n"]) == (1, 2)
    assert (m["floor_n"], m["floor_min"]) == (0, None)
    assert minute_row(conn, "telemetry_1m", l2, T0)["floor_sum"] == 3.0
    # nothing left to do until the next minute completes
    assert roll_up(conn, T0 + dt.timedelta(seconds=100), settle_s=5).minutes == 0
    assert roll_up(conn, T0 + dt.timedelta(seconds=126), settle_s=5).minutes == 1


def test_a_late_message_reopens_its_minute(conn: Conn, devices: dict[str, DeviceRef]) -> None:
    l1 = devices["L1"]
    write(conn, devices, [("L1", T0 + dt.timedelta(seconds=5), {"load_pct": 10.0})])
    roll_up(conn, T0 + dt.timedelta(minutes=10))
    assert minute_row(conn, "telemetry_1m", l1, T0)["load_pct_n"] == 1
    # the device empties its buffer ten minutes later
    write(conn, devices, [("L1", T0 + dt.timedelta(seconds=6), {"load_pct": 70.0})])
    assert roll_up(conn, T0 + dt.timedelta(minutes=10)).minutes == 1
    m = minute_row(conn, "telemetry_1m", l1, T0)
    assert (m["load_pct_n"], m["load_pct_max"], m["load_pct_sum"]) == (2, 70.0, 80.0)


def test_hours_reaggregate_minutes_exactly(conn: Conn, devices: dict[str, DeviceRef]) -> None:
    l1 = devices["L1"]
    readings: list[tuple[str, dt.datetime, dict[str, float | bool]]] = [
        ("L1", T0 + dt.timedelta(minutes=i, seconds=s), {"speed_mps": float(i + s)})
        for i in range(60)
        for s in (0, 30)
    ]
    write(conn, devices, readings)
    # within the hour: minutes rolled up, the hour not yet (it is incomplete)
    r = roll_up(conn, T0 + dt.timedelta(minutes=30))
    assert (r.minutes, r.hours) == (29, 0)
    r = roll_up(conn, T0 + dt.timedelta(hours=1, seconds=10))
    assert (r.minutes, r.hours) == (31, 1)
    h = minute_row(conn, "telemetry_1h", l1, T0)
    values = [v["speed_mps"] for _, _, v in readings]
    assert h["messages"] == 120
    assert (h["speed_mps_min"], h["speed_mps_max"]) == (min(values), max(values))
    assert h["speed_mps_sum"] == pytest.approx(sum(values))
    assert h["speed_mps_n"] == 120


def test_redelivered_messages_do_not_inflate_rollups(
    conn: Conn, devices: dict[str, DeviceRef]
) -> None:
    batch: list[tuple[str, dt.datetime, dict[str, float | bool]]] = [
        ("L1", T0 + dt.timedelta(seconds=5), {"load_pct": 10.0})
    ]
    write(conn, devices, batch)
    roll_up(conn, T0 + dt.timedelta(minutes=5))
    write(conn, devices, batch)  # the broker redelivers it
    roll_up(conn, T0 + dt.timedelta(minutes=5))
    assert minute_row(conn, "telemetry_1m", devices["L1"], T0)["messages"] == 1


def test_retention_drops_old_chunks_but_never_unrolled_minutes(
    conn: Conn, devices: dict[str, DeviceRef]
) -> None:
    old, recent = T0 - dt.timedelta(days=40), T0 - dt.timedelta(days=1)
    write(conn, devices, [("L1", old, {"load_pct": 1.0}), ("L1", recent, {"load_pct": 2.0})])
    keep = Retention(raw_days=30, events_days=0, minute_days=0, hour_days=0)
    # the 40-day-old minute is not rolled up yet: retention keeps its chunk
    assert apply_retention(conn, T0, keep)["telemetry"] == 0
    assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (2,)
    roll_up(conn, T0)
    assert apply_retention(conn, T0, keep)["telemetry"] == 1
    assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (1,)
    # the rollups of the dropped day are still there
    assert minute_row(conn, "telemetry_1m", devices["L1"], old)["load_pct_sum"] == 1.0
    assert minute_row(conn, "telemetry_1h", devices["L1"], old)["load_pct_sum"] == 1.0


def test_a_minute_older_than_the_raw_horizon_is_not_recomputed(
    conn: Conn, devices: dict[str, DeviceRef]
) -> None:
    old = T0 - dt.timedelta(days=40)
    write(conn, devices, [("L1", old, {"load_pct": 1.0})])
    r = roll_up(conn, T0, raw_horizon=T0 - dt.timedelta(days=30))
    assert (r.minutes, r.discarded) == (0, 1)
    assert conn.execute("SELECT count(*) FROM rollup_dirty").fetchone() == (0,)
