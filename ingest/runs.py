"""Repeated readings stored as runs: a lossless reduction of raw telemetry for the Apache
edition (issue 21, item 7; migration 0020, docs/scale.md).

A *run* is one device's consecutive readings (ordered by ts, seq) with identical values,
inside one half hour and one block of 2^30 sequence numbers (so each repeat's offsets fit
in int4). ``compact`` rewrites whole day chunks of ``telemetry`` older than
``after`` into ``telemetry_runs`` and drops the chunk, in one transaction that first
checks, per slice of devices, that the runs expand to exactly the rows they replace (count
and a checksum of every row's text). Values are compared by their text, so ``-0`` and
``0``, or ``1.0`` and ``1.00`` in ``extra``, are different readings.

The horizon (``telemetry_runs_horizon``) is moved before a day is compacted: from then on
the writer stores a late reading for that day as a run of one (``INSERT_SQL``) instead of in
the chunk about to be dropped, and the compaction waits, by locking the chunk, for any
writer that inserted there before it saw the new horizon.

Readers use ``telemetry_between(since, until)`` (raw and runs together).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from ingest.batch import METRIC_COLUMNS, TELEMETRY_COLUMNS

log = logging.getLogger("estate.runs")

_COLS = TELEMETRY_COLUMNS
_NAMES = ", ".join(_COLS)
_VALUE_COLS = (*METRIC_COLUMNS, "extra")  # what a repeat must equal
_VALUES = ", ".join(_VALUE_COLS)

# The writer's insert of a batch (staged in _tel): readings at or after the horizon into
# telemetry; earlier ones (late, for a compacted day) as runs of one unless a run holds
# them already. Returns the keys inserted, as the plain insert did.
INSERT_SQL = f"""
WITH h AS (SELECT through FROM telemetry_runs_horizon),
raw AS (
    INSERT INTO telemetry SELECT * FROM _tel WHERE ts >= (SELECT through FROM h)
    ON CONFLICT DO NOTHING RETURNING device_id, seq, ts
), late AS (
    INSERT INTO telemetry_runs ({_NAMES}, last_ts)
    SELECT {_NAMES}, ts FROM _tel t
     WHERE t.ts < (SELECT through FROM h)
       AND NOT EXISTS (SELECT FROM telemetry_run_row(t.device_id, t.ts, t.seq))
       -- a day whose compaction failed after the horizon moved is still raw
       AND NOT EXISTS (SELECT FROM telemetry r
                        WHERE r.device_id = t.device_id AND r.ts = t.ts AND r.seq = t.seq)
    ON CONFLICT DO NOTHING RETURNING device_id, seq, ts
)
SELECT * FROM raw UNION ALL SELECT * FROM late
"""  # noqa: S608 (every name is a constant above)

# The stored rows for a batch's keys, raw or in a run (for the duplicate check).
STORED_SQL = (
    f"SELECT {', '.join(f't.{c}' for c in _COLS)} FROM telemetry t"  # noqa: S608 (constants)
    " JOIN unnest(%(d)s::int4[], %(s)s::int8[], %(ts)s::timestamptz[]) k(d, s, ts)"
    " ON t.device_id = k.d AND t.seq = k.s AND t.ts = k.ts"
    f" UNION ALL SELECT {', '.join(f'r.{c}' for c in _COLS)}"
    " FROM unnest(%(d)s::int4[], %(s)s::int8[], %(ts)s::timestamptz[]) k(d, s, ts)"
    " CROSS JOIN LATERAL telemetry_run_row(k.d, k.ts, k.s) r"
)

_FIRST = ", ".join(f"(array_agg({c}) FILTER (WHERE brk = 1))[1]" for c in _VALUE_COLS)

# One slice of devices of one day, as runs. Stages: each row's break (its values, half
# hour or sequence block differ from the device's previous row), the run number (a running
# count of breaks), each run's first reading; then one row per run.
_COMPACT_SQL = f"""
WITH s AS (
    SELECT {_NAMES}, ROW({_VALUES})::text AS v, time_bucket('30 minutes', ts) AS half,
           div(seq, 1073741824) AS block
      FROM telemetry
     WHERE ts >= %(lo)s AND ts < %(hi)s AND device_id >= %(d0)s AND device_id < %(d1)s
), b AS (
    SELECT s.*, (v IS DISTINCT FROM lag(v) OVER w OR half IS DISTINCT FROM lag(half) OVER w
                 OR block IS DISTINCT FROM lag(block) OVER w)::int AS brk
      FROM s WINDOW w AS (PARTITION BY device_id ORDER BY ts, seq)
), n AS (
    SELECT b.*, sum(brk) OVER (PARTITION BY device_id ORDER BY ts, seq
                               ROWS UNBOUNDED PRECEDING) AS run
      FROM b
), f AS (
    SELECT n.*, first_value(ts) OVER r AS ts0, first_value(seq) OVER r AS seq0
      FROM n WINDOW r AS (PARTITION BY device_id, run ORDER BY ts, seq)
), ins AS (
    INSERT INTO telemetry_runs ({_NAMES}, last_ts, rep_us, rep_seq)
    SELECT min(ts), device_id, (array_agg(seq) FILTER (WHERE brk = 1))[1], {_FIRST}, max(ts),
           array_agg((extract(epoch FROM ts - ts0) * 1000000)::int4 ORDER BY ts, seq)
               FILTER (WHERE brk = 0),
           array_agg((seq - seq0)::int4 ORDER BY ts, seq) FILTER (WHERE brk = 0)
      FROM f GROUP BY device_id, run
    RETURNING 1 + coalesce(cardinality(rep_us), 0) AS readings
)
SELECT count(*), coalesce(sum(readings), 0) FROM ins
"""  # noqa: S608 (every name is a constant above)

# Order-independent checksum of every reading's text, raw and expanded from runs.
_SUM_RAW = (
    "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM telemetry t"
    " WHERE ts >= %(lo)s AND ts < %(hi)s AND device_id >= %(d0)s AND device_id < %(d1)s"
)
_SUM_RUNS = (
    "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)"
    " FROM telemetry_run_rows(%(lo)s, %(hi)s) t WHERE device_id >= %(d0)s AND device_id < %(d1)s"
)


def _sums(
    conn: psycopg.Connection[tuple[Any, ...]], query: str, p: dict[str, Any]
) -> tuple[int, int]:
    row = conn.execute(query, p).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return int(row[0]), int(row[1])


def edition(conn: psycopg.Connection[tuple[Any, ...]]) -> str:
    """TimescaleDB's license on this server: ``apache`` (no native compression; runs are
    the way) or ``timescale``."""
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return str(row[0]) if row and row[0] else "apache"


NATIVE_SETUP = (
    "ALTER TABLE telemetry SET (timescaledb.compress, timescaledb.compress_segmentby ="
    " 'device_id', timescaledb.compress_orderby = 'ts, seq')"
)
NATIVE_POLICY = (
    "SELECT add_compression_policy('telemetry', compress_after => %s, if_not_exists => true)"
)


def native_compression(conn: psycopg.Connection[tuple[Any, ...]], after: dt.timedelta) -> None:
    """On a Timescale-licensed server, instead of runs: TimescaleDB's own compression of
    raw chunks older than ``after``, by its background policy. Segmented by device and
    ordered by (ts, seq), the unique key the writer's duplicate check relies on; every
    reader is unchanged (compressed chunks are read transparently). Idempotent.

    Not run on this project's machines (the Apache edition; Debian ships no other): on
    them these statements reach TimescaleDB's license check, which is what the tests
    verify."""
    with conn.transaction():
        configured = conn.execute(
            "SELECT 1 FROM timescaledb_information.compression_settings"
            " WHERE hypertable_schema = current_schema() AND hypertable_name = 'telemetry'"
        ).fetchone()
        if configured is None:
            conn.execute(NATIVE_SETUP)
        conn.execute(NATIVE_POLICY, (after,))


def keep_old_days(
    conn: psycopg.Connection[tuple[Any, ...]],
    now: dt.datetime,
    after: dt.timedelta,
    *,
    go_on: Callable[[], bool] = lambda: True,
) -> Compacted:
    """Raw days older than ``after``, the edition's way: on the Apache edition every due
    day as runs, one day (one transaction) at a time while ``go_on()``; on a
    Timescale-licensed server TimescaleDB's compression policy (``native_compression``)."""
    if edition(conn) == "timescale":
        native_compression(conn, after)
        return Compacted(0, 0, 0)
    days = readings = made_runs = 0
    while go_on():
        made = compact(conn, now, after)
        if not made.days:
            break
        days, readings, made_runs = days + 1, readings + made.readings, made_runs + made.runs
    return Compacted(days, readings, made_runs)


class RunsMismatch(RuntimeError):
    """The runs written for a slice do not expand to the rows they replace (a bug): the
    day's transaction is rolled back, the raw chunk stays."""


@dataclass(frozen=True)
class Compacted:
    days: int  # day chunks rewritten as runs and dropped
    readings: int  # raw rows they held
    runs: int  # rows written to telemetry_runs


def due_chunks(
    conn: psycopg.Connection[tuple[Any, ...]], now: dt.datetime, after: dt.timedelta
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The raw chunks, oldest first, that may become runs at ``now``: ending ``after``
    before it or earlier, and before any minute still waiting for its rollup."""
    row = conn.execute("SELECT min(bucket) FROM rollup_dirty WHERE level = '1m'").fetchone()
    cutoff = now - after
    if row is not None and row[0] is not None:
        cutoff = min(cutoff, row[0])
    return [
        (lo, hi)
        for lo, hi in conn.execute(
            "SELECT range_start, range_end FROM timescaledb_information.chunks"
            " WHERE hypertable_schema = current_schema() AND hypertable_name = 'telemetry'"
            " AND range_end <= %s ORDER BY range_start",
            (cutoff,),
        )
    ]


def compact(
    conn: psycopg.Connection[tuple[Any, ...]],
    now: dt.datetime,
    after: dt.timedelta,
    *,
    slice_devices: int = 5000,
    limit: int = 1,
) -> Compacted:
    """Rewrite up to ``limit`` due day chunks as runs (oldest first) and drop them; each
    day is one transaction, verified before it commits (``RunsMismatch``). ``conn`` must
    be in autocommit mode."""
    days = readings = runs = 0
    for lo, hi in due_chunks(conn, now, after)[:limit]:
        with conn.transaction():
            conn.execute("UPDATE telemetry_runs_horizon SET through = greatest(through, %s)", (hi,))
        with conn.transaction():
            # a writer that inserted into this day before it saw the new horizon commits
            # first; later ones store the day's late readings as runs of one. Readers go
            # on; a second compactor (estate maintain beside the worker) waits, then finds
            # the chunk gone and fails harmlessly.
            for (chunk,) in conn.execute(
                "SELECT show_chunks('telemetry', older_than => %s, newer_than => %s)", (hi, lo)
            ).fetchall():
                conn.execute(f"LOCK TABLE {chunk} IN SHARE ROW EXCLUSIVE MODE")
            span = conn.execute(
                "SELECT min(device_id), max(device_id) FROM telemetry WHERE ts >= %s AND ts < %s",
                (lo, hi),
            ).fetchone()
            d0, last = (int(span[0]), int(span[1])) if span and span[0] is not None else (0, -1)
            day_rows = day_runs = 0
            while d0 <= last:
                p = {"lo": lo, "hi": hi, "d0": d0, "d1": d0 + slice_devices}
                raw = _sums(conn, _SUM_RAW, p)
                before = _sums(conn, _SUM_RUNS, p)  # late readings stored as runs already
                made = _sums(conn, _COMPACT_SQL, p)
                after_ = _sums(conn, _SUM_RUNS, p)
                grown = (after_[0] - before[0], after_[1] - before[1])
                if made[1] != raw[0] or grown != raw:
                    raise RunsMismatch(
                        f"runs for devices {d0}..{d0 + slice_devices - 1} of {lo:%Y-%m-%d}"
                        f" expand to {grown[0]} readings (checksum {grown[1]}), the raw rows"
                        f" are {raw[0]} (checksum {raw[1]}); the day stays raw"
                    )
                day_rows += int(raw[0])
                day_runs += int(made[0])
                d0 += slice_devices
            conn.execute(
                "SELECT drop_chunks('telemetry', older_than => %s, newer_than => %s)", (hi, lo)
            )
        log.info(
            "runs: %s: %d readings stored as %d runs; its raw chunk dropped",
            f"{lo:%Y-%m-%d}",
            day_rows,
            day_runs,
        )
        days, readings, runs = days + 1, readings + day_rows, runs + day_runs
    return Compacted(days, readings, runs)
