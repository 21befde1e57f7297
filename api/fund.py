"""``/api/v1/fund``: the maintenance fund's accounts, deposits and emergency repair cases;
``/api/v1/public``: the owners' disclosure and the yearly fund report, open to anyone.

Who does what: the housing authority (and admin) records deposits and interest and pays
settlements; the estate's property firm (operator, manager) or, only where there is none,
the street office opens cases (from an alert or order, or by hand with photos; repair first,
先修后报, with the application due within the city's days), estimates, invokes the owners'
standing authorisation and reports the repair; the owners' committee (业委会) applies for
the fund (approves) and accepts the repair (竣工验收), and where the estate has no committee
the street office does both for its owners (task 17); the housing authority may approve,
never the party that estimated; a cost review (审价) is by a second party; the owners' votes
are recorded by their committee, the street office or the housing authority. Every request
that moves money needs an ``Idempotency-Key`` header: repeating it repeats nothing.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from psycopg import sql
from pydantic import BaseModel, Field, StrictInt

from api import files
from api.auth import Principal, Role
from api.deps import Caller, ClockDep, Day, Db, allow
from api.pages import Cursor, Limit, Page, cursor_id, fetch_all, fetch_one, page
from api.problems import Problem
from api.throttle import SourceLimit, Throttled
from estate.db import Conn
from estate.settings import LOCAL_ZONE
from fund import cases, ledger

router = APIRouter(prefix="/api/v1/fund", tags=["fund"])


def _limited(request: Request) -> None:
    """The public pages' rate limit per source address (``api.throttle.SourceLimit``)."""
    limit: SourceLimit = request.app.state.public_limit
    try:
        limit.admit(
            request.client.host if request.client else "unknown", request.app.state.ticker()
        )
    except Throttled as err:
        raise err.problem("too-many-requests") from None


public = APIRouter(prefix="/api/v1/public", tags=["public"], dependencies=[Depends(_limited)])
READERS = (
    Role.ADMIN, Role.HOUSING_AUTHORITY, Role.OPERATOR, Role.MANAGER, Role.STREET_OFFICE,
    Role.OWNERS_COMMITTEE,
)  # fmt: skip
CASE_WORKERS = (Role.ADMIN, Role.OPERATOR, Role.MANAGER, Role.STREET_OFFICE)
PAYERS = (Role.ADMIN, Role.HOUSING_AUTHORITY)
IdempotencyKey = Annotated[
    str,
    Header(alias="Idempotency-Key", min_length=1, max_length=200,
           description="repeat it to retry safely: the money moves once"),
]  # fmt: skip


def party(p: Principal) -> str:
    """The party a caller acts for, as case decisions record it: its role and the
    organisation, area or estate it is bound to."""
    if p.role is Role.OWNERS_COMMITTEE and p.estate_code is not None:
        return cases.committee(p.estate_code)
    return f"{p.role.value}:{p.org_code or p.area_code or p.name}"


def _may_work(c: Conn, p: Principal, estate: str) -> None:
    """A street office works cases only for an estate without a property firm (it acts
    for the owners there, task 17); elsewhere the property firm does."""
    if p.role is not Role.STREET_OFFICE:
        return
    row = c.execute("SELECT property_firm_code FROM estates WHERE code = %s", (estate,)).fetchone()
    if row is not None and row[0] is not None:
        raise Problem(403, "forbidden", "Forbidden",
                      f"{estate} has a property firm ({row[0]}): it works the case; the street"
                      " office approves or accepts it")  # fmt: skip


def fund_scope(p: Principal, column: str = "estate_code") -> sql.Composable:
    """SQL condition over ``column`` (an estate code) for the fund records ``p`` may see."""
    if p.role in (Role.ADMIN, Role.HOUSING_AUTHORITY):
        return sql.SQL("true")
    if p.role in (Role.OPERATOR, Role.MANAGER, Role.STREET_OFFICE, Role.OWNERS_COMMITTEE):
        return p.estate_scope(column)
    return sql.SQL("false")


class AccountOut(BaseModel):
    id: int
    estate_code: str
    building_code: str | None
    name: str
    balance_fen: int
    opened_at: dt.datetime


class DepositIn(BaseModel):
    amount_fen: StrictInt = Field(gt=0, le=10**13)
    kind: Literal["deposit", "interest"] = "deposit"
    memo: str = Field(default="", max_length=500)


class JournalOut(BaseModel):
    journal_id: int
    account_id: int
    balance_fen: int


class CaseIn(BaseModel):
    """From an alert or a work order; or, for a manual item (no sensor reports it), by
    hand: ``estate`` (and ``building``) with a ``description``, photos to follow."""

    item: str = Field(pattern=r"^[a-z0-9_]{1,64}$", description="an emergency-list item id")
    alert_id: int | None = None
    order_id: int | None = None
    estate: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    building: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(default=None, min_length=1, max_length=2000)
    repair_first: bool = Field(
        default=False,
        description="先修后报: the repair starts now on this declaration; the application"
        " (estimate) is due within the city's application_days",
    )


class StepIn(BaseModel):
    estimate_fen: StrictInt | None = Field(default=None, gt=0, le=10**13)
    by: Literal["authority", "standing"] | None = Field(
        default=None,
        description="approve: your own decision (the owners' committee, the street office"
        " where there is none, the housing authority), or the standing authorisation",
    )
    note: str = Field(default="", max_length=2000)
    reviewed_fen: StrictInt | None = Field(
        default=None, gt=0, le=10**13, description="review: the amount that may be paid"
    )


class VoteIn(BaseModel):
    held_on: Day
    valid_until: Day
    participating_area_m2: Decimal = Field(ge=0, max_digits=14, decimal_places=2)
    participating_owners: StrictInt = Field(ge=0)
    consenting_area_m2: Decimal = Field(ge=0, max_digits=14, decimal_places=2)
    consenting_owners: StrictInt = Field(ge=0)


class VoteOut(BaseModel):
    id: int
    estate_code: str
    rule: str
    held_on: dt.date
    valid_until: dt.date
    total_area_m2: Decimal
    total_owners: int
    participating_area_m2: Decimal
    participating_owners: int
    consenting_area_m2: Decimal
    consenting_owners: int
    passed: bool
    recorded_by: str


class SettleIn(BaseModel):
    cost_fen: StrictInt = Field(gt=0, le=10**13)
    contractor: str | None = Field(default=None, max_length=120, description="disclosed")
    invoice_ref: str = Field(
        pattern=f"^{cases.INVOICE_REF.pattern}$", description="the invoice number (published)"
    )


class CaseOut(BaseModel):
    id: int
    account_id: int
    estate_code: str
    building_code: str | None
    item: str
    alert_id: int | None
    order_id: int | None
    state: Literal[
        "opened", "estimated", "approved", "repaired", "accepted", "settled", "closed", "refused"
    ]
    contractor: str | None
    work: str | None
    disclosed_until: dt.datetime | None = Field(description="the end of the 公示期")
    device_code: str | None
    description: str | None = Field(description="a manual case: what failed")
    estimate_fen: int | None
    estimated_by: str | None
    approval: str | None
    approved_by: str | None
    accepted_by: str | None = Field(description="completion acceptance (竣工验收)")
    accepted_at: dt.datetime | None
    reviewed_fen: int | None = Field(description="cost review (审价): what may be paid")
    reviewed_by: str | None
    review_reason: str | None
    cost_fen: int | None
    invoice_ref: str | None
    journal_id: int | None
    refused_reason: str | None
    opened_by: str
    opened_at: dt.datetime
    settled_at: dt.datetime | None
    repair_first: bool = Field(description="先修后报: repaired on the declaration")
    apply_by: dt.datetime | None = Field(description="the application's deadline")
    applied_at: dt.datetime | None
    repaired_at: dt.datetime | None


class ObjectionOut(BaseModel):
    id: int
    unit: str
    text: str
    filed_at: dt.datetime
    answer: str | None
    answered_by: str | None
    answered_at: dt.datetime | None


class CaseDetail(CaseOut):
    evidence: dict[str, Any]
    events: list[dict[str, Any]]
    objections: list[ObjectionOut]


class TextIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class MyAccountOut(BaseModel):
    account_id: int
    home: cases.Home
    year: cases.HomeYear = Field(description="the home's yearly report for this account")


class MyHomeOut(BaseModel):
    estate_code: str
    building: str
    unit: str
    accounts: list[MyAccountOut]
    repairs: list[cases.Disclosed] = Field(description="repairs this home paid a share of")


_CASE_COLUMNS = ", ".join(CaseOut.model_fields)


def _case(c: Conn, p: Principal, case_id: int) -> CaseOut:
    q = sql.SQL("SELECT {} FROM fund_cases WHERE id = %s AND {}").format(
        sql.SQL(_CASE_COLUMNS), fund_scope(p)
    )
    row = fetch_one(c, CaseOut, q, (case_id,))
    if row is None:
        raise Problem(404, "not-found", "Not found", f"no fund case {case_id} that you may see")
    return row


@router.get("/accounts")
def list_accounts(
    *, c: Db, p: Caller, estate: str | None = None, limit: Limit = 100, cursor: Cursor = None
) -> Page[AccountOut]:
    """Fund accounts with their balances, within scope."""
    allow(p, *READERS)
    q = sql.SQL(
        "SELECT id, estate_code, building_code, name, balance_fen, opened_at FROM fund_accounts"
        " WHERE {} AND (%(e)s::text IS NULL OR estate_code = %(e)s)"
        " AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s) ORDER BY id DESC LIMIT %(limit)s"
    ).format(fund_scope(p))
    params = {"e": estate, "cursor": cursor_id(cursor), "limit": limit}
    items = fetch_all(c, AccountOut, q, params)
    return page(items, limit, lambda a: a.id)


@router.get("/accounts/{account_id}", responses={404: {}})
def get_account(*, c: Db, p: Caller, account_id: int) -> AccountOut:
    """One fund account with its balance."""
    allow(p, *READERS)
    q = sql.SQL(
        "SELECT id, estate_code, building_code, name, balance_fen, opened_at FROM fund_accounts"
        " WHERE id = %s AND {}"
    ).format(fund_scope(p))
    row = fetch_one(c, AccountOut, q, (account_id,))
    if row is None:
        detail = f"no fund account {account_id} that you may see"
        raise Problem(404, "not-found", "Not found", detail)
    return row


class JournalLine(BaseModel):
    """One ledger entry as it touched one account (分户明细账 of the account)."""

    journal_id: int = Field(description="the entry's place in the hash chain")
    at: dt.datetime
    kind: Literal["deposit", "interest", "repair", "refund"]
    case_id: int | None
    amount_fen: int = Field(description="+ into the account, - out of it")
    balance_fen: int = Field(description="the account's balance after this entry")
    counterparty: str | None = Field(description="the other side: a payee, the owners")
    memo: str
    actor: str
    hash: str = Field(description="the entry's chain hash, for `estate fund verify`")


@router.get("/accounts/{account_id}/journal", responses={404: {}})
def account_journal(
    *,
    c: Db,
    p: Caller,
    account_id: int,
    since: Annotated[dt.date | None, Query(description="from this day (Asia/Shanghai)")] = None,
    until: Annotated[dt.date | None, Query(description="before this day")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[JournalLine]:
    """The account's ledger entries, newest first, each with the balance after it: the
    journal the housing authority exports (the console pages through it for a CSV)."""
    get_account(c=c, p=p, account_id=account_id)  # 403 / 404 as for the account
    rows = ledger.account_lines(
        c, account_id,
        since=ledger_day(since), until=ledger_day(until), before=cursor_id(cursor), limit=limit,
    )  # fmt: skip
    items = [JournalLine(**r) for r in rows]
    return page(items, limit, lambda j: j.journal_id)


def ledger_day(day: dt.date | None) -> dt.datetime | None:
    """Midnight of ``day`` in the city's zone (the ledger's days are local days)."""
    return None if day is None else dt.datetime.combine(day, dt.time(), LOCAL_ZONE)


@router.post("/accounts/{account_id}/deposits", status_code=201, responses={409: {}, 422: {}})
def add_deposit(
    *, c: Db, p: Caller, clock: ClockDep, account_id: int, body: DepositIn, key: IdempotencyKey
) -> JournalOut:
    """Owners' deposits or interest (housing authority, admin)."""
    allow(p, *PAYERS)
    if c.execute("SELECT 1 FROM fund_accounts WHERE id = %s", (account_id,)).fetchone() is None:
        raise Problem(404, "not-found", "Not found", f"no fund account {account_id}")
    try:
        jid = cases.deposit(c, account_id, body.amount_fen, kind=body.kind, key=key,
                            actor=p.actor, now=clock(), memo=body.memo)  # fmt: skip
    except ledger.KeyReused as err:
        raise Problem(422, "key-reused", "Idempotency key reused", str(err)) from None
    except ledger.LedgerError as err:
        raise Problem(409, "refused", "Refused", str(err)) from None
    (balance,) = c.execute(
        "SELECT balance_fen FROM fund_accounts WHERE id = %s", (account_id,)
    ).fetchone() or (0,)
    return JournalOut(journal_id=jid, account_id=account_id, balance_fen=int(balance))


@router.get("/cases")
def list_cases(
    *, c: Db, p: Caller, state: str | None = None, limit: Limit = 50, cursor: Cursor = None
) -> Page[CaseOut]:
    """Emergency repair cases newest first, within scope."""
    allow(p, *READERS)
    q = sql.SQL(
        "SELECT {} FROM fund_cases WHERE {} AND (%(s)s::text IS NULL OR state = %(s)s)"
        " AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s) ORDER BY id DESC LIMIT %(limit)s"
    ).format(sql.SQL(_CASE_COLUMNS), fund_scope(p))
    params = {"s": state, "cursor": cursor_id(cursor), "limit": limit}
    items = fetch_all(c, CaseOut, q, params)
    return page(items, limit, lambda x: x.id)


@router.get("/cases/{case_id}", responses={404: {}})
def get_case(c: Db, p: Caller, case_id: int) -> CaseDetail:
    """One case with its evidence and every decision (who, when, what)."""
    allow(p, *READERS)
    base = _case(c, p, case_id)
    (evidence,) = c.execute(
        "SELECT evidence FROM fund_cases WHERE id = %s", (case_id,)
    ).fetchone() or ({},)
    events = [
        {"at": at, "change": ch, "actor": actor, "detail": detail}
        for at, ch, actor, detail in c.execute(
            "SELECT at, change, actor, detail FROM fund_case_events WHERE case_id = %s ORDER BY id",
            (case_id,),
        )
    ]
    objections = [
        ObjectionOut(
            id=i, unit=f"{b}/{u}", text=t, filed_at=f, answer=a, answered_by=ab, answered_at=at
        )
        for i, b, u, t, f, a, ab, at in c.execute(
            "SELECT o.id, b.code, u.code, o.text, o.filed_at, o.answer, o.answered_by,"
            " o.answered_at FROM fund_objections o JOIN units u ON u.id = o.unit_id"
            " JOIN buildings b ON b.id = u.building_id WHERE o.case_id = %s ORDER BY o.id",
            (case_id,),
        )
    ]
    return CaseDetail(**base.model_dump(), evidence=evidence, events=events,
                      objections=objections)  # fmt: skip


@router.post(
    "/cases", status_code=201, responses={403: {}, 404: {}, 422: {"description": "ineligible"}}
)
def open_case(c: Db, p: Caller, clock: ClockDep, body: CaseIn) -> CaseOut:
    """Open a case from an alert or a work order the caller may see, or by hand for a
    manual item (``estate``, ``building``, ``description``; photos follow); an ineligible
    one is refused with the reason (and kept on record)."""
    allow(p, *CASE_WORKERS)
    if body.alert_id is None and body.order_id is None:
        if body.estate is None or body.description is None:
            raise Problem(422, "bad-case", "Bad case",
                          "give one alert_id or one order_id, or estate and description for a"
                          " failure no sensor reports")  # fmt: skip
        q = sql.SQL("SELECT 1 FROM estates WHERE code = %s AND {}").format(
            p.estate_scope("code") if p.role is not Role.ADMIN else sql.SQL("true")
        )
        if c.execute(q, (body.estate,)).fetchone() is None:
            raise Problem(404, "not-found", "Not found", f"no estate {body.estate} of yours")
        _may_work(c, p, body.estate)
        try:
            cid = cases.open_manual(
                c, item=body.item, estate=body.estate, building=body.building,
                description=body.description, actor=p.actor, now=clock(),
                repair_first=body.repair_first,
            )  # fmt: skip
        except cases.CaseError as err:
            raise Problem(422, "ineligible", "Not eligible", str(err)) from None
        return _case(c, p, cid)
    if body.alert_id is not None and body.order_id is not None:
        raise Problem(422, "bad-case", "Bad case", "give one alert_id or one order_id")
    table, ident = ("alerts", body.alert_id) if body.alert_id else ("work_orders", body.order_id)
    q = sql.SQL("SELECT estate_code FROM {} WHERE id = %s AND {}").format(
        sql.Identifier(table), fund_scope(p)
    )
    found = c.execute(q, (ident,)).fetchone()
    if found is None:
        raise Problem(404, "not-found", "Not found", f"no {table[:-1]} {ident} that you may see")
    _may_work(c, p, str(found[0]))
    try:
        cid = cases.open_case(c, item=body.item, alert_id=body.alert_id, order_id=body.order_id,
                              actor=p.actor, now=clock(),
                              repair_first=body.repair_first)  # fmt: skip
    except cases.CaseError as err:
        raise Problem(422, "ineligible", "Not eligible", str(err)) from None
    return _case(c, p, cid)


@router.post(
    "/cases/{case_id}/photos", status_code=201, responses={403: {}, 404: {}, 413: {}, 422: {}},
    openapi_extra=files.UPLOAD_DOC,
)  # fmt: skip
def add_photo(
    *, c: Db, p: Caller, clock: ClockDep, case_id: int, data: files.Upload,
    filename: Annotated[str, Query(min_length=1, max_length=255)],
) -> files.AttachmentOut:  # fmt: skip
    """A photo or document of the failure or the repair (who works the case)."""
    allow(p, *CASE_WORKERS)
    case = _case(c, p, case_id)
    _may_work(c, p, case.estate_code)
    return files.store(c, subject=f"fund_case:{case_id}", part="evidence", filename=filename,
                       data=data, actor=p.actor, now=clock())  # fmt: skip


@router.get("/cases/{case_id}/photos/{photo_id}", response_class=Response,
            responses=files.DOWNLOAD_DOC)  # fmt: skip
def get_photo(c: Db, p: Caller, case_id: int, photo_id: int) -> Response:
    """One evidence file of a case, to the parties of the case."""
    allow(p, *READERS)
    _case(c, p, case_id)
    return files.serve(c, f"fund_case:{case_id}", photo_id,
                       missing=f"case {case_id} has no file {photo_id}")  # fmt: skip


# declared before the generic step: /settle must not be read as an {action}
@router.post("/cases/{case_id}/settle", responses={403: {}, 404: {}, 409: {}, 422: {}})
def settle_case(
    *, c: Db, p: Caller, clock: ClockDep, case_id: int, body: SettleIn, key: IdempotencyKey
) -> CaseOut:
    """Pay the actual cost from the account (housing authority, admin) and apportion it to
    the owners by floor area. Refused if the balance cannot cover it; paid once."""
    allow(p, *PAYERS)
    _case(c, p, case_id)
    try:
        cases.settle(c, case_id, cost_fen=body.cost_fen, invoice_ref=body.invoice_ref, key=key,
                     actor=p.actor, now=clock(), contractor=body.contractor)  # fmt: skip
    except ledger.KeyReused as err:
        raise Problem(422, "key-reused", "Idempotency key reused", str(err)) from None
    except (cases.CaseError, ledger.LedgerError) as err:
        raise Problem(409, "refused", "Refused", str(err)) from None
    return _case(c, p, case_id)


@router.post("/estates/{estate}/votes", status_code=201, responses={403: {}, 404: {}, 422: {}})
def record_vote(*, c: Db, p: Caller, clock: ClockDep, estate: str, body: VoteIn) -> VoteOut:
    """The owners' vote on a standing authorisation for emergency repairs, as counted
    (民法典 art. 278, or the city's older rule), recorded by the owners' committee that
    organised it, the street office (its area) or the housing authority that witnessed it;
    passed or not is judged here."""
    allow(p, Role.OWNERS_COMMITTEE, Role.STREET_OFFICE, Role.HOUSING_AUTHORITY, Role.ADMIN)
    q = sql.SQL("SELECT 1 FROM estates WHERE code = %s AND {}").format(p.estate_scope("code"))
    if p.role is not Role.ADMIN and c.execute(q, (estate,)).fetchone() is None:
        raise Problem(404, "not-found", "Not found", f"no estate {estate} in your area")
    try:
        vid, _ = cases.record_vote(
            c, estate, held_on=body.held_on, valid_until=body.valid_until,
            participating=(body.participating_area_m2, body.participating_owners),
            consenting=(body.consenting_area_m2, body.consenting_owners), actor=p.actor,
            now=clock(),
        )  # fmt: skip
    except cases.CaseError as err:
        raise Problem(422, "bad-vote", "Vote refused", str(err)) from None
    return _votes(c, "id = %s", (vid,))[0]


def _votes(c: Conn, where: str, args: tuple[Any, ...]) -> list[VoteOut]:
    names = list(VoteOut.model_fields)
    rows = c.execute(
        f"SELECT {', '.join(names)} FROM owner_votes WHERE {where}"  # noqa: S608 (constants)
        " ORDER BY held_on DESC, id DESC LIMIT 100",
        args,
    ).fetchall()
    return [VoteOut(**dict(zip(names, r, strict=True))) for r in rows]


@router.get("/estates/{estate}/votes", responses={403: {}})
def list_votes(c: Db, p: Caller, estate: str) -> list[VoteOut]:
    """The owners' recorded votes, newest first."""
    allow(p, *READERS)
    if p.role not in (Role.ADMIN, Role.HOUSING_AUTHORITY):
        q = sql.SQL("SELECT 1 FROM estates WHERE code = %s AND {}").format(p.estate_scope("code"))
        if c.execute(q, (estate,)).fetchone() is None:
            raise Problem(404, "not-found", "Not found", f"no estate {estate} that you may see")
    return _votes(c, "estate_code = %s", (estate,))


@router.get("/accounts/{account_id}/homes", responses={403: {}, 404: {}})
def account_homes(c: Db, p: Caller, account_id: int) -> list[cases.Home]:
    """Every home's share of the account (分户账), derived from the ledger: deposits and
    interest credited by floor area, every repair's share debited; the balances sum to the
    account's to the fen."""
    allow(p, *READERS)
    q = sql.SQL("SELECT 1 FROM fund_accounts WHERE id = %s AND {}").format(fund_scope(p))
    if c.execute(q, (account_id,)).fetchone() is None:
        raise Problem(404, "not-found", "Not found", f"no fund account {account_id} of yours")
    return cases.homes(c, account_id)


def _owner_home(p: Principal) -> int:
    allow(p, Role.OWNER)
    if p.home_unit is None:
        raise Problem(
            404, "no-home", "No home", "this login names no home (estate users add --home)"
        )
    return p.home_unit


@router.get("/applications/overdue", responses={403: {}})
def overdue_applications(c: Db, p: Caller, clock: ClockDep) -> list[cases.Overdue]:
    """Repair-first cases (先修后报) whose application is past its deadline, longest
    overdue first: the housing authority chases them (the property firm and the street
    office see their own)."""
    allow(p, Role.ADMIN, Role.HOUSING_AUTHORITY, Role.OPERATOR, Role.MANAGER,
          Role.STREET_OFFICE)  # fmt: skip
    return cases.overdue_applications(c, clock(), fund_scope(p))


@router.get("/my-home", responses={403: {}, 404: {}, 422: {}})
def my_home(c: Db, p: Caller, clock: ClockDep, year: int | None = None) -> MyHomeOut:
    """An owner's own home (分户账): its balance in each account that covers it, every
    movement (deposits, interest by floor area; its share of each repair), its yearly
    report (``year``, this year by default, Asia/Shanghai), and the repairs it paid for."""
    unit = _owner_home(p)
    y = year if year is not None else clock().astimezone(LOCAL_ZONE).year
    if not 2000 <= y <= 2100:
        raise Problem(422, "bad-year", "Bad year", "the year must be between 2000 and 2100")
    row = c.execute(
        "SELECT b.estate_code, b.code, u.code FROM units u JOIN buildings b ON b.id ="
        " u.building_id WHERE u.id = %s",
        (unit,),
    ).fetchone()
    assert row is not None
    paid = {
        int(x) for (x,) in c.execute("SELECT case_id FROM fund_shares WHERE unit_id = %s", (unit,))
    }
    repairs = [d for d in cases.disclosure(c, str(row[0])) if d.case_id in paid]
    return MyHomeOut(
        estate_code=row[0], building=row[1], unit=row[2],
        accounts=[
            MyAccountOut(account_id=a, home=h, year=cases.home_year(h, y))
            for a, h in cases.home_of(c, unit)
        ],
        repairs=repairs,
    )  # fmt: skip


@router.post("/cases/{case_id}/objections", status_code=201, responses={403: {}, 404: {}, 409: {}})
def object_to(c: Db, p: Caller, clock: ClockDep, case_id: int, body: TextIn) -> ObjectionOut:
    """An owner objects to a disclosed repair their home paid for, within its 公示期; the
    housing authority must answer before the case is closed."""
    unit = _owner_home(p)
    try:
        oid = cases.object_to(c, case_id, unit_id=unit, text=body.text, actor=p.actor, now=clock())
    except cases.CaseError as err:
        raise Problem(409, "not-applicable", "Conflict", str(err)) from None
    return ObjectionOut(id=oid, unit=str(unit), text=body.text.strip(), filed_at=clock(),
                        answer=None, answered_by=None, answered_at=None)  # fmt: skip


@router.post("/objections/{objection_id}/answer", responses={403: {}, 409: {}})
def answer_objection(
    c: Db, p: Caller, clock: ClockDep, objection_id: int, body: TextIn
) -> dict[str, str]:
    """The housing authority answers an owner's objection."""
    allow(p, Role.HOUSING_AUTHORITY, Role.ADMIN)
    try:
        cases.answer(c, objection_id, text=body.text, actor=p.actor, now=clock())
    except cases.CaseError as err:
        raise Problem(409, "not-applicable", "Conflict", str(err)) from None
    return {"status": "answered"}


# the generic step last: /photos, /objections, /settle are not an {action}
@router.post("/cases/{case_id}/{action}", responses={403: {}, 404: {}, 409: {}})
def step_case(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    case_id: int,
    action: Literal["estimate", "approve", "repaired", "accept", "review"],
    body: StepIn,
) -> CaseOut:
    """``estimate`` (estimate_fen; the application), ``approve`` (by: authority = the
    owners' committee applying for the fund, the street office where the estate has none,
    or the housing authority, never the party that estimated; standing = the owners'
    standing authorisation, voted and within its limits), ``repaired`` (note; the work
    order resolved; before approval only for a repair-first case), ``accept`` (completion
    acceptance, note: the owners' committee, or where there is none the street office or
    the housing authority, not the party that estimated; the work order verified and
    closed), ``review`` (cost review: reviewed_fen and the reason in note; the housing
    authority, a second party)."""
    case = _case(c, p, case_id)
    now = clock()
    try:
        if action == "approve":
            if body.by == "authority":
                allow(p, Role.OWNERS_COMMITTEE, Role.STREET_OFFICE, Role.HOUSING_AUTHORITY)
                by = party(p) if p.role is Role.OWNERS_COMMITTEE else f"{p.role.value}:{p.name}"
                cases.approve(c, case_id, by=by, actor=p.actor, now=now, party=party(p))
            else:
                allow(p, *CASE_WORKERS)
                _may_work(c, p, case.estate_code)
                cases.approve(c, case_id, by="standing", actor=p.actor, now=now, party=party(p))
        elif action == "estimate":
            allow(p, *CASE_WORKERS)
            _may_work(c, p, case.estate_code)
            if body.estimate_fen is None:
                raise Problem(422, "bad-step", "Bad step", "estimate needs estimate_fen")
            cases.estimate(c, case_id, body.estimate_fen, actor=p.actor, now=now, party=party(p))
        elif action == "accept":
            allow(p, Role.OWNERS_COMMITTEE, Role.STREET_OFFICE, Role.HOUSING_AUTHORITY, Role.ADMIN)
            cases.accept(c, case_id, party=party(p), note=body.note, actor=p.actor, now=now)
        elif action == "review":
            allow(p, Role.HOUSING_AUTHORITY, Role.ADMIN)
            if body.reviewed_fen is None:
                raise Problem(422, "bad-step", "Bad step", "review needs reviewed_fen")
            cases.review(c, case_id, body.reviewed_fen, reason=body.note, party=party(p),
                         actor=p.actor, now=now)  # fmt: skip
        else:
            allow(p, *CASE_WORKERS)
            _may_work(c, p, case.estate_code)
            cases.repaired(c, case_id, note=body.note, actor=p.actor, now=now)
    except cases.CaseError as err:
        raise Problem(409, "not-applicable", "Conflict", str(err)) from None
    return _case(c, p, case_id)


# ---------------------------------------------------------------------- public


def _published(c: Conn, estate: str) -> None:
    """404, the same for an unknown estate and for one whose fund is not kept here: the
    public pages never tell which estates exist."""
    if not cases.has_accounts(c, estate):
        raise Problem(404, "not-found", "Not found", f"no published fund for estate {estate}")


@public.get("/estates/{estate}/disclosure", responses={404: {}, 429: {}})
def disclosure(c: Db, estate: str, building: str | None = None) -> list[cases.Disclosed]:
    """Completed emergency repairs of an estate (or one ``building``), what each cost and
    each owner's share (public: no login; lookups are rate-limited per address)."""
    _published(c, estate)
    return [d for d in cases.disclosure(c, estate) if building is None or d.building == building]


@public.get("/estates/{estate}/fund-report", responses={404: {}, 422: {}, 429: {}})
def fund_report(
    c: Db, clock: ClockDep, estate: str, year: int | None = None
) -> list[dict[str, Any]]:
    """The yearly fund report per account: opening balance, deposits, interest, repairs,
    closing balance, in fen (public: no login; lookups are rate-limited per address)."""
    _published(c, estate)
    y = year if year is not None else clock().year
    if not 2000 <= y <= 2100:
        raise Problem(422, "bad-year", "Bad year", "the year must be between 2000 and 2100")
    return cases.yearly_report(c, estate, y)
