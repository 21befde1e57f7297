"""``/api/v1/alerts`` and ``/api/v1/incidents``: what the engine raised, within scope.

What a caller may see is decided in the query (``Principal.alert_scope``): a property
firm's estates, a maintenance company's own devices, an inspector's domain in their
area. An alert outside the caller's scope answers 404, as if it did not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from psycopg import sql
from pydantic import BaseModel, Field

from alerts import dispatch, store
from api.auth import Principal, Role
from api.deps import Caller, ClockDep, Db, allow
from api.pages import Cursor, Limit, Page, cursor_id, fetch_all, fetch_one, page
from api.problems import Problem
from estate.db import Conn

router = APIRouter(prefix="/api/v1", tags=["alerts"])
JUDGES = (Role.ADMIN, Role.OPERATOR, Role.MANAGER)  # who may confirm a fire alarm

_ALERT_COLUMNS = (
    "id, alert_type, rule_id, severity, state, confirmation, false_alarm_cause, muted_by,"
    " flapping, incident_id, estate_code, building_code, device_code, kind, first_seen,"
    " last_seen, cleared_at, occurrences, evidence, acknowledged_at, acknowledged_by,"
    " life_safety, rules, held_at, false_alarm_note,"
    # names for people: the estate's and where the device is
    " (SELECT e.name FROM estates e WHERE e.code = alerts.estate_code) AS estate_name,"
    " (SELECT d.location FROM devices d WHERE d.id = alerts.device_id) AS device_location"
)


class AlertOut(BaseModel):
    id: int
    alert_type: str
    rule_id: str
    severity: Literal["info", "warning", "major", "critical"]
    state: Literal["open", "cleared"]
    confirmation: Literal["to_be_confirmed", "confirmed", "false_alarm"] | None
    false_alarm_cause: str | None
    muted_by: str | None = Field(description="'inhibit:<rule>' or 'silence:<id>' when muted")
    flapping: bool
    incident_id: int | None
    estate_code: str
    building_code: str | None
    device_code: str
    kind: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    cleared_at: dt.datetime | None
    occurrences: int
    evidence: dict[str, Any] = Field(description="the readings or events that raised it")
    acknowledged_at: dt.datetime | None = Field(description="seen on the board (console)")
    acknowledged_by: str | None
    life_safety: bool = Field(
        description="people may be in danger: never muted, its own order (rules.yaml)"
    )
    rules: list[str] = Field(description="the rules that see it now (empty once cleared)")
    held_at: dt.datetime | None = Field(
        description="the device said normal then, but only a person may close it"
    )
    false_alarm_note: str | None
    estate_name: str | None = Field(default=None, description="the estate's name")
    device_location: str | None = Field(default=None, description="where the device is")


class ChangeOut(BaseModel):
    at: dt.datetime
    change: str
    severity: str
    actor: str
    detail: dict[str, Any]


class AlertDetail(AlertOut):
    changes: list[ChangeOut]


class IncidentOut(BaseModel):
    id: int
    estate_code: str
    building_code: str | None
    category: str
    severity: str
    state: Literal["open", "resolved"]
    opened_at: dt.datetime
    updated_at: dt.datetime
    resolved_at: dt.datetime | None
    open_alerts: int


class FalseAlarmIn(BaseModel):
    cause: store.FalseAlarmCause = Field(
        description="what set it off: "
        + "; ".join(f"{k} {v}" for k, v in store.FALSE_ALARM_CAUSES.items())
    )
    note: str | None = Field(
        default=None, min_length=1, max_length=500, description="what, in words ('other')"
    )


def _visible(c: Conn, p: Principal, alert_id: int) -> AlertOut:
    query = sql.SQL("SELECT {} FROM alerts WHERE id = %s AND {}").format(
        sql.SQL(_ALERT_COLUMNS), p.alert_scope()
    )
    row = fetch_one(c, AlertOut, query, (alert_id,))
    if row is None:
        raise Problem(404, "not-found", "Not found", f"no alert {alert_id} that you may see")
    return row


@router.get("/alerts")
def list_alerts(
    *,
    c: Db,
    p: Caller,
    state: Literal["open", "cleared", "all"] = "open",
    estate: str | None = None,
    alert_type: str | None = None,
    muted: Annotated[bool | None, Query(description="only muted, or only unmuted")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[AlertOut]:
    """Alerts newest first, within the caller's scope."""
    query = sql.SQL(
        "SELECT {} FROM alerts WHERE {}"
        " AND (%(state)s = 'all' OR state = %(state)s)"
        " AND (%(estate)s::text IS NULL OR estate_code = %(estate)s)"
        " AND (%(type)s::text IS NULL OR alert_type = %(type)s)"
        " AND (%(muted)s::boolean IS NULL OR (muted_by IS NOT NULL) = %(muted)s)"
        " AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)"
        " ORDER BY id DESC LIMIT %(limit)s"
    ).format(sql.SQL(_ALERT_COLUMNS), p.alert_scope())
    params = {
        "state": state, "estate": estate, "type": alert_type, "muted": muted,
        "cursor": cursor_id(cursor), "limit": limit,
    }  # fmt: skip
    items = fetch_all(c, AlertOut, query, params)
    return page(items, limit, lambda a: a.id)


@router.get("/alerts/{alert_id}", responses={404: {"description": "not there, or not yours"}})
def get_alert(c: Db, p: Caller, alert_id: int) -> AlertDetail:
    """One alert with every change (who, when, what)."""
    alert = _visible(c, p, alert_id)
    changes = fetch_all(
        c,
        ChangeOut,
        "SELECT at, change, severity, actor, detail FROM alert_changes"
        " WHERE alert_id = %s ORDER BY at, id",
        (alert_id,),
    )
    return AlertDetail(**alert.model_dump(), changes=changes)


def _verdict(
    c: Conn,
    p: Principal,
    alert_id: int,
    *,
    now: dt.datetime,
    cause: str | None,
    note: str | None = None,
) -> None:
    allow(p, *JUDGES)
    _visible(c, p, alert_id)
    try:
        dispatch.fire_verdict(
            c, alert_id, actor=p.actor, now=now, false_alarm_cause=cause, note=note
        )
    except (store.AlertActionError, dispatch.OrderActionError) as err:
        raise Problem(409, "not-applicable", "Conflict", str(err)) from None


@router.post("/alerts/{alert_id}/confirm", status_code=204, responses={409: {}})
def confirm_alert(c: Db, p: Caller, clock: ClockDep, alert_id: int) -> None:
    """The control room confirms a fire alarm (GB 25201 §5.3); its work order counts as
    acknowledged, and the fire brigade (119) and the estate's duty roster are told at once."""
    _verdict(c, p, alert_id, now=clock(), cause=None)


@router.post("/alerts/{alert_id}/false-alarm", status_code=204, responses={409: {}})
def false_alarm(c: Db, p: Caller, clock: ClockDep, alert_id: int, body: FalseAlarmIn) -> None:
    """The control room closes a fire alarm as false, with its cause; the alert clears, and
    its work order is cancelled when nothing else in the incident is open. The cause is one
    of a fixed list (the inspectors count them); ``other`` needs a note."""
    _verdict(c, p, alert_id, now=clock(), cause=body.cause, note=body.note)


@router.get("/incidents")
def list_incidents(
    *,
    c: Db,
    p: Caller,
    state: Literal["open", "resolved", "all"] = "open",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[IncidentOut]:
    """Incidents newest first: those with at least one alert the caller may see."""
    query = sql.SQL(
        "SELECT i.id, i.estate_code, i.building_code, i.category, i.severity, i.state,"
        " i.opened_at, i.updated_at, i.resolved_at,"
        " (SELECT count(*) FROM alerts o WHERE o.incident_id = i.id AND o.state = 'open')"
        " AS open_alerts FROM incidents i WHERE i.id IN (SELECT incident_id FROM alerts WHERE {})"
        " AND (%(state)s = 'all' OR i.state = %(state)s)"
        " AND (%(cursor)s::bigint IS NULL OR i.id < %(cursor)s)"
        " ORDER BY i.id DESC LIMIT %(limit)s"
    ).format(p.alert_scope())
    params = {"state": state, "cursor": cursor_id(cursor), "limit": limit}
    items = fetch_all(c, IncidentOut, query, params)
    return page(items, limit, lambda i: i.id)
