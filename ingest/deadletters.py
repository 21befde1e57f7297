"""Dead letters: list them, and replay them once the registry (or a device) is fixed.

A replay decodes each kept message again against the current registry, with the bounds
measured from when it was first received. What now passes is stored (idempotently: a
message that was meanwhile stored some other way is not stored twice) and marked
replayed; what still fails keeps its row, with the new verdict in ``replay_detail``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from ingest.batch import Incoming, decode_batch
from ingest.contract import Bounds
from ingest.worker import Directory
from ingest.writer import Writer

Conn = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True)
class DeadLetter:
    id: int
    received_at: dt.datetime
    topic: str
    payload: bytes
    reason: str
    detail: str
    replayed_at: dt.datetime | None
    replay_detail: str | None


def list_dead(
    conn: Conn, *, reason: str | None = None, limit: int = 50, include_replayed: bool = False
) -> list[DeadLetter]:
    """Newest first."""
    rows = conn.execute(
        "SELECT id, received_at, topic, payload, reason, detail, replayed_at, replay_detail"
        " FROM dead_letters WHERE (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(all)s OR replayed_at IS NULL) ORDER BY received_at DESC, id DESC"
        " LIMIT %(limit)s",
        {"reason": reason, "all": include_replayed, "limit": limit},
    ).fetchall()
    return [DeadLetter(*r) for r in rows]


def summary(conn: Conn) -> list[tuple[str, int]]:
    """Waiting dead letters per reason."""
    rows = conn.execute(
        "SELECT reason, count(*) FROM dead_letters WHERE replayed_at IS NULL"
        " GROUP BY reason ORDER BY count(*) DESC"
    ).fetchall()
    return [(str(r), int(n)) for r, n in rows]


@dataclass(frozen=True)
class ReplayResult:
    stored: int
    still_failing: int


def replay(
    conn: Conn,
    *,
    now: dt.datetime,
    reason: str | None = None,
    ids: list[int] | None = None,
    bounds: Bounds | None = None,
) -> ReplayResult:
    """Replay waiting dead letters (optionally only one reason, or these ids)."""
    directory = Directory()
    directory.load(conn)
    writer = Writer(conn)
    rows = conn.execute(
        "SELECT id, received_at, topic, payload FROM dead_letters WHERE replayed_at IS NULL"
        " AND (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s)) ORDER BY id",
        {"reason": reason, "ids": ids},
    ).fetchall()
    stored = failing = 0
    for dl_id, received_at, topic, payload in rows:
        msg = Incoming(str(topic), bytes(payload), 0, 0, 0, received_at)
        decoded = decode_batch([msg], directory.lookup, bounds=bounds or Bounds())
        with conn.transaction():
            if decoded.dead:
                _, _, _, why, detail, _, _ = decoded.dead[0]
                conn.execute(
                    "UPDATE dead_letters SET replay_detail = %s WHERE id = %s",
                    (f"{now.isoformat()} still {why}: {detail}", dl_id),
                )
                failing += 1
                continue
            writer.write(decoded)
            conn.execute(
                "UPDATE dead_letters SET replayed_at = %s, replay_detail = 'stored' WHERE id = %s",
                (now, dl_id),
            )
            stored += 1
    return ReplayResult(stored, failing)
