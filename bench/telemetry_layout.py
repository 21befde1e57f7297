"""Narrow, wide or JSONB telemetry? Measure the three on the same stream.

    python -m bench.telemetry_layout [--messages 400000] [--devices 2000]

Each layout is a hypertable with the uniqueness the ingest contract needs (a redelivered
message is stored once). The same synthetic stream (elevators sending nine values, fire
and drainage points one to three) is written with binary COPY, then read back the way the
service reads it: a device's history through ``time_bucket``, and a city-wide per-minute
rollup of one metric. Printed: write rate, bytes on disk per message, query times, and
each figure's ratio to the wide layout.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg import sql

from estate.services import PrivateServices
from estate.settings import load_settings
from ingest import contract

ELEVATOR = contract.ELEVATOR.subtype_metrics["passenger"]
FIRE = contract.FIRE.subtype_metrics["hydrant_pressure"]
DRAINAGE = contract.DRAINAGE.subtype_metrics["sump_pit"]
BOOLS = {m.name for k in contract.KINDS.values() for m in k.metrics.values() if m.type == "boolean"}
METRICS = tuple(dict.fromkeys(ELEVATOR + FIRE + DRAINAGE))
METRIC_ID = {m: i for i, m in enumerate(METRICS)}


@dataclass(frozen=True)
class Stream:
    ts: np.ndarray  # microseconds since epoch
    device: np.ndarray
    seq: np.ndarray
    kind: np.ndarray  # 0 elevator, 1 fire, 2 drainage
    values: dict[str, np.ndarray]  # NaN where the message does not carry the metric


def make_stream(n: int, devices: int, seed: int = 7) -> Stream:
    rng = np.random.default_rng(seed)
    device = rng.integers(1, devices + 1, n).astype(np.int32)
    kind = np.select([device % 10 < 7, device % 10 < 9], [0, 1], 2).astype(np.int8)
    start = datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1e6
    ts = np.sort(rng.uniform(start, start + 86_400e6, n)).astype(np.int64)
    seq = np.zeros(n, np.int64)
    counters: dict[int, int] = {}
    for i, d in enumerate(device.tolist()):
        counters[d] = counters.get(d, 0) + 1
        seq[i] = counters[d]
    values: dict[str, np.ndarray] = {}
    for m in METRICS:
        carried = {0: m in ELEVATOR, 1: m in FIRE, 2: m in DRAINAGE}
        mask = np.vectorize(carried.get)(kind).astype(bool)
        v = (rng.integers(0, 2, n) if m in BOOLS else rng.normal(5, 2, n)).astype(np.float64)
        v[~mask] = np.nan
        values[m] = v
    return Stream(ts, device, seq, kind, values)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class Layout:
    name: str
    ddl: str
    copy: str
    types: list[str]
    rows: Callable[[Stream], Iterator[tuple[object, ...]]]
    history: str  # one device's hourly average speed
    rollup: str  # per-minute average pressure over all devices, one hour


def narrow_rows(s: Stream) -> Iterator[tuple[object, ...]]:
    cols = [(METRIC_ID[m], s.values[m]) for m in METRICS]
    for i in range(len(s.ts)):
        t = _dt(int(s.ts[i]))
        d, q = int(s.device[i]), int(s.seq[i])
        for mid, arr in cols:
            v = arr[i]
            if not math.isnan(v):
                yield (t, d, q, mid, float(v))


def wide_rows(s: Stream) -> Iterator[tuple[object, ...]]:
    cols = [(m in BOOLS, s.values[m]) for m in METRICS]
    for i in range(len(s.ts)):
        row: list[object] = [_dt(int(s.ts[i])), int(s.device[i]), int(s.seq[i])]
        for is_bool, arr in cols:
            v = arr[i]
            row.append(None if math.isnan(v) else (bool(v) if is_bool else float(v)))
        yield tuple(row)


def json_rows(s: Stream) -> Iterator[tuple[object, ...]]:
    from psycopg.types.json import Jsonb  # noqa: PLC0415

    cols = [(m, m in BOOLS, s.values[m]) for m in METRICS]
    for i in range(len(s.ts)):
        vals = {m: (bool(a[i]) if b else float(a[i])) for m, b, a in cols if a[i] == a[i]}
        yield (_dt(int(s.ts[i])), int(s.device[i]), int(s.seq[i]), Jsonb(vals))


def _wide_cols() -> str:
    return ", ".join(f"{m} {'boolean' if m in BOOLS else 'double precision'}" for m in METRICS)


SPEED = METRIC_ID["speed_mps"]
PRESSURE = METRIC_ID["pressure_mpa"]
HOUR = "ts >= '2026-11-01 10:00+00' AND ts < '2026-11-01 11:00+00'"

LAYOUTS = [
    Layout(
        "narrow",
        "CREATE TABLE t (ts timestamptz NOT NULL, device_id int NOT NULL, seq bigint NOT NULL,"
        " metric smallint NOT NULL, value double precision NOT NULL,"
        " UNIQUE (device_id, metric, ts, seq))",
        "COPY t (ts, device_id, seq, metric, value) FROM STDIN (FORMAT BINARY)",
        ["timestamptz", "int4", "int8", "int2", "float8"],
        narrow_rows,
        f"SELECT time_bucket('1 hour', ts) b, avg(value) FROM t WHERE device_id = 1"
        f" AND metric = {SPEED} GROUP BY b ORDER BY b",
        f"SELECT time_bucket('1 minute', ts) b, avg(value) FROM t WHERE metric = {PRESSURE}"
        f" AND {HOUR} GROUP BY b ORDER BY b",
    ),
    Layout(
        "wide",
        f"CREATE TABLE t (ts timestamptz NOT NULL, device_id int NOT NULL, seq bigint NOT NULL,"
        f" {_wide_cols()}, extra jsonb, UNIQUE (device_id, ts, seq))",
        f"COPY t (ts, device_id, seq, {', '.join(METRICS)}) FROM STDIN (FORMAT BINARY)",
        ["timestamptz", "int4", "int8"] + ["bool" if m in BOOLS else "float8" for m in METRICS],
        wide_rows,
        "SELECT time_bucket('1 hour', ts) b, avg(speed_mps) FROM t WHERE device_id = 1"
        " GROUP BY b ORDER BY b",
        f"SELECT time_bucket('1 minute', ts) b, avg(pressure_mpa) FROM t"
        f" WHERE pressure_mpa IS NOT NULL AND {HOUR} GROUP BY b ORDER BY b",
    ),
    Layout(
        "jsonb",
        "CREATE TABLE t (ts timestamptz NOT NULL, device_id int NOT NULL, seq bigint NOT NULL,"
        " vals jsonb NOT NULL, UNIQUE (device_id, ts, seq))",
        "COPY t (ts, device_id, seq, vals) FROM STDIN (FORMAT BINARY)",
        ["timestamptz", "int4", "int8", "jsonb"],
        json_rows,
        "SELECT time_bucket('1 hour', ts) b, avg((vals->>'speed_mps')::float8) FROM t"
        " WHERE device_id = 1 GROUP BY b ORDER BY b",
        f"SELECT time_bucket('1 minute', ts) b, avg((vals->>'pressure_mpa')::float8) FROM t"
        f" WHERE vals ? 'pressure_mpa' AND {HOUR} GROUP BY b ORDER BY b",
    ),
]


def _best_of(conn: psycopg.Connection[tuple[object, ...]], query: str, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        conn.execute(query).fetchall()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def measure(url: str, layout: Layout, stream: Stream) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute(layout.ddl)
        conn.execute(
            "SELECT create_hypertable('t', 'ts', chunk_time_interval => interval '6 hours')"
        )
        # Encoding rows is Python's cost, not the layout's: build them first, time the COPY.
        rows = list(layout.rows(stream))
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, cur.copy(layout.copy) as cp:
            cp.set_types(layout.types)
            for r in rows:
                cp.write_row(r)
        elapsed = time.perf_counter() - t0
        conn.execute("VACUUM ANALYZE t")
        size_row = conn.execute("SELECT hypertable_size('t')").fetchone()
        size = float(str(size_row[0])) if size_row else 0.0
        result = {
            "rows": float(len(rows)),
            "msgs_per_s": len(stream.ts) / elapsed,
            "bytes_per_msg": size / len(stream.ts),
            "history_ms": _best_of(conn, layout.history),
            "rollup_ms": _best_of(conn, layout.rollup),
        }
        conn.execute(sql.SQL("DROP TABLE t"))
        return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=400_000)
    ap.add_argument("--devices", type=int, default=2_000)
    args = ap.parse_args()
    stream = make_stream(args.messages, args.devices)
    with PrivateServices(load_settings()).running() as ep:
        with psycopg.connect(ep.database_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        results = {lay.name: measure(ep.database_url, lay, stream) for lay in LAYOUTS}
    base = results["wide"]
    print(
        f"{args.messages} messages from {args.devices} devices "
        "(70% elevators with 9 values, 20% fire with 1, 10% drainage with 3)"
    )
    header = (
        f"{'layout':8} {'rows':>9} {'msgs/s':>10} {'B/msg':>7} {'history ms':>11} {'rollup ms':>10}"
    )
    print(header)
    for name, r in results.items():
        print(
            f"{name:8} {int(r['rows']):9d} {r['msgs_per_s']:10.0f} {r['bytes_per_msg']:7.0f}"
            f" {r['history_ms']:11.1f} {r['rollup_ms']:10.1f}"
        )
    print("ratios to wide (write rate: higher is better; size and times: lower is better)")
    for name, r in results.items():
        print(
            f"{name:8} {'':9} {r['msgs_per_s'] / base['msgs_per_s']:10.2f}"
            f" {r['bytes_per_msg'] / base['bytes_per_msg']:7.2f}"
            f" {r['history_ms'] / base['history_ms']:11.2f}"
            f" {r['rollup_ms'] / base['rollup_ms']:10.2f}"
        )


if __name__ == "__main__":
    main()
