"""Inspector work: rectification notices (整改通知书) and the problem ledger (问题台账).

A fire inspector issues notices on fire matters, a market-supervision inspector on
elevators (special equipment), to estates in their area. The recipient (the estate's
property firm, or the unit named) rectifies; the issuing authority closes or rejects, and
looks back later. The problem ledger lists, across estates, every open or closed problem
a caller may see: notices, overdue maintenance and inspections, and work orders that
breached a deadline; as JSON, CSV or Excel.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from psycopg import sql
from pydantic import BaseModel, Field

from api.auth import Principal, Role
from api.deps import Caller, ClockDep, Db, Instant, allow
from api.pages import Cursor, Limit, Page, cursor_id, fetch_all, page
from api.problems import Problem
from api.workorders import ledger_scope
from estate.db import Conn
from oversight import ledger, notices

router = APIRouter(prefix="/api/v1", tags=["inspections"])
AUTHORITY = {Role.FIRE_INSPECTOR: "fire", Role.MARKET_INSPECTOR: "market"}


def notice_scope(p: Principal) -> sql.Composable:
    """SQL condition over ``notices`` for what ``p`` may see."""
    if p.role in (Role.ADMIN, Role.HOUSING_AUTHORITY):
        return sql.SQL("true")
    if p.role in AUTHORITY:
        return sql.SQL("(authority = {} AND {})").format(
            sql.Literal(AUTHORITY[p.role]), p.estate_scope("estate_code")
        )
    if p.role is Role.STREET_OFFICE:
        return p.estate_scope("estate_code")
    if p.role in (Role.OPERATOR, Role.MANAGER):
        # to the estate (its firm acts), or to the firm itself
        return sql.SQL("({} AND (recipient_org IS NULL OR recipient_org = {}))").format(
            p.estate_scope("estate_code"), sql.Literal(p.org_code)
        )
    if p.role is Role.MAINTENANCE:
        return sql.SQL("recipient_org = {}").format(sql.Literal(p.org_code))
    return sql.SQL("false")


class NoticeIn(BaseModel):
    estate: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    recipient_org: str | None = Field(
        default=None, description="a unit (e.g. the maintenance company); omitted: the estate"
    )
    device: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    problem: str = Field(min_length=1, max_length=2000)
    basis: str = Field(default="", max_length=500, description="the rule broken")
    deadline: dt.date


class StepIn(BaseModel):
    note: str = Field(default="", max_length=2000)
    new_deadline: dt.date | None = Field(default=None, description="relapsed: the new deadline")


class NoticeOut(BaseModel):
    id: int
    number: str
    authority: Literal["fire", "market"]
    issued_by: str
    area_code: str
    estate_code: str
    recipient_org: str | None
    device_code: str | None
    problem: str
    basis: str
    deadline: dt.date
    state: Literal["issued", "rectified", "closed", "reopened"]
    issued_at: dt.datetime
    rectified_at: dt.datetime | None
    closed_at: dt.datetime | None
    look_back_on: dt.date | None
    looked_back_at: dt.datetime | None
    look_back_result: Literal["holds", "relapsed"] | None
    reopen_count: int
    overdue: bool = Field(description="past its deadline and not rectified")


class NoticeEventOut(BaseModel):
    at: dt.datetime
    change: str
    actor: str
    note: str


class NoticeDetail(NoticeOut):
    events: list[NoticeEventOut]


def _out(row: tuple[Any, ...], today: dt.date) -> NoticeOut:
    fields = [f for f in NoticeOut.model_fields if f != "overdue"]
    d = dict(zip(fields, row, strict=True))
    overdue = d["state"] in ("issued", "reopened") and d["deadline"] < today
    return NoticeOut(**d, overdue=overdue)


def _visible(c: Conn, p: Principal, notice_id: int) -> tuple[Any, ...]:
    q = sql.SQL("SELECT {} FROM notices WHERE id = %s AND {}").format(
        sql.SQL(notices.COLUMNS), notice_scope(p)
    )
    row = c.execute(q, (notice_id,)).fetchone()
    if row is None:
        raise Problem(404, "not-found", "Not found", f"no notice {notice_id} that you may see")
    return row


def _can_act(c: Conn, body: NoticeIn, *, domain: str | None) -> bool:
    """Whether the recipient is the estate's property firm, or maintains the named device
    (or, without one, equipment of the issuer's domain in the estate)."""
    row = c.execute(
        "SELECT EXISTS (SELECT 1 FROM estates WHERE code = %(e)s AND property_firm_code = %(o)s)"
        " OR EXISTS (SELECT 1 FROM devices WHERE estate_code = %(e)s AND maintenance_code = %(o)s"
        "   AND (%(d)s::text IS NULL OR code = %(d)s) AND (%(k)s::text IS NULL OR kind = %(k)s))",
        {"e": body.estate, "o": body.recipient_org, "d": body.device, "k": domain},
    ).fetchone()
    return bool(row and row[0])


@router.post("/notices", status_code=201, responses={403: {}, 404: {}, 422: {}})
def issue_notice(c: Db, p: Caller, clock: ClockDep, body: NoticeIn) -> NoticeOut:
    """Issue a notice (fire or market inspector, to an estate in their area)."""
    allow(p, Role.FIRE_INSPECTOR, Role.MARKET_INSPECTOR)
    q = sql.SQL("SELECT 1 FROM estates WHERE code = %s AND {}").format(p.estate_scope("code"))
    if c.execute(q, (body.estate,)).fetchone() is None:
        raise Problem(404, "not-found", "Not found", f"no estate {body.estate} in your area")
    if body.device is not None:
        kind = c.execute(
            "SELECT kind FROM devices WHERE estate_code = %s AND code = %s",
            (body.estate, body.device),
        ).fetchone()
        if kind is not None and kind[0] != p.domain:
            raise Problem(422, "outside-domain", "Outside your domain",
                          f"{body.device} is a {kind[0]} device: a {p.domain} inspector's"
                          " notice names a device of that kind, or none")  # fmt: skip
    if body.recipient_org is not None:
        found = c.execute(
            "SELECT 1 FROM organisations WHERE code = %s", (body.recipient_org,)
        ).fetchone()
        if found is None:
            raise Problem(422, "unknown-unit", "Unknown unit",
                          f"no organisation {body.recipient_org} in the registry")  # fmt: skip
        if not _can_act(c, body, domain=p.domain):
            raise Problem(422, "unit-cannot-act", "The unit cannot act on it",
                          f"{body.recipient_org} is neither {body.estate}'s property firm nor"
                          f" the maintenance company of its {p.domain} equipment"
                          + (f" ({body.device})" if body.device else "")
                          + ": it could not see or rectify the notice")  # fmt: skip
    assert p.area_code is not None  # inspectors are bound to an area
    now = clock()
    try:
        nid = notices.issue(
            c, authority=AUTHORITY[p.role], area_code=p.area_code, estate=body.estate,
            recipient_org=body.recipient_org, device=body.device, problem=body.problem,
            basis=body.basis, deadline=body.deadline, actor=p.actor, now=now,
        )  # fmt: skip
    except notices.NoticeError as err:
        raise Problem(422, "bad-notice", "Cannot issue", str(err)) from None
    return _out(_visible(c, p, nid), now.date())


@router.get("/notices")
def list_notices(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    state: Literal["issued", "rectified", "closed", "reopened", "open", "all"] = "open",
    estate: str | None = None,
    overdue: bool | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[NoticeOut]:
    """Notices newest first, within scope; ``open`` = not closed."""
    today = clock().date()
    q = sql.SQL(
        "SELECT {} FROM notices WHERE {}"
        " AND (%(state)s = 'all' OR (%(state)s = 'open' AND state <> 'closed')"
        "      OR state = %(state)s)"
        " AND (%(estate)s::text IS NULL OR estate_code = %(estate)s)"
        " AND (%(overdue)s::boolean IS NULL OR"
        "      (state IN ('issued', 'reopened') AND deadline < %(today)s) = %(overdue)s)"
        " AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s) ORDER BY id DESC LIMIT %(limit)s"
    ).format(sql.SQL(notices.COLUMNS), notice_scope(p))
    rows = c.execute(
        q,
        {
            "state": state, "estate": estate, "overdue": overdue, "today": today,
            "cursor": cursor_id(cursor), "limit": limit,
        },
    ).fetchall()  # fmt: skip
    return page([_out(r, today) for r in rows], limit, lambda n: n.id)


@router.get("/notices/{notice_id}", responses={404: {}})
def get_notice(c: Db, p: Caller, clock: ClockDep, notice_id: int) -> NoticeDetail:
    """One notice with every step."""
    n = _out(_visible(c, p, notice_id), clock().date())
    events = [
        NoticeEventOut(at=r[0], change=r[1], actor=r[2], note=r[3])
        for r in c.execute(
            "SELECT at, change, actor, note FROM notice_events WHERE notice_id = %s"
            " ORDER BY at, id",
            (notice_id,),
        )
    ]
    return NoticeDetail(**n.model_dump(), events=events)


@router.post("/notices/{notice_id}/{action}", responses={403: {}, 404: {}, 409: {}})
def step_notice(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    notice_id: int,
    action: Literal["rectify", "reject", "close", "holds", "relapsed"],
    body: StepIn | None = None,
) -> NoticeOut:
    """``rectify``: the recipient says what was done. ``close`` / ``reject``: the issuing
    authority accepts or sends it back. ``holds`` / ``relapsed``: the look-back's result
    (relapsed reopens it with ``new_deadline``)."""
    row = _visible(c, p, notice_id)
    authority, recipient = row[2], row[6]
    if action == "rectify":
        if p.role is Role.MAINTENANCE:
            if recipient != p.org_code:
                raise Problem(403, "forbidden", "Forbidden", "the notice is not addressed to you")
        else:
            allow(p, Role.OPERATOR, Role.MANAGER)
    elif AUTHORITY.get(p.role) != authority:
        raise Problem(403, "forbidden", "Forbidden", f"only a {authority} inspector may {action}")
    b = body or StepIn()
    now = clock()
    try:
        notices.step(c, notice_id, action, actor=p.actor, now=now, note=b.note,
                     new_deadline=b.new_deadline)  # fmt: skip
    except notices.NoticeError as err:
        raise Problem(409, "not-applicable", "Conflict", str(err)) from None
    return _out(_visible(c, p, notice_id), now.date())


# ---------------------------------------------------------------------- problem ledger


class ProblemOut(BaseModel):
    source: Literal["notice", "overdue", "breach"]
    ref: str = Field(description="notice number, supervision item id, or work order id")
    estate_code: str
    device_code: str | None
    responsible: str | None
    problem: str
    due: dt.date | None
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    state: str


def problems(c: Conn, p: Principal, *, start: dt.datetime, end: dt.datetime) -> list[ProblemOut]:
    """Every problem opened in [start, end) that ``p`` may see, oldest first."""
    notice_q = sql.SQL(
        "SELECT 'notice' AS source, number AS ref, estate_code, device_code,"
        " coalesce(recipient_org, estate_code) AS responsible, problem, deadline AS due,"
        " issued_at AS opened_at, closed_at, state FROM notices"
        " WHERE issued_at >= %(s)s AND issued_at < %(e)s AND {}"
    ).format(notice_scope(p))
    if p.role in (Role.ADMIN, Role.HOUSING_AUTHORITY, Role.MARKET_INSPECTOR, Role.STREET_OFFICE,
                  Role.OPERATOR, Role.MANAGER):  # fmt: skip
        item_scope: sql.Composable = p.estate_scope("estate_code")
    elif p.role is Role.MAINTENANCE:
        item_scope = sql.SQL("maintenance_code = {}").format(sql.Literal(p.org_code))
    else:
        item_scope = sql.SQL("false")
    item_q = sql.SQL(
        "SELECT 'overdue', id::text, estate_code, device_code, maintenance_code,"
        " replace(item, '_', ' '), due, opened_at, closed_at,"
        " CASE WHEN closed_at IS NULL THEN 'open' ELSE 'closed' END FROM supervision_items"
        " WHERE opened_at >= %(s)s AND opened_at < %(e)s AND {}"
    ).format(item_scope)
    breach_q = sql.SQL(
        "SELECT 'breach', o.id::text, o.estate_code, o.device_code, o.assignee,"
        " o.alert_type || ': ' || string_agg(b.deadline, ', ' ORDER BY b.breached_at)"
        " || ' deadline missed', min(b.due_at)::date, o.created_at,"
        " coalesce(o.closed_at, o.cancelled_at), o.state"
        " FROM work_orders o JOIN work_order_breaches b ON b.order_id = o.id"
        " WHERE o.created_at >= %(s)s AND o.created_at < %(e)s AND {}"
        " GROUP BY o.id"
    ).format(ledger_scope(p))
    q = sql.SQL("{} UNION ALL {} UNION ALL {} ORDER BY 8, 2").format(notice_q, item_q, breach_q)
    return fetch_all(c, ProblemOut, q, {"s": start, "e": end})


@router.get(
    "/problems",
    response_model=None,
    responses={
        200: {
            "content": {
                "text/csv": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            },
            "description": "the problem ledger (JSON, CSV or an Excel workbook)",
        }
    },
)
def get_problems(
    *,
    c: Db,
    p: Caller,
    start: Instant,
    end: Instant,
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
) -> Response | list[ProblemOut]:
    """The problem ledger (问题台账) across estates: notices, overdue maintenance and
    inspections, and work orders that missed a deadline, opened in [start, end)."""
    if end <= start:
        raise Problem(422, "bad-period", "Bad period", "end must be after start")
    if p.role is Role.OWNER:
        raise Problem(403, "forbidden", "Forbidden", "owners have no problem ledger")
    items = problems(c, p, start=start, end=end)
    if format == "json":
        return items
    header = list(ProblemOut.model_fields)
    rows = [list(i.model_dump().values()) for i in items]
    name = f"problems-{start:%Y%m%d}-{end:%Y%m%d}"
    if format == "csv":
        return Response(
            ledger.csv_text(header, rows).encode("utf-8-sig"),  # the BOM: Excel reads UTF-8
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return Response(
        ledger.workbook({"problems": (header, rows)}, title=name),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )
