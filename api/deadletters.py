"""``/api/v1/dead-letters``: what ingest could not store, and replaying it."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StrictInt

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
    ids: list[StrictInt] | None = Field(default=None, max_length=10_000)


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
    rows = deadletters.list_dead(
        c,
        reason=reason,
        estate=estate,
        replayed=replayed,
        scope=p.estate_scope("estate_code"),
        before_id=cursor_id(cursor),
        limit=limit,
    )
    items = [
        DeadLetterOut(
            id=d.id,
            received_at=d.received_at,
            topic=d.topic,
            estate_code=d.estate_code,
            device_code=d.device_code,
            reason=Reason(d.reason),
            detail=d.detail,
            payload_text=d.payload.decode("utf-8", errors="replace"),
            payload_base64=base64.b64encode(d.payload).decode(),
            replayed_at=d.replayed_at,
            replay_detail=d.replay_detail,
        )
        for d in rows
    ]
    return page(items, limit, lambda d: d.id)


@router.get("/summary")
def dead_letter_summary(c: Db, p: Caller) -> list[ReasonCount]:
    """Waiting dead letters per reason, within the caller's estates."""
    allow(p, *READERS)
    counts = deadletters.summary(c, scope=p.estate_scope("estate_code"))
    return [ReasonCount(reason=Reason(r), waiting=n) for r, n in counts]


@router.post("/replay")
def replay_dead_letters(c: Db, p: Caller, clock: ClockDep, body: ReplayIn) -> ReplayOut:
    """Decode waiting dead letters again (after the registry was fixed) and store what now
    passes, once; only those within the caller's estates. Safe to repeat."""
    allow(p, *REPLAYERS)
    result = deadletters.replay(
        c,
        now=clock(),
        reason=body.reason,
        ids=body.ids,
        bounds=Bounds(),
        scope=p.estate_scope("estate_code"),
    )
    return ReplayOut(stored=result.stored, still_failing=result.still_failing)
