"""``/api/v1/dead-letters``: what ingest could not store, and replaying it."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from psycopg import sql
from pydantic import BaseModel, Field

from api.auth import Role
from api.deps import Caller, ClockDep, Db, allow
from api.pages import Cursor, Limit, Page, cursor_id, page
from ingest import deadletters
from ingest.contract import Bounds, Reason

router = APIRouter(prefix="/api/v1/dead-letters", tags=["ingest"])
READERS = (Role.ADMIN, Role.OPERATOR, Role.MANAGER)
REPLAYERS = (Role.ADMIN, Role.MANAGER)


class DeadLetterOut(BaseModel):
    id: int
    received_at: dt.datetime
    topic: str
    estate_code: str | None
    device_code: str | None
    reason: Reason
    detail: str = Field(description="what was wrong, for a person")
    payload_text: str = Field(description="the raw payload as UTF-8 (bad bytes as U+FFFD)")
    payload_base64: str = Field(description="the raw payload, exactly")
    replayed_at: dt.datetime | None
    replay_detail: str | None


class ReasonCount(BaseModel):
    reason: Reason
    waiting: int


class ReplayIn(BaseModel):
    reason: Reason | None = None
    ids: list[int] | None = Field(default=None, max_length=10_000)


class ReplayOut(BaseModel):
    stored: int
    still_failing: int


@router.get("")
def list_dead_letters(
    *,
    c: Db,
    p: Caller,
    reason: Reason | None = None,
    estate: str | None = None,
    replayed: Annotated[bool, Query(description="replayed ones instead of waiting")] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeadLetterOut]:
    """Messages ingest could not store, newest first, within the caller's estates (admin:
    all, including those for estates not in the registry)."""
    allow(p, *READERS)
    query = sql.SQL(
        "SELECT id, received_at, topic, estate_code, device_code, reason, detail, payload,"
        " replayed_at, replay_detail FROM dead_letters WHERE {scope}"
        " AND (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(estate)s::text IS NULL OR estate_code = %(estate)s)"
        " AND (replayed_at IS NOT NULL) = %(replayed)s"
        " AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)"
        " ORDER BY id DESC LIMIT %(limit)s"
    ).format(scope=p.estate_scope("estate_code"))
    rows = c.execute(
        query,
        {
            "reason": reason,
            "estate": estate,
            "replayed": replayed,
            "cursor": cursor_id(cursor),
            "limit": limit,
        },
    ).fetchall()
    items = [
        DeadLetterOut(
            id=r[0],
            received_at=r[1],
            topic=r[2],
            estate_code=r[3],
            device_code=r[4],
            reason=Reason(r[5]),
            detail=r[6],
            payload_text=bytes(r[7]).decode("utf-8", errors="replace"),
            payload_base64=base64.b64encode(bytes(r[7])).decode(),
            replayed_at=r[8],
            replay_detail=r[9],
        )
        for r in rows
    ]
    return page(items, limit, lambda d: d.id)


@router.get("/summary")
def dead_letter_summary(c: Db, p: Caller) -> list[ReasonCount]:
    """Waiting dead letters per reason, within the caller's estates."""
    allow(p, *READERS)
    query = sql.SQL(
        "SELECT reason, count(*) FROM dead_letters WHERE replayed_at IS NULL AND {scope}"
        " GROUP BY reason ORDER BY count(*) DESC, reason"
    ).format(scope=p.estate_scope("estate_code"))
    return [ReasonCount(reason=Reason(r), waiting=n) for r, n in c.execute(query)]


@router.post("/replay")
def replay_dead_letters(c: Db, p: Caller, clock: ClockDep, body: ReplayIn) -> ReplayOut:
    """Decode waiting dead letters again (after the registry was fixed) and store what now
    passes, once; only those within the caller's estates. Safe to repeat."""
    allow(p, *REPLAYERS)
    query = sql.SQL(
        "SELECT id FROM dead_letters WHERE replayed_at IS NULL AND {scope}"
        " AND (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))"
    ).format(scope=p.estate_scope("estate_code"))
    ids = [int(r[0]) for r in c.execute(query, {"reason": body.reason, "ids": body.ids})]
    if not ids:
        return ReplayOut(stored=0, still_failing=0)
    result = deadletters.replay(c, now=clock(), ids=ids, bounds=Bounds())
    return ReplayOut(stored=result.stored, still_failing=result.still_failing)
