"""Writes one decoded batch in one transaction: telemetry, events, dead letters, state.

Telemetry and events go through binary COPY into session-local staging tables and then
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` into the hypertables: COPY is the fast
path, and the conflict clause makes a redelivered message (same device, ts and seq) a
no-op, so the broker's at-least-once delivery becomes exactly-once storage. Only what was
really inserted counts afterwards: the batch's rows are cut down to it (``Rows.keep``),
so device state, the alert stage and evidence never see a redelivery. A key stored before
(or earlier in the batch) with *other* content is a dead letter ``conflict``: the first
stays, nothing changes silently. The same transaction marks the batch's minutes for the
rollups (ingest.rollup). A late reading for a day already kept as runs is stored as a run
of one, and compared with the runs for duplicates (ingest.runs).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ingest import runs
from ingest.batch import TELEMETRY_COLUMNS, TELEMETRY_TYPES, Incoming, Rows, dead_letter
from ingest.contract import Reason, Topic, event_only
from ingest.rollup import MARK_DIRTY

_TEL_COLS = ", ".join(TELEMETRY_COLUMNS)

_SETUP = (
    "CREATE TEMP TABLE IF NOT EXISTS _tel (LIKE telemetry) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS _evt (LIKE events) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS _state (device_id int, last_seen timestamptz,"
    " last_ts timestamptz, last_seq bigint, online boolean, latest jsonb) ON COMMIT DELETE ROWS",
)

_STATE_SQL = (
    # newest readings win; an older (late) message only fills metrics not yet known
    """
    INSERT INTO device_state AS s (device_id, last_seen, last_ts, last_seq, status_at, latest)
    SELECT device_id, last_seen, last_ts, last_seq, last_seen, latest FROM _state
    ON CONFLICT (device_id) DO UPDATE SET
        last_seen = greatest(s.last_seen, EXCLUDED.last_seen),
        last_ts = greatest(s.last_ts, EXCLUDED.last_ts),
        last_seq = CASE WHEN s.last_ts IS NULL OR EXCLUDED.last_ts >= s.last_ts
                        THEN coalesce(EXCLUDED.last_seq, s.last_seq) ELSE s.last_seq END,
        latest = CASE WHEN s.last_ts IS NULL OR EXCLUDED.last_ts >= s.last_ts
                      THEN s.latest || EXCLUDED.latest ELSE EXCLUDED.latest || s.latest END
    """,
    # a status message (or a Last Will) decides online/offline
    """
    UPDATE device_state s SET online = t.online,
        offline_cause = CASE WHEN t.online THEN NULL ELSE 'status' END,
        status_at = CASE WHEN s.online IS DISTINCT FROM t.online THEN t.last_seen
                         ELSE s.status_at END
    FROM _state t WHERE t.device_id = s.device_id AND t.online IS NOT NULL
    """,
    # any message from a device the silence sweep marked offline brings it back
    """
    UPDATE device_state s SET online = true, offline_cause = NULL, status_at = t.last_seen
    FROM _state t WHERE t.device_id = s.device_id AND t.online IS NULL
      AND s.offline_cause = 'silence'
    """,
)


@dataclass(frozen=True)
class Written:
    """Rows actually inserted (duplicates excluded)."""

    telemetry: int
    events: int
    dead: int


Key = tuple[int, int, Any]  # (device_id, seq, ts)
Cursor = psycopg.Cursor[tuple[Any, ...]]


def _key(r: tuple[Any, ...]) -> Key:
    return (r[1], r[2], r[0])


def _conflict(rows: Rows, m: Incoming, row: tuple[Any, ...]) -> None:
    t = Topic.parse(m.topic)
    dead_letter(
        rows,
        m,
        Reason.CONFLICT,
        f"(ts {row[0].isoformat()}, seq {row[2]}) of {t.estate}/{t.device} was stored before "
        "with other content; the first is kept (a device must not reuse ts and seq)",
        estate=t.estate,
        device=t.device,
    )


class Writer:
    """Owns one connection; ``write`` is one transaction, all or nothing."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.conn = conn
        with conn.transaction():
            for stmt in _SETUP:
                conn.execute(stmt)

    def write(self, rows: Rows) -> Written:
        """Store ``rows`` in one transaction and cut them down to what was inserted."""
        conn = self.conn
        with conn.transaction(), conn.cursor(binary=True) as cur:
            tel_kept = self._telemetry(cur, rows) if rows.telemetry else []
            if any(tel_kept):
                cur.execute(MARK_DIRTY)
            evt_kept = self._events(cur, rows) if rows.events else []
            rows.keep(tel_kept, evt_kept)
            if rows.dead:
                with cur.copy(
                    "COPY dead_letters (received_at, topic, payload, reason, detail,"
                    " estate_code, device_code) FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.set_types(["timestamptz", "text", "bytea", "text", "text", "text", "text"])
                    for d in rows.dead:
                        cp.write_row(d)
            if rows.devices:
                with cur.copy("COPY _state FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int4", "timestamptz", "timestamptz", "int8", "bool", "jsonb"])
                    for dev_id, s in rows.devices.items():
                        cp.write_row(
                            (dev_id, s.last_seen, s.last_ts, s.last_seq, s.online, Jsonb(s.latest))
                        )
                for stmt in _STATE_SQL:
                    cur.execute(stmt)
        return Written(len(rows.telemetry), len(rows.events), len(rows.dead))

    def write_events(self, rows: Rows) -> int:
        """The event lane's transaction: ``rows``' events only, cut down to those inserted
        now; returns how many. No dead letters and no device state: the main path writes
        those from its own copy of each message (a conflict is dead-lettered there)."""
        if not rows.events:
            return 0
        # one statement, one round trip (autocommit: its own transaction); the batches
        # are a few events, where COPY's extra round trips cost more than they save
        cols = list(zip(*rows.events, strict=True))
        inserted = {
            (int(d), int(q), ts)
            for d, q, ts in self.conn.execute(
                "INSERT INTO events (ts, device_id, seq, code, detail)"
                " SELECT * FROM unnest(%s::timestamptz[], %s::int4[], %s::int8[], %s::text[],"
                " %s::jsonb[]) ON CONFLICT DO NOTHING RETURNING device_id, seq, ts",
                (*(list(c) for c in cols[:4]), [Jsonb(d) for d in cols[4]]),
            )
        }
        kept = []
        for r in rows.events:
            key = (int(r[1]), int(r[2]), r[0])
            kept.append(key in inserted)
            inserted.discard(key)  # the same key twice in the batch: the first is the one
        rows.keep([True] * len(rows.telemetry), kept)
        rows.dead.clear()
        rows.dead_reasons.clear()
        return len(rows.events)

    def _telemetry(self, cur: Cursor, rows: Rows) -> list[bool]:
        with cur.copy(f"COPY _tel ({_TEL_COLS}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(list(TELEMETRY_TYPES))
            for r in rows.telemetry:
                cp.write_row(r if r[-1] is None else (*r[:-1], Jsonb(r[-1])))
        # late readings for a day already stored as runs go to the runs (ingest.runs)
        cur.execute(runs.INSERT_SQL)
        if cur.rowcount == len(rows.telemetry):
            return [True] * len(rows.telemetry)  # the common case: all new, nothing to compare
        return _duplicates(
            cur,
            rows,
            table_rows=rows.telemetry,
            sources=rows.telemetry_from,
            stored_sql=runs.STORED_SQL,
        )

    def _events(self, cur: Cursor, rows: Rows) -> list[bool]:
        with cur.copy(
            "COPY _evt (ts, device_id, seq, code, detail) FROM STDIN (FORMAT BINARY)"
        ) as cp:
            cp.set_types(["timestamptz", "int4", "int8", "text", "jsonb"])
            for ts, dev, seq, code, detail in rows.events:
                cp.write_row((ts, dev, seq, code, Jsonb(detail)))
        cur.execute(
            "INSERT INTO events SELECT * FROM _evt ON CONFLICT DO NOTHING"
            " RETURNING device_id, seq, ts"
        )
        if cur.rowcount == len(rows.events):
            return [True] * len(rows.events)
        return _duplicates(
            cur,
            rows,
            table_rows=rows.events,
            sources=rows.events_from,
            stored_sql="SELECT t.ts, t.device_id, t.seq, t.code, t.detail FROM events t"
            " JOIN unnest(%(d)s::int4[], %(s)s::int8[], %(ts)s::timestamptz[]) k(d, s, ts)"
            " ON t.device_id = k.d AND t.seq = k.s AND t.ts = k.ts",
        )


def _duplicates(
    cur: Cursor,
    rows: Rows,
    *,
    table_rows: list[tuple[Any, ...]],
    sources: list[Incoming],
    stored_sql: str,
) -> list[bool]:
    """Some rows were not inserted (the key was stored before, or twice in this batch):
    each row the same as what is stored is either the one inserted (the first such, when
    its key is new) or a redelivery (dropped quietly); a row that differs is a conflict
    (dead letter). Returns which rows were inserted."""
    new = set(cur.fetchall())
    keys = sorted({_key(r) for r in table_rows}, key=lambda k: (k[0], k[1]))
    cur.execute(
        stored_sql,
        {"d": [k[0] for k in keys], "s": [k[1] for k in keys], "ts": [k[2] for k in keys]},
    )
    stored = {_key(r): _normal(r) for r in cur.fetchall()}
    kept: list[bool] = []
    claimed: set[Key] = set()
    for r, m in zip(table_rows, sources, strict=True):
        k = _key(r)
        if stored.get(k) != _normal(r):
            kept.append(False)
            _conflict(rows, m, r)
        elif k in new and k not in claimed:
            kept.append(True)  # this one was inserted now
            claimed.add(k)
        else:
            kept.append(False)  # a redelivery of what is stored
    return kept


def _normal(row: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """A row as compared: a JSON column read back is a dict, written it may be None."""
    if row is None:
        return None
    last = row[-1]
    return (*row[:-1], last or None) if isinstance(last, dict) or last is None else row


def mark_silent(conn: psycopg.Connection[Any], now: dt.datetime, silence: dt.timedelta) -> None:
    """Devices heard of last more than ``silence`` before ``now`` are offline (cause
    ``silence``), except event-only devices (``contract.event_only``): a smoke detector
    is quiet while all is well, only its status or Last Will takes it offline. One that
    an earlier version marked offline for silence is online again."""
    quiet = event_only()
    with conn.transaction():
        conn.execute(
            "UPDATE device_state s SET online = false, offline_cause = 'silence',"
            " status_at = %s FROM devices d WHERE d.id = s.device_id AND s.online"
            " AND s.last_seen < %s AND NOT (d.kind || '/' || d.subtype = ANY(%s))",
            (now, now - silence, quiet),
        )
        conn.execute(
            "UPDATE device_state s SET online = true, offline_cause = NULL, status_at = %s"
            " FROM devices d WHERE d.id = s.device_id AND s.offline_cause = 'silence'"
            " AND d.kind || '/' || d.subtype = ANY(%s)",
            (now, quiet),
        )
