"""Writes one decoded batch in one transaction: telemetry, events, dead letters, state.

Telemetry and events go through binary COPY into session-local staging tables and then
``INSERT ... ON CONFLICT DO NOTHING`` into the hypertables: COPY is the fast path, and the
conflict clause makes a redelivered message (same device, ts and seq) a no-op, so the
broker's at-least-once delivery becomes exactly-once storage. The same transaction marks
the batch's minutes for the rollups (ingest.rollup).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ingest.batch import METRIC_COLUMNS, TELEMETRY_TYPES, Rows
from ingest.rollup import MARK_DIRTY

_TEL_COLS = ", ".join(("ts", "device_id", "seq", *METRIC_COLUMNS, "extra"))

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


class Writer:
    """Owns one connection; ``write`` is one transaction, all or nothing."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.conn = conn
        with conn.transaction():
            for stmt in _SETUP:
                conn.execute(stmt)

    def write(self, rows: Rows) -> Written:
        conn = self.conn
        tel = evt = 0
        with conn.transaction(), conn.cursor() as cur:
            if rows.telemetry:
                with cur.copy(f"COPY _tel ({_TEL_COLS}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(list(TELEMETRY_TYPES))
                    for r in rows.telemetry:
                        cp.write_row(r if r[-1] is None else (*r[:-1], Jsonb(r[-1])))
                cur.execute("INSERT INTO telemetry SELECT * FROM _tel ON CONFLICT DO NOTHING")
                tel = cur.rowcount
                cur.execute(MARK_DIRTY)
            if rows.events:
                with cur.copy(
                    "COPY _evt (ts, device_id, seq, code, detail) FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.set_types(["timestamptz", "int4", "int8", "text", "jsonb"])
                    for ts, dev, seq, code, detail in rows.events:
                        cp.write_row((ts, dev, seq, code, Jsonb(detail)))
                cur.execute("INSERT INTO events SELECT * FROM _evt ON CONFLICT DO NOTHING")
                evt = cur.rowcount
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
        return Written(tel, evt, len(rows.dead))
