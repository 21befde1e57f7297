"""Dead letters: list them, and replay them once the registry (or a device) is fixed.

A replay decodes each kept message again against the current registry, with the bounds
measured from when it was first received. What now passes is stored (idempotently: a
message that was meanwhile stored some other way is not stored twice) and marked
replayed; what still fails keeps its row, with the new verdict in ``replay_detail``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from psycopg import sql

from estate.db import Conn
from ingest.batch import Incoming, decode_batch
from ingest.contract import Bounds
from ingest.worker import Directory
from ingest.writer import Writer


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
    estate_code: str | None
    device_code: str | None


_ALL = sql.SQL("true")


def list_dead(
    conn: Conn,
    *,
    reason: str | None = None,
    estate: str | None = None,
    replayed: bool | None = False,
    scope: sql.Composable = _ALL,
    before_id: int | None = None,
    limit: int = 50,
) -> list[DeadLetter]:
    """Newest first. ``replayed``: False waiting ones, True replayed ones, None both;
    ``scope``: a condition on ``estate_code`` limiting what the caller may see;
    ``before_id``: the page after the one that ended there."""
    query = sql.SQL(
        "SELECT id, received_at, topic, payload, reason, detail, replayed_at, replay_detail,"
        " estate_code, device_code FROM dead_letters WHERE {}"
        " AND (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(estate)s::text IS NULL OR estate_code = %(estate)s)"
        " AND (%(replayed)s::boolean IS NULL OR (replayed_at IS NOT NULL) = %(replayed)s)"
        " AND (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s"
    ).format(scope)
    rows = conn.execute(
        query,
        {
            "reason": reason,
            "estate": estate,
            "replayed": replayed,
            "before": before_id,
            "limit": limit,
        },
    ).fetchall()
    return [DeadLetter(*r) for r in rows]


def summary(conn: Conn, *, scope: sql.Composable = _ALL) -> list[tuple[str, int]]:
    """Waiting dead letters per reason (within ``scope``), most first."""
    query = sql.SQL(
        "SELECT reason, count(*) FROM dead_letters WHERE replayed_at IS NULL AND {}"
        " GROUP BY reason ORDER BY count(*) DESC, reason"
    ).format(scope)
    return [(str(r), int(n)) for r, n in conn.execute(query)]


def waiting_ids(
    conn: Conn,
    *,
    reason: str | None = None,
    ids: list[int] | None = None,
    scope: sql.Composable = _ALL,
) -> list[int]:
    """The waiting dead letters a replay would take (within ``scope``)."""
    query = sql.SQL(
        "SELECT id FROM dead_letters WHERE replayed_at IS NULL AND {}"
        " AND (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s)) ORDER BY id"
    ).format(scope)
    return [int(r[0]) for r in conn.execute(query, {"reason": reason, "ids": ids})]


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
    scope: sql.Composable = _ALL,
) -> ReplayResult:
    """Replay waiting dead letters (optionally only one reason, or these ids, within
    ``scope``)."""
    wanted = waiting_ids(conn, reason=reason, ids=ids, scope=scope)
    if not wanted:
        return ReplayResult(0, 0)
    directory = Directory()
    directory.load(conn)
    writer = Writer(conn)
    rows = conn.execute(
        "SELECT id, received_at, topic, payload FROM dead_letters WHERE id = ANY(%s) ORDER BY id",
        (wanted,),
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
