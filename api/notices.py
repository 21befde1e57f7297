"""Rectification notices (整改通知书) through the API, as the authorities run them.

Any authority issues within its area: a fire inspector on fire matters, a market-supervision
inspector on lifts, the housing authority and the street office on anything in an estate.
A notice lists problems, each with its responsible person, measures and deadline. The
recipient (the named unit, else the estate's property firm, else, for an estate without
one, its street office acting for the owners) is told at once, acknowledges, and reports
each rectification with evidence; the issuing authority accepts or sends it back, and
looks back on or after the look-back date. Overdue problems are escalated (挂牌督办) by the
supervisor (``oversight.notices.supervise``). Scopes are SQL conditions (``notice_scope``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from psycopg import sql
from pydantic import BaseModel, Field, model_validator

from api import files
from api.auth import Principal, Role
from api.deps import Caller, ClockDep, Day, Db, allow
from api.pages import Cursor, Limit, Page, cursor_id, page
from api.problems import Problem
from estate.db import Conn
from estate.registry import Kind
from oversight import attachments, notices

router = APIRouter(prefix="/api/v1", tags=["inspections"])
AUTHORITY = {
    Role.FIRE_INSPECTOR: "fire",
    Role.MARKET_INSPECTOR: "market",
    Role.HOUSING_AUTHORITY: "housing",
    Role.STREET_OFFICE: "street",
}
AuthorityName = Literal["fire", "market", "housing", "street"]
State = Literal["issued", "rectified", "closed", "reopened"]
Action = Literal["rectify", "reject", "close", "holds", "relapsed"]


def notice_scope(p: Principal) -> sql.Composable:
    """SQL condition over ``notices`` for what ``p`` may see."""
    if p.role in (Role.ADMIN, Role.HOUSING_AUTHORITY):
        return sql.SQL("true")
    if p.role in (Role.FIRE_INSPECTOR, Role.MARKET_INSPECTOR):
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


# ---------------------------------------------------------------------- models


_CODE = r"^[A-Za-z0-9_-]{1,64}$"


class ProblemIn(BaseModel):
    problem: str = Field(min_length=1, max_length=2000, description="what is wrong")
    basis: str = Field(default="", max_length=500, description="the rule broken")
    measures: str = Field(min_length=1, max_length=2000, description="整改措施: what must be done")
    responsible_person: str = Field(
        min_length=1, max_length=64, description="责任人: the named person answerable for it"
    )
    device: str | None = Field(default=None, pattern=_CODE)
    category: Kind | Literal["general"] | None = Field(
        default=None, description="default: the device's kind, else the authority's domain"
    )
    deadline: Day


class NoticeIn(BaseModel):
    """A notice with ``problems``; or, as before issue 19, one problem given by the flat
    fields (``problem``, ``deadline`` …), where measures and a responsible person are
    optional so that older clients keep working."""

    estate: str = Field(pattern=_CODE)
    recipient_org: str | None = Field(
        default=None, description="a unit (e.g. the maintenance company); omitted: the estate"
    )
    problems: list[ProblemIn] | None = Field(default=None, min_length=1, max_length=50)
    device: str | None = Field(default=None, pattern=_CODE)
    problem: str | None = Field(default=None, min_length=1, max_length=2000)
    basis: str = Field(default="", max_length=500)
    measures: str = Field(default="", max_length=2000)
    responsible_person: str | None = Field(default=None, max_length=64)
    deadline: Day | None = None

    @model_validator(mode="after")
    def _one_form(self) -> NoticeIn:
        flat = self.problem is not None or self.deadline is not None
        if self.problems is not None and flat:
            raise ValueError("give `problems`, or the single problem's fields, not both")
        if self.problems is None and (self.problem is None or self.deadline is None):
            raise ValueError("a notice needs `problems` (or `problem` with `deadline`)")
        return self

    def items(self) -> list[notices.ProblemIn]:
        if self.problems is not None:
            return [
                notices.ProblemIn(
                    problem=p.problem, deadline=p.deadline, basis=p.basis, measures=p.measures,
                    responsible_person=p.responsible_person, device=p.device,
                    category=p.category,
                )
                for p in self.problems
            ]  # fmt: skip
        assert self.problem is not None
        assert self.deadline is not None
        return [
            notices.ProblemIn(
                problem=self.problem, deadline=self.deadline, basis=self.basis,
                measures=self.measures, responsible_person=self.responsible_person,
                device=self.device,
            )
        ]  # fmt: skip


class StepIn(BaseModel):
    note: str = Field(default="", max_length=2000)
    new_deadline: Day | None = Field(default=None, description="relapsed: the new deadline")
    look_back_days: int = Field(default=30, ge=1, le=366, description="close: days to 回头看")


class NoticeProblemOut(BaseModel):
    seq: int
    category: str
    device_code: str | None
    problem: str
    basis: str
    measures: str
    responsible_person: str | None
    deadline: dt.date
    state: State
    opened_at: dt.datetime
    rectified_at: dt.datetime | None
    rectification: str | None
    closed_at: dt.datetime | None
    look_back_on: dt.date | None
    looked_back_at: dt.datetime | None
    look_back_result: Literal["holds", "relapsed"] | None
    reopen_count: int
    supervised_at: dt.datetime | None = Field(description="挂牌督办: escalated when overdue")
    supervised_to: list[str]
    overdue: bool = Field(description="past its deadline and not rectified")


class NoticeOut(BaseModel):
    id: int
    number: str
    authority: AuthorityName
    issued_by: str
    area_code: str
    estate_code: str
    recipient_org: str | None
    device_code: str | None
    problem: str = Field(description="the first problem (a summary)")
    basis: str
    deadline: dt.date = Field(description="the nearest deadline of the open problems")
    state: State
    issued_at: dt.datetime
    rectified_at: dt.datetime | None
    closed_at: dt.datetime | None
    look_back_on: dt.date | None
    looked_back_at: dt.datetime | None
    look_back_result: Literal["holds", "relapsed"] | None
    reopen_count: int
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    overdue: bool = Field(description="a problem is past its deadline and not rectified")
    supervised: bool = Field(description="an open problem is under 挂牌督办")
    problems: list[NoticeProblemOut]


class NoticeEventOut(BaseModel):
    at: dt.datetime
    problem: int | None
    change: str
    actor: str
    note: str


class NoticeDetail(NoticeOut):
    events: list[NoticeEventOut]
    attachments: list[files.AttachmentOut]


class LookBackOut(BaseModel):
    notice_id: int
    number: str
    estate_code: str
    seq: int
    problem: str
    closed_at: dt.datetime
    look_back_on: dt.date


def _problems(c: Conn, ids: list[int], today: dt.date) -> dict[int, list[NoticeProblemOut]]:
    out: dict[int, list[NoticeProblemOut]] = {i: [] for i in ids}
    if not ids:
        return out
    names = [n.strip() for n in notices.PROBLEM_COLUMNS.split(",")]
    rows = c.execute(
        f"SELECT notice_id, {notices.PROBLEM_COLUMNS} FROM notice_problems"  # noqa: S608
        " WHERE notice_id = ANY(%s) ORDER BY notice_id, seq",
        (ids,),
    ).fetchall()
    for r in rows:
        d = dict(zip(names, r[1:], strict=True))
        overdue = d["state"] in ("issued", "reopened") and d["deadline"] < today
        out[int(r[0])].append(NoticeProblemOut(**d, overdue=overdue))
    return out


def _outs(c: Conn, rows: list[tuple[Any, ...]], today: dt.date) -> list[NoticeOut]:
    names = [n.strip() for n in notices.COLUMNS.split(",")]
    probs = _problems(c, [int(r[0]) for r in rows], today)
    out = []
    for r in rows:
        d = dict(zip(names, r, strict=True))
        ps = probs[int(d["id"])]
        out.append(
            NoticeOut(
                **d,
                overdue=any(x.overdue for x in ps),
                supervised=any(x.supervised_at is not None and x.state != "closed" for x in ps),
                problems=ps,
            )
        )
    return out


def _visible(c: Conn, p: Principal, notice_id: int) -> tuple[Any, ...]:
    q = sql.SQL("SELECT {} FROM notices WHERE id = %s AND {}").format(
        sql.SQL(notices.COLUMNS), notice_scope(p)
    )
    row = c.execute(q, (notice_id,)).fetchone()
    if row is None:
        raise Problem(404, "not-found", "Not found", f"no notice {notice_id} that you may see")
    return row


def _one(c: Conn, p: Principal, notice_id: int, today: dt.date) -> NoticeOut:
    return _outs(c, [_visible(c, p, notice_id)], today)[0]


def _is_recipient(c: Conn, p: Principal, notice_id: int) -> bool:
    kind, org = notices.recipient_party(c, notice_id)
    if kind == "street_office":
        return p.role is Role.STREET_OFFICE  # visible to it: the estate is in its area
    return bool(p.role in (Role.OPERATOR, Role.MANAGER, Role.MAINTENANCE) and p.org_code == org)


def _is_issuer(p: Principal, row: tuple[Any, ...]) -> bool:
    return bool(AUTHORITY.get(p.role) == row[2])


def _can_act(c: Conn, estate: str, recipient: str, devices: list[str], domain: str | None) -> bool:
    """Whether the recipient is the estate's property firm, or maintains the named devices
    (or, without any, equipment of the issuer's domain in the estate)."""
    row = c.execute(
        "SELECT EXISTS (SELECT 1 FROM estates WHERE code = %(e)s AND property_firm_code = %(o)s)"
        " OR (SELECT count(*) FILTER (WHERE maintenance_code = %(o)s) = count(*) AND count(*) > 0"
        "     FROM devices WHERE estate_code = %(e)s AND code = ANY(%(d)s))"
        " OR (cardinality(%(d)s::text[]) = 0 AND EXISTS (SELECT 1 FROM devices"
        "     WHERE estate_code = %(e)s AND maintenance_code = %(o)s"
        "     AND (%(k)s::text IS NULL OR kind = %(k)s)))",
        {"e": estate, "o": recipient, "d": devices, "k": domain},
    ).fetchone()
    return bool(row and row[0])


# ---------------------------------------------------------------------- routes


@router.post("/notices", status_code=201, responses={403: {}, 404: {}, 422: {}})
def issue_notice(c: Db, p: Caller, clock: ClockDep, body: NoticeIn) -> NoticeOut:
    """Issue a notice (an authority, to an estate in its area); the recipient is told."""
    allow(p, *AUTHORITY)
    authority = AUTHORITY[p.role]
    domain = notices.AUTHORITIES[authority].domain
    q = sql.SQL(
        "SELECT e.code, e.property_firm_code,"
        " (WITH RECURSIVE up(code, parent) AS ("
        "    SELECT a.code, a.parent_code FROM areas a WHERE a.code = e.area_code"
        "    UNION SELECT a.code, a.parent_code FROM areas a JOIN up ON a.code = up.parent)"
        "  SELECT code FROM up WHERE parent IS NULL LIMIT 1)"
        " FROM estates e WHERE e.code = %s AND {}"
    ).format(p.estate_scope("code"))
    estate = c.execute(q, (body.estate,)).fetchone()
    if estate is None:
        raise Problem(404, "not-found", "Not found", f"no estate {body.estate} in your area")
    if authority == "street" and estate[1] is None and body.recipient_org is None:
        raise Problem(422, "own-estate", "The street office acts for this estate",
                      f"{body.estate} has no property firm, so the street office acts for its"
                      " owners and would be its own recipient: name a unit (recipient_org), or"
                      " the housing authority issues the notice")  # fmt: skip
    items = body.items()
    devices = [i.device for i in items if i.device is not None]
    if domain is not None:
        kinds: dict[str, str] = {
            str(code): str(kind)
            for code, kind in c.execute(
                "SELECT code, kind FROM devices WHERE estate_code = %s AND code = ANY(%s)",
                (body.estate, devices),
            )
        }
        for n, i in enumerate(items, 1):
            kind = i.category or (kinds.get(i.device) if i.device else None)
            if kind is not None and kind != domain:
                what = f"{i.device} is a {kind} device" if i.device else f"category {kind}"
                raise Problem(422, "outside-domain", "Outside your domain",
                              f"problem {n}: {what}: a {domain} authority's notice names"
                              " a device of that kind, or none")  # fmt: skip
    if body.recipient_org is not None:
        found = c.execute(
            "SELECT 1 FROM organisations WHERE code = %s", (body.recipient_org,)
        ).fetchone()
        if found is None:
            raise Problem(422, "unknown-unit", "Unknown unit",
                          f"no organisation {body.recipient_org} in the registry")  # fmt: skip
        if not _can_act(c, body.estate, body.recipient_org, devices, domain):
            raise Problem(422, "unit-cannot-act", "The unit cannot act on it",
                          f"{body.recipient_org} is neither {body.estate}'s property firm nor"
                          " the maintenance company of "
                          + (", ".join(devices) if devices else f"its {domain or ''} equipment")
                          + ": it could not see or rectify the notice")  # fmt: skip
    area = p.area_code or str(estate[2])
    now = clock()
    try:
        nid = notices.issue(
            c, authority=authority, area_code=area, estate=body.estate,
            recipient_org=body.recipient_org, problems=items, actor=p.actor, now=now,
        )  # fmt: skip
    except notices.NoticeError as err:
        raise Problem(422, "bad-notice", "Cannot issue", str(err)) from None
    return _one(c, p, nid, now.date())


@router.get("/notices")
def list_notices(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    state: Literal["issued", "rectified", "closed", "reopened", "open", "all"] = "open",
    estate: str | None = None,
    authority: AuthorityName | None = None,
    overdue: bool | None = None,
    supervised: bool | None = Query(default=None, description="挂牌督办 problems open"),
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[NoticeOut]:
    """Notices newest first, within scope; ``open`` = not closed."""
    today = clock().date()
    q = sql.SQL(
        "SELECT {} FROM notices n WHERE {}"
        " AND (%(state)s = 'all' OR (%(state)s = 'open' AND state <> 'closed')"
        "      OR state = %(state)s)"
        " AND (%(estate)s::text IS NULL OR estate_code = %(estate)s)"
        " AND (%(authority)s::text IS NULL OR authority = %(authority)s)"
        " AND (%(overdue)s::boolean IS NULL OR EXISTS (SELECT 1 FROM notice_problems x"
        "      WHERE x.notice_id = n.id AND x.state IN ('issued', 'reopened')"
        "      AND x.deadline < %(today)s) = %(overdue)s)"
        " AND (%(supervised)s::boolean IS NULL OR EXISTS (SELECT 1 FROM notice_problems x"
        "      WHERE x.notice_id = n.id AND x.state <> 'closed'"
        "      AND x.supervised_at IS NOT NULL) = %(supervised)s)"
        " AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s) ORDER BY id DESC LIMIT %(limit)s"
    ).format(sql.SQL(notices.COLUMNS), notice_scope(p))
    rows = c.execute(
        q,
        {
            "state": state, "estate": estate, "authority": authority, "overdue": overdue,
            "supervised": supervised, "today": today, "cursor": cursor_id(cursor),
            "limit": limit,
        },
    ).fetchall()  # fmt: skip
    return page(_outs(c, rows, today), limit, lambda n: n.id)


@router.get("/notices/look-backs")
def look_backs_due(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    due_by: Annotated[Day | None, Query(description="default: today")] = None,
) -> list[LookBackOut]:
    """Closed problems whose look-back (回头看) falls due by ``due_by``, oldest first: the
    authorities' to-do list."""
    allow(p, Role.ADMIN, *AUTHORITY)
    by = due_by or clock().date()
    q = sql.SQL(
        "SELECT n.id, n.number, n.estate_code, p.seq, p.problem, p.closed_at, p.look_back_on"
        " FROM notice_problems p JOIN notices n ON n.id = p.notice_id"
        " WHERE p.state = 'closed' AND p.looked_back_at IS NULL AND p.look_back_on <= %s"
        " AND {} ORDER BY p.look_back_on, n.id, p.seq"
    ).format(notice_scope(p))
    names = list(LookBackOut.model_fields)
    return [LookBackOut(**dict(zip(names, r, strict=True))) for r in c.execute(q, (by,))]


@router.get("/notices/{notice_id}", responses={404: {}})
def get_notice(c: Db, p: Caller, clock: ClockDep, notice_id: int) -> NoticeDetail:
    """One notice with its problems, every step and its evidence files."""
    n = _one(c, p, notice_id, clock().date())
    events = [
        NoticeEventOut(at=r[0], problem=r[1], change=r[2], actor=r[3], note=r[4])
        for r in c.execute(
            "SELECT at, problem_seq, change, actor, note FROM notice_events WHERE notice_id = %s"
            " ORDER BY at, id",
            (notice_id,),
        )
    ]
    evidence = [files.out(a) for a in attachments.listing(c, f"notice:{notice_id}")]
    return NoticeDetail(**n.model_dump(), events=events, attachments=evidence)


@router.post("/notices/{notice_id}/acknowledge", responses={403: {}, 404: {}, 409: {}})
def acknowledge_notice(c: Db, p: Caller, clock: ClockDep, notice_id: int) -> NoticeOut:
    """The recipient confirms receipt (签收)."""
    _visible(c, p, notice_id)
    if not _is_recipient(c, p, notice_id):
        raise Problem(403, "forbidden", "Forbidden", "only the notice's recipient acknowledges it")
    now = clock()
    try:
        notices.acknowledge(c, notice_id, actor=p.actor, now=now)
    except notices.NoticeError as err:
        raise Problem(409, "not-applicable", "Conflict", str(err)) from None
    return _one(c, p, notice_id, now.date())


@router.post(
    "/notices/{notice_id}/attachments",
    status_code=201,
    responses={403: {}, 404: {}, 413: {}, 422: {}},
    openapi_extra=files.UPLOAD_DOC,
)  # fmt: skip
def add_attachment(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    notice_id: int,
    data: files.Upload,
    filename: Annotated[str, Query(min_length=1, max_length=255)],
    problem: Annotated[int | None, Query(ge=1, le=notices.MAX_PROBLEMS)] = None,
    stage: Literal["issue", "rectify", "verify", "look_back"] = "rectify",
) -> files.AttachmentOut:
    """Evidence for the notice or one of its problems: the recipient's for a
    rectification, the issuing authority's for the issue, a verification or a look-back."""
    row = _visible(c, p, notice_id)
    if stage == "rectify":
        if not _is_recipient(c, p, notice_id):
            raise Problem(
                403, "forbidden", "Forbidden", "rectification evidence is the recipient's"
            )
    elif not _is_issuer(p, row):
        raise Problem(403, "forbidden", "Forbidden", f"{stage} evidence is the issuing authority's")
    if problem is not None:
        found = c.execute(
            "SELECT 1 FROM notice_problems WHERE notice_id = %s AND seq = %s", (notice_id, problem)
        ).fetchone()
        if found is None:
            raise Problem(
                404, "not-found", "Not found", f"notice {notice_id} has no problem {problem}"
            )
    part = f"problem {problem} {stage}" if problem is not None else stage
    return files.store(c, subject=f"notice:{notice_id}", part=part, filename=filename, data=data,
                       actor=p.actor, now=clock())  # fmt: skip


@router.get(
    "/notices/{notice_id}/attachments/{attachment_id}",
    response_class=Response,
    responses=files.DOWNLOAD_DOC,
)
def get_attachment(c: Db, p: Caller, notice_id: int, attachment_id: int) -> Response:
    """One evidence file, to whoever may see the notice."""
    _visible(c, p, notice_id)
    return files.serve(c, f"notice:{notice_id}", attachment_id,
                       missing=f"notice {notice_id} has no file {attachment_id}")  # fmt: skip


def _step(
    c: Conn, p: Principal, clock: ClockDep, notice_id: int, *, action: Action, seq: int | None,
    body: StepIn | None,
) -> NoticeOut:  # fmt: skip
    row = _visible(c, p, notice_id)
    if action == "rectify":
        if not _is_recipient(c, p, notice_id):
            raise Problem(403, "forbidden", "Forbidden", "the notice is not addressed to you")
    elif not _is_issuer(p, row):
        zh = notices.AUTHORITIES[str(row[2])].zh
        raise Problem(403, "forbidden", "Forbidden",
                      f"only the issuing authority ({row[2]}, {zh}) may {action}")  # fmt: skip
    b = body or StepIn()
    now = clock()
    try:
        notices.step(c, notice_id, action, actor=p.actor, now=now, seq=seq, note=b.note,
                     new_deadline=b.new_deadline, look_back_days=b.look_back_days)  # fmt: skip
    except notices.NoticeError as err:
        raise Problem(409, "not-applicable", "Conflict", str(err)) from None
    return _one(c, p, notice_id, now.date())


@router.post("/notices/{notice_id}/problems/{seq}/{action}", responses={403: {}, 404: {}, 409: {}})
def step_problem(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    notice_id: int,
    seq: int,
    action: Action,
    body: StepIn | None = None,
) -> NoticeOut:
    """One step on one problem (动态销号). ``rectify``: the recipient says what was done.
    ``close`` / ``reject``: the issuing authority accepts or sends it back. ``holds`` /
    ``relapsed``: the look-back's result, on or after its date (relapsed reopens it with
    ``new_deadline``)."""
    return _step(c, p, clock, notice_id, action=action, seq=seq, body=body)


@router.post("/notices/{notice_id}/{action}", responses={403: {}, 404: {}, 409: {}})
def step_notice(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    notice_id: int,
    action: Action,
    body: StepIn | None = None,
) -> NoticeOut:
    """The step on every problem of the notice it applies to (a single-problem notice's
    one problem)."""
    return _step(c, p, clock, notice_id, action=action, seq=None, body=body)
