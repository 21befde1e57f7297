"""Dispatch and supervision over HTTP: work orders and their steps, the responsibility
list (read, edit, history), dispatch gaps, overdue items, and the ledger export.

Scopes are applied in the queries (``order_scope``, ``ledger_scope``): a property firm
sees its estates' orders; a maintenance company the orders given to it or naming it in
their chain; a fire or market-supervision inspector and a street office see an order
once it has been escalated to their kind of party (that is "reaching the fire brigade's
view"), in their area; the ledger shows inspectors their whole domain in their area.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from psycopg import sql
from pydantic import BaseModel, Field

from alerts import dispatch, orders, responsibility
from alerts.orders import OrderState
from alerts.responsibility import ResponsibilityList
from api.auth import AREA_ROLES, Principal, Role
from api.deps import Caller, ClockDep, Db, Instant, allow
from api.pages import Cursor, Limit, Page, cursor_id, fetch_all, page
from api.problems import Problem
from estate.db import Conn
from oversight import ledger

router = APIRouter(prefix="/api/v1", tags=["dispatch"])
EDITORS = (Role.ADMIN, Role.HOUSING_AUTHORITY)  # who may change the responsibility list
_PARTY_OF = {
    Role.FIRE_INSPECTOR: "fire_brigade",
    Role.MARKET_INSPECTOR: "market_supervision",
    Role.STREET_OFFICE: "street_office",
}
_DOMAIN = {Role.FIRE_INSPECTOR: "fire", Role.MARKET_INSPECTOR: "elevator"}


def order_scope(p: Principal) -> sql.Composable:
    """SQL condition over ``work_orders`` for the orders ``p`` may see."""
    if p.role in (Role.ADMIN, Role.HOUSING_AUTHORITY):
        return sql.SQL("true")
    if p.role in (Role.OPERATOR, Role.MANAGER):
        return p.estate_scope("estate_code")
    if p.role is Role.MAINTENANCE:
        return sql.SQL("(assignee = {org} OR chain @> {step})").format(
            org=sql.Literal(p.org_code),
            step=sql.Literal(f'[{{"org": "{p.org_code}"}}]') + sql.SQL("::jsonb"),
        )
    if p.role in _PARTY_OF:
        return sql.SQL("({} AND {} = ANY(notified_roles))").format(
            p.estate_scope("estate_code"), sql.Literal(_PARTY_OF[p.role])
        )
    return sql.SQL("false")


def ledger_scope(p: Principal) -> sql.Composable:
    """The ledger: a regulator's whole domain in its area; otherwise as ``order_scope``."""
    if p.role in _DOMAIN:
        return sql.SQL("({} AND category = {})").format(
            p.estate_scope("estate_code"), sql.Literal(_DOMAIN[p.role])
        )
    if p.role is Role.STREET_OFFICE:
        return p.estate_scope("estate_code")
    return order_scope(p)


# ---------------------------------------------------------------------- models


class OrderOut(BaseModel):
    id: int
    incident_id: int
    estate_code: str
    building_code: str | None
    category: str
    device_code: str
    alert_type: str
    severity: str
    state: OrderState
    assignee: str | None = Field(description="the organisation responsible")
    assignee_name: str | None = Field(default=None, description="its name")
    estate_name: str | None = Field(default=None, description="the estate's name")
    device_location: str | None = Field(default=None, description="where the device is")
    chain: list[dict[str, Any]] = Field(description="escalation chain: party and organisation")
    escalation_level: int
    notified_roles: list[str]
    list_version: int = Field(description="responsibility list version that decided (0: shipped)")
    cycle: int
    reopen_count: int
    ack_due: dt.datetime
    arrive_due: dt.datetime | None
    resolve_due: dt.datetime
    verify_s: float
    created_at: dt.datetime
    dispatched_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    arrived_at: dt.datetime | None
    resolved_at: dt.datetime | None
    verify_until: dt.datetime | None
    closed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    cancel_reason: str | None
    updated_at: dt.datetime


class EventOut(BaseModel):
    at: dt.datetime
    change: str
    from_state: str | None
    to_state: str | None
    actor: str
    detail: dict[str, Any]


class BreachOut(BaseModel):
    cycle: int
    deadline: str
    due_at: dt.datetime
    breached_at: dt.datetime
    escalated_to: str | None


class DeliveryOut(BaseModel):
    id: int
    org_code: str | None
    channel: str
    target: str
    event: str
    state: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


class OrderDetail(OrderOut):
    events: list[EventOut]
    breaches: list[BreachOut]
    deliveries: list[DeliveryOut] = Field(description="the delivery log of its notifications")


class StepIn(BaseModel):
    note: str | None = Field(default=None, max_length=1000, description="required to cancel")


class ListOut(BaseModel):
    version: int = Field(description="0: the shipped file, never edited")
    author: str
    comment: str
    created_at: dt.datetime | None
    list: ResponsibilityList


class ListIn(BaseModel):
    based_on: int = Field(ge=0, description="the version you edited (optimistic locking)")
    comment: str = Field(min_length=1, max_length=500)
    list: ResponsibilityList


class GapOut(BaseModel):
    id: int
    incident_id: int
    estate_code: str
    building_code: str | None
    kind: str
    alert_type: str
    severity: str
    reason: str
    at: dt.datetime


class ItemOut(BaseModel):
    id: int
    estate_code: str
    device_code: str
    item: Literal["maintenance_overdue", "inspection_overdue"]
    due: dt.date
    maintenance_code: str | None
    opened_at: dt.datetime
    closed_at: dt.datetime | None


# ---------------------------------------------------------------------- work orders


def _named(c: Conn, items: list[OrderOut]) -> list[OrderOut]:
    """The orders with their assignees', estates' and devices' names, as people on duty
    name them (two queries for the page)."""
    if not items:
        return items
    codes = sorted({o.assignee for o in items if o.assignee})
    names: dict[str, str] = {
        str(code): str(name)
        for code, name in c.execute(
            "SELECT code, name FROM organisations WHERE code = ANY(%s)", (codes,)
        )
    }
    places: dict[tuple[str, str], tuple[str, str | None]] = {
        (str(e), str(d)): (str(en), loc)
        for e, d, en, loc in c.execute(
            "SELECT d.estate_code, d.code, e.name, d.location FROM devices d"
            " JOIN estates e ON e.code = d.estate_code"
            " WHERE (d.estate_code, d.code) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([o.estate_code for o in items], [o.device_code for o in items]),
        )
    }
    out = []
    for o in items:
        estate_name, location = places.get((o.estate_code, o.device_code), (None, None))
        update = {"assignee_name": names.get(o.assignee or ""), "estate_name": estate_name,
                  "device_location": location}  # fmt: skip
        out.append(o.model_copy(update=update))
    return out


def _order(c: Conn, p: Principal, order_id: int) -> OrderOut:
    row = orders.find(c, order_id, order_scope(p))
    if row is None:
        raise Problem(404, "not-found", "Not found", f"no work order {order_id} that you may see")
    return _named(c, [OrderOut.model_validate(row)])[0]


@router.get("/work-orders")
def list_orders(
    *,
    c: Db,
    p: Caller,
    state: Annotated[
        OrderState | Literal["live", "all"],
        Query(description="'live' (not closed or cancelled), 'all', or one state"),
    ] = "live",
    estate: str | None = None,
    assignee: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[OrderOut]:
    """Work orders newest first, within the caller's scope."""
    rows = orders.search(
        c,
        order_scope(p),
        state=state,
        estate=estate,
        assignee=assignee,
        before_id=cursor_id(cursor),
        limit=limit,
    )
    items = _named(c, [OrderOut.model_validate(r) for r in rows])
    return page(items, limit, lambda o: o.id)


@router.get("/work-orders/{order_id}", responses={404: {"description": "not there, or not yours"}})
def get_order(c: Db, p: Caller, order_id: int) -> OrderDetail:
    """One order with every event (who, when), its breaches and its delivery log."""
    o = _order(c, p, order_id)
    events = [EventOut.model_validate(r) for r in orders.events(c, order_id)]
    breaches = [BreachOut.model_validate(r) for r in orders.breaches(c, order_id)]
    deliveries = fetch_all(
        c,
        DeliveryOut,
        "SELECT id, org_code, channel, target, event, state, attempts, last_error,"
        " created_at, sent_at FROM notifications WHERE order_id = %s AND channel <> 'stream'"
        " ORDER BY id",
        (order_id,),
    )
    return OrderDetail(**o.model_dump(), events=events, breaches=breaches, deliveries=deliveries)


@router.post(
    "/work-orders/{order_id}/{action}",
    responses={403: {}, 404: {}, 409: {"description": "not possible in the order's state"}},
)
def step_order(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    order_id: int,
    action: Literal["acknowledge", "arrive", "resolve", "cancel"],
    body: StepIn | None = None,
) -> OrderOut:
    """A step on an order: the assigned maintenance company (or the estate's control room
    on its behalf) acknowledges, arrives, resolves; a manager or admin cancels, with a
    reason. Returns the order as it now is."""
    o = _order(c, p, order_id)
    if action == "cancel":
        allow(p, Role.ADMIN, Role.MANAGER)
    elif p.role is Role.MAINTENANCE:
        if o.assignee != p.org_code:
            raise Problem(403, "forbidden", "Forbidden", "the order is not assigned to you")
    else:
        allow(p, Role.ADMIN, Role.OPERATOR, Role.MANAGER)
    try:
        dispatch.act(
            c,
            order_id,
            action,
            actor=p.actor,
            now=clock(),
            note=body.note if body else None,
        )
    except dispatch.OrderActionError as err:
        raise Problem(409, "not-applicable", "Conflict", str(err)) from None
    return _order(c, p, order_id)


# ---------------------------------------------------------------------- the list


def _list_out(v: responsibility.Version) -> ListOut:
    return ListOut(
        version=v.version, author=v.author, comment=v.comment, created_at=v.created_at,
        list=v.rows,
    )  # fmt: skip


@router.get("/responsibility")
def get_list(c: Db, p: Caller) -> ListOut:
    """The responsibility list in force (any signed-in caller may read it)."""
    return _list_out(responsibility.current(c))


@router.put("/responsibility", responses={403: {}, 409: {"description": "edited meanwhile"}})
def put_list(c: Db, p: Caller, clock: ClockDep, body: ListIn) -> ListOut:
    """Save a new version (admin, housing authority). ``based_on`` must be the version in
    force, so that no edit silently overwrites another; older versions are kept."""
    allow(p, *EDITORS)
    try:
        responsibility.save(
            c, body.list, author=p.actor, comment=body.comment, based_on=body.based_on,
            now=clock(),
        )  # fmt: skip
    except responsibility.VersionConflict as err:
        raise Problem(409, "version-conflict", "Conflict", str(err)) from None
    return _list_out(responsibility.current(c))


@router.get("/responsibility/versions")
def list_versions(c: Db, p: Caller) -> list[ListOut]:
    """Every saved version, newest first (the history of the list)."""
    return [_list_out(v) for v in responsibility.history(c)]


# ---------------------------------------------------------------------- gaps, items


@router.get("/dispatch/gaps")
def list_gaps(*, c: Db, p: Caller, limit: Limit = 50, cursor: Cursor = None) -> Page[GapOut]:
    """Alerts the list did not cover (or whose party the registry lacks), newest first."""
    allow(p, Role.ADMIN, Role.HOUSING_AUTHORITY, Role.MANAGER, Role.OPERATOR, Role.STREET_OFFICE)
    q = sql.SQL(
        "SELECT id, incident_id, estate_code, building_code, kind, alert_type, severity, reason,"
        " at FROM dispatch_gaps WHERE {} AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)"
        " ORDER BY id DESC LIMIT %(limit)s"
    ).format(p.estate_scope("estate_code"))
    items = fetch_all(c, GapOut, q, {"cursor": cursor_id(cursor), "limit": limit})
    return page(items, limit, lambda g: g.id)


@router.get("/supervision/items")
def list_items(
    *,
    c: Db,
    p: Caller,
    open_only: Annotated[bool, Query(alias="open")] = True,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ItemOut]:
    """Elevator maintenance / periodic inspection overdue (TSG T5002, T7001): market
    supervision in its area, the maintenance company for its lifts, the estate's firm."""
    if p.role is Role.MAINTENANCE:
        scope: sql.Composable = sql.SQL("maintenance_code = {}").format(sql.Literal(p.org_code))
    elif p.role is Role.FIRE_INSPECTOR or p.role is Role.OWNER:
        scope = sql.SQL("false")
    else:
        scope = p.estate_scope("estate_code")
    q = sql.SQL(
        "SELECT id, estate_code, device_code, item, due, maintenance_code, opened_at, closed_at"
        " FROM supervision_items WHERE {} AND (NOT %(open)s OR closed_at IS NULL)"
        " AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s) ORDER BY id DESC LIMIT %(limit)s"
    ).format(scope)
    params = {"open": open_only, "cursor": cursor_id(cursor), "limit": limit}
    items = fetch_all(c, ItemOut, q, params)
    return page(items, limit, lambda i: i.id)


# ---------------------------------------------------------------------- ledger


@router.get(
    "/ledger",
    responses={
        200: {
            "content": {
                "text/csv": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            },
            "description": "the orders of the period (JSON, CSV, or an Excel workbook)",
        }
    },
    response_model=None,
)
def get_ledger(
    *,
    c: Db,
    p: Caller,
    start: Instant,
    end: Instant,
    estate: str | None = None,
    unit: Annotated[str | None, Query(description="the organisation assigned")] = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Response | list[dict[str, Any]]:
    """The ledger (台账) of orders created in [start, end): response times, breaches,
    reopenings, per order; the Excel file adds a summary per unit."""
    if end <= start:
        raise Problem(422, "bad-period", "Bad period", "end must be after start")
    if p.role is Role.OWNER or (p.role in AREA_ROLES and p.area_code is None):
        raise Problem(403, "forbidden", "Forbidden", f"role {p.role} has no ledger")
    lines = ledger.lines(c, start=start, end=end, estate=estate, unit=unit, scope=ledger_scope(p))
    name = f"ledger-{start:%Y%m%d}-{end:%Y%m%d}"
    if format == "csv":
        return Response(
            ledger.to_csv(lines).encode("utf-8-sig"),  # the BOM makes Excel read UTF-8
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format == "xlsx":
        return Response(
            ledger.to_xlsx(lines, title=name),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    return [asdict(x) for x in lines]
