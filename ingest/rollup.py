"""Per-minute and hourly rollups, and retention, maintained by the service.

TimescaleDB's continuous aggregates and retention policies are Timescale-licensed; this
works on the Apache edition with plain SQL and ``drop_chunks``:

- ingest marks the minute of every telemetry row in ``rollup_dirty`` in the batch's own
  transaction (``MARK_DIRTY``);
- ``roll_up`` takes complete dirty minutes one at a time, recomputes each from the raw rows
  (replacing the bucket's rows: a recompute, never an increment, so doing it twice is
  harmless), and marks the hour; complete dirty hours are recomputed from the minutes;
- ``apply_retention`` drops whole chunks older than each table's horizon, but never raw
  chunks whose minutes are not rolled up yet.

Buckets are taken with ``FOR UPDATE SKIP LOCKED``, each in its own short transaction, so
several maintainers may run at once and a writer re-marking an old minute waits at most
for one bucket's recompute.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from ingest.batch import BOOL_COLUMNS, METRIC_COLUMNS

log = logging.getLogger("estate.rollup")

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


def _columns() -> tuple[list[str], list[str], list[str]]:
    """(rollup columns, aggregates over raw rows, aggregates over minute rows)."""
    cols, raw, minutes = ["messages"], ["count(*)"], ["sum(messages)"]
    for c in METRIC_COLUMNS:
        if c in BOOL_COLUMNS:
            cols += [f"{c}_true", f"{c}_n"]
            raw += [f"count(*) FILTER (WHERE {c})", f"count({c})"]
            minutes += [f"sum({c}_true)", f"sum({c}_n)"]
        else:
            cols += [f"{c}_min", f"{c}_max", f"{c}_sum", f"{c}_n"]
            raw += [f"min({c})", f"max({c})", f"sum({c})", f"count({c})"]
            minutes += [f"min({c}_min)", f"max({c}_max)", f"sum({c}_sum)", f"sum({c}_n)"]
    return cols, raw, minutes


ROLLUP_COLUMNS, _RAW_AGG, _MIN_AGG = _columns()


def _upsert(target: str, source: str, aggregates: list[str], time_col: str) -> str:
    names = ", ".join(ROLLUP_COLUMNS)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in ROLLUP_COLUMNS)
    # every name comes from the constants above, none from input
    return (
        f"INSERT INTO {target} (bucket, device_id, {names})"  # noqa: S608
        f" SELECT %(bucket)s, device_id, {', '.join(aggregates)} FROM {source}"
        f" WHERE {time_col} >= %(bucket)s AND {time_col} < %(end)s GROUP BY device_id"
        f" ON CONFLICT (device_id, bucket) DO UPDATE SET {sets}"
    )


# raw readings and those stored as runs (ingest.runs) alike: a late reading for a day kept
# as runs recomputes its minute from all of it
_MINUTE_SQL = _upsert("telemetry_1m", "telemetry_between(%(bucket)s, %(end)s)", _RAW_AGG, "ts")
_HOUR_SQL = _upsert("telemetry_1h", "telemetry_1m", _MIN_AGG, "bucket")

# Run by the ingest writer after the batch's telemetry is in the staging table; ordered so
# that two writers marking the same minutes lock them in the same order (no deadlock).
MARK_DIRTY = (
    "INSERT INTO rollup_dirty (level, bucket)"
    " SELECT DISTINCT '1m', time_bucket('1 minute', ts) FROM _tel ORDER BY 2"
    " ON CONFLICT DO NOTHING"
)

_TAKE = """
    DELETE FROM rollup_dirty WHERE (level, bucket) = (
        SELECT level, bucket FROM rollup_dirty
        WHERE level = %s AND bucket <= %s
        ORDER BY bucket LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING bucket
"""


@dataclass(frozen=True)
class RollupResult:
    minutes: int  # minute buckets recomputed
    hours: int
    discarded: int  # dirty minutes older than the raw horizon (their raw rows are gone)


def roll_up(
    conn: psycopg.Connection[tuple[Any, ...]],
    now: dt.datetime,
    *,
    settle_s: float = 5.0,
    raw_horizon: dt.datetime | None = None,
    limit: int = 10_000,
) -> RollupResult:
    """Recompute the complete dirty buckets as of ``now``; at most ``limit`` of each level.

    A minute is complete once ``settle_s`` has passed after its end (for messages still in
    a batch). ``raw_horizon``: minutes before it are discarded, not recomputed, since
    retention has dropped (or is about to drop) their raw rows and a recompute would
    replace a full aggregate with a partial one. ``conn`` must be in autocommit mode.
    """
    settle = dt.timedelta(seconds=settle_s)
    minutes = hours = discarded = 0
    while minutes + discarded < limit:
        with conn.transaction():
            row = conn.execute(_TAKE, ("1m", now - MINUTE - settle)).fetchone()
            if row is None:
                break
            bucket: dt.datetime = row[0]
            if raw_horizon is not None and bucket < raw_horizon:
                discarded += 1
                continue
            conn.execute(_MINUTE_SQL, {"bucket": bucket, "end": bucket + MINUTE})
            conn.execute(
                "INSERT INTO rollup_dirty (level, bucket) VALUES ('1h', date_trunc('hour', %s))"
                " ON CONFLICT DO NOTHING",
                (bucket,),
            )
            minutes += 1
    while hours < limit:
        with conn.transaction():
            row = conn.execute(_TAKE, ("1h", now - HOUR - settle)).fetchone()
            if row is None:
                break
            conn.execute(_HOUR_SQL, {"bucket": row[0], "end": row[0] + HOUR})
            hours += 1
    if discarded:
        log.warning(
            "%d dirty minutes were older than the raw retention horizon %s and were not "
            "rolled up again; their late rows are counted in no rollup",
            discarded,
            raw_horizon,
        )
    return RollupResult(minutes, hours, discarded)


@dataclass(frozen=True)
class Retention:
    """How long each table keeps its rows, in days; 0 keeps them forever."""

    raw_days: float = 30
    events_days: float = 365
    minute_days: float = 90
    hour_days: float = 1830
    runs_after_days: float = 0  # raw days older than this become runs (ingest.runs); 0: never

    def raw_horizon(self, now: dt.datetime) -> dt.datetime | None:
        return now - dt.timedelta(days=self.raw_days) if self.raw_days else None


def apply_retention(
    conn: psycopg.Connection[tuple[Any, ...]], now: dt.datetime, retention: Retention
) -> dict[str, int]:
    """Drop chunks past each horizon; return chunks dropped per table.

    Raw telemetry is kept while a minute in it still waits to be rolled up, and minute rows
    while an hour waits, so retention never outruns the rollups.
    """
    pending = dict(
        conn.execute("SELECT level, min(bucket) FROM rollup_dirty GROUP BY level").fetchall()
    )
    plan: list[tuple[str, float, dt.datetime | None]] = [
        ("telemetry", retention.raw_days, pending.get("1m")),
        ("telemetry_runs", retention.raw_days, pending.get("1m")),
        ("events", retention.events_days, None),
        ("telemetry_1m", retention.minute_days, pending.get("1h")),
        ("telemetry_1h", retention.hour_days, None),
    ]
    dropped: dict[str, int] = {}
    for table, days, keep_from in plan:
        if not days:
            continue
        cutoff = now - dt.timedelta(days=days)
        if keep_from is not None:
            cutoff = min(cutoff, keep_from)
        with conn.transaction():
            chunks = conn.execute(
                "SELECT drop_chunks(%s::regclass, older_than => %s::timestamptz)",
                (table, cutoff),
            ).fetchall()
        dropped[table] = len(chunks)
        if chunks:
            log.info("retention: dropped %d chunks of %s older than %s", len(chunks), table, cutoff)
    return dropped
