"""The fire control room's duty roster and shift log (GB 25201 §4.2), and the estate's
noticeboard for owners (公示栏): contacts, lifts, the year's maintenance spending.

The property firm's control room and managers keep the roster and the log of their
estates; the fire authority, the street office and the housing authority read them in
their area (``gaps`` is what an inspector checks). The noticeboard is public, like the
fund's disclosure: owners need no account to read it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from psycopg import sql
from pydantic import BaseModel, Field, StrictInt

from api.auth import Principal, Role
from api.deps import Caller, ClockDep, Db, Instant, allow
from api.problems import Problem
from estate.db import Conn
from oversight import duty, noticeboard

router = APIRouter(prefix="/api/v1", tags=["duty"])
public = APIRouter(prefix="/api/v1/public", tags=["public"])
KEEPERS = (Role.ADMIN, Role.OPERATOR, Role.MANAGER)  # who writes the roster and the log
REFUSALS: dict[int | str, dict[str, Any]] = {403: {}, 404: {}, 422: {}}


def _estate(c: Conn, p: Principal, estate: str) -> None:
    q = sql.SQL("SELECT 1 FROM estates WHERE code = %s AND {}").format(p.estate_scope("code"))
    if c.execute(q, (estate,)).fetchone() is None:
        raise Problem(404, "not-found", "Not found", f"no estate {estate} that you may see")


def _reader(p: Principal) -> None:
    if p.role in (Role.OWNER, Role.MAINTENANCE, Role.MARKET_INSPECTOR):
        raise Problem(403, "forbidden", "Forbidden", "the fire control room's duty is not yours")


class StaffIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    cert_no: str = Field(min_length=1, max_length=64, description="消防设施操作员 certificate")


class ShiftIn(BaseModel):
    starts_at: Instant
    ends_at: Instant
    staff: list[StaffIn] = Field(min_length=1, max_length=20)


class ShiftOut(BaseModel):
    id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    staff: list[dict[str, str]]
    recorded_by: str


class GapOut(BaseModel):
    start: dt.datetime
    end: dt.datetime
    hours: float


class RosterOut(BaseModel):
    shifts: list[ShiftOut]
    gaps: list[GapOut] = Field(description="stretches nobody covers (GB 25201: 24 hours)")


class LogIn(BaseModel):
    at: Instant
    kind: Literal["handover", "check", "alarm", "fault", "note"]
    text: str = Field(min_length=1, max_length=4000)


class LogOut(BaseModel):
    id: int
    at: dt.datetime
    kind: str
    text: str
    author: str


@router.post(
    "/estates/{estate}/duty/shifts", status_code=201, responses={403: {}, 404: {}, 422: {}}
)
def add_shift(*, c: Db, p: Caller, clock: ClockDep, estate: str, body: ShiftIn) -> ShiftOut:
    """Put a shift on the control room's roster (two certified people at least)."""
    allow(p, *KEEPERS)
    _estate(c, p, estate)
    try:
        sid = duty.add_shift(
            c, estate, starts_at=body.starts_at, ends_at=body.ends_at,
            staff=[duty.Staff(s.name, s.cert_no) for s in body.staff], actor=p.actor, now=clock(),
        )  # fmt: skip
    except duty.DutyError as err:
        raise Problem(422, "bad-shift", "Shift refused", str(err)) from None
    (s,) = [x for x in duty.shifts(c, estate, body.starts_at, body.ends_at) if x.id == sid]
    return ShiftOut(**vars(s))


@router.get("/estates/{estate}/duty/shifts", responses=REFUSALS)
def get_roster(*, c: Db, p: Caller, estate: str, start: Instant, end: Instant) -> RosterOut:
    """The shifts of [start, end) and the stretches nobody covers."""
    _reader(p)
    _estate(c, p, estate)
    if not start < end <= start + dt.timedelta(days=92):
        raise Problem(422, "bad-period", "Bad period", "end after start, at most 92 days on")
    return RosterOut(
        shifts=[ShiftOut(**vars(s)) for s in duty.shifts(c, estate, start, end)],
        gaps=[
            GapOut(start=a, end=b, hours=round((b - a).total_seconds() / 3600, 2))
            for a, b in duty.gaps(c, estate, start, end)
        ],
    )


@router.post("/estates/{estate}/duty/log", status_code=201, responses=REFUSALS)
def add_log(*, c: Db, p: Caller, clock: ClockDep, estate: str, body: LogIn) -> LogOut:
    """An entry in the shift log: a handover, a check, an alarm, a fault, a note."""
    allow(p, *KEEPERS)
    _estate(c, p, estate)
    try:
        lid = duty.log(c, estate, at=body.at, kind=body.kind, text=body.text, actor=p.actor,
                       now=clock())  # fmt: skip
    except duty.DutyError as err:
        raise Problem(422, "bad-entry", "Entry refused", str(err)) from None
    return LogOut(id=lid, at=body.at, kind=body.kind, text=body.text.strip(), author=p.actor)


@router.get("/estates/{estate}/duty/log", responses={403: {}, 404: {}})
def get_log(
    *, c: Db, p: Caller, clock: ClockDep, estate: str,
    days: Annotated[int, Query(ge=1, le=92)] = 7,
) -> list[LogOut]:  # fmt: skip
    """The shift log of the last ``days`` days, newest first."""
    _reader(p)
    _estate(c, p, estate)
    rows = c.execute(
        "SELECT id, at, kind, text, author FROM duty_log WHERE estate_code = %s AND at >= %s"
        " ORDER BY at DESC, id DESC LIMIT 1000",
        (estate, clock() - dt.timedelta(days=days)),
    ).fetchall()
    return [LogOut(id=r[0], at=r[1], kind=r[2], text=r[3], author=r[4]) for r in rows]


class SpendingIn(BaseModel):
    year: StrictInt = Field(ge=2000, le=2100)
    kind: Literal["elevator", "fire", "drainage", "water_supply"]
    org_code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    amount_fen: StrictInt = Field(ge=0, le=10**13)
    note: str = Field(default="", max_length=500)


@router.put(
    "/estates/{estate}/noticeboard/spending", status_code=204, responses={403: {}, 404: {}, 422: {}}
)
def set_spending(*, c: Db, p: Caller, clock: ClockDep, estate: str, body: SpendingIn) -> None:
    """What the estate paid a company for a year's maintenance (shown on the noticeboard)."""
    allow(p, *KEEPERS)
    _estate(c, p, estate)
    try:
        noticeboard.set_spending(
            c, estate, year=body.year, kind=body.kind, org=body.org_code,
            amount_fen=body.amount_fen, note=body.note, actor=p.actor, now=clock(),
        )  # fmt: skip
    except noticeboard.BoardError as err:
        raise Problem(422, "bad-entry", "Entry refused", str(err)) from None


class FirmOut(BaseModel):
    name: str
    phone: str | None


class CompanyOut(BaseModel):
    kind: str
    code: str
    name: str
    phone: str | None
    devices: int


class LiftOut(BaseModel):
    code: str
    location: str | None
    emergency_code: str | None = Field(description="96333 应急救援识别码")
    registration_no: str | None = Field(description="使用登记证编号")
    maintenance_code: str | None
    last_maintenance: dt.date | None
    inspection_due: dt.date | None


class SpendingOut(BaseModel):
    kind: str
    org_code: str
    org_name: str
    amount_fen: int
    note: str


class NoticeboardOut(BaseModel):
    estate_code: str
    estate_name: str
    address: str | None
    property_firm: FirmOut | None
    companies: list[CompanyOut]
    lifts: list[LiftOut]
    year: int
    spending: list[SpendingOut]
    lift_spending_fen: int = Field(description="the year's lift maintenance spending, in fen")


@public.get("/estates/{estate}/noticeboard", responses={404: {}})
def get_noticeboard(
    *, c: Db, clock: ClockDep, estate: str,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> NoticeboardOut:  # fmt: skip
    """The estate's noticeboard (公示栏): the property firm, the maintenance companies and
    their contacts, every lift's 96333 code, registration and dates, and the year's
    maintenance spending (this year unless ``year``)."""
    got = noticeboard.board(c, estate, year or clock().year)
    if got is None:
        raise Problem(404, "not-found", "Not found", f"no estate {estate}")
    return NoticeboardOut.model_validate(got)
