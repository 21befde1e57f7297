"""Dispatch (派单): incidents become work orders by the responsibility list; the order's
life: acknowledged, on site, resolved, verified, closed, or reopened, or cancelled.

One order per incident. The incident's lead alert (highest severity, then oldest) is
looked up in the list in force; the row names the responsible party, resolved to an
organisation through the registry (``PartyDirectory``), the deadlines (counted from the
alarm: the lead alert's first evidence, device time) and the escalation chain; its
``inform`` parties are told at dispatch. An incident the list does not cover, or whose
party the registry does not name, is a gap (``dispatch_gaps``, logged, streamed): never
dropped. An incident on a device whose order is still live (or being verified) is a
recurrence: it joins that order, and reopens it if it was resolved.

Life safety (trapped, fire alarm, flooding) holds whatever else is open: such an alert is
an incident of its own (``alerts.store``), so it gets its own order with the party the
list names. It joins only an order of the same device and alert type still under way;
after that order was resolved, a new occurrence is a new order (a new rescue), and the
old order's look-back is closed as failed. When a more severe alert joins a grouped
incident, its order is re-dispatched to the party and deadlines of the more severe row.
A confirmed fire is reported at once to the row's ``on_confirmed`` parties (the fire
brigade, 119, and the estate's duty roster) over every channel of the row.

States::

    created → dispatched → acknowledged → on_site → resolved → verifying → closed
                   │             │            │          │           │
                   └─────────────┴────────────┴──────────┴─→ reopened (recurrence)
    any live state → cancelled (with a reason)

Every transition is a ``work_order_events`` row (who, when, from, to) and a message on
the order's live stream; dispatch, escalation, reopening and cancellation also notify
the parties (``alerts.notify``). All of it in one transaction per change.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alerts import notify, orders, store
from alerts.orders import Dues, OrderState, record
from alerts.responsibility import PARTIES, Gap, PartyDirectory, Row, Version
from alerts.rules import Severity
from alerts.store import DispatchIncident
from estate.db import Conn

log = logging.getLogger("estate.dispatch")

LIVE = orders.LIVE
# what a person may do, from which states
ACTIONS: Mapping[str, tuple[OrderState, tuple[OrderState, ...]]] = {
    "acknowledge": (OrderState.ACKNOWLEDGED, (OrderState.DISPATCHED, OrderState.REOPENED)),
    "arrive": (
        OrderState.ON_SITE,
        (OrderState.DISPATCHED, OrderState.ACKNOWLEDGED, OrderState.REOPENED),
    ),
    "resolve": (
        OrderState.RESOLVED,
        (OrderState.DISPATCHED, OrderState.ACKNOWLEDGED, OrderState.ON_SITE, OrderState.REOPENED),
    ),
    "cancel": (OrderState.CANCELLED, LIVE),
}
_AFTER_RESOLUTION = (OrderState.RESOLVED, OrderState.VERIFYING)


class OrderActionError(ValueError):
    """The action does not apply to the order as it is; the message says why."""


@dataclass(frozen=True)
class Dispatched:
    """What one dispatch round did."""

    orders: list[int]
    recurrences: list[int]
    gaps: list[str]


@dataclass(frozen=True)
class _Lead:
    """The alert that decides an incident's order."""

    device_id: int
    device: str
    alert: str
    severity: str
    maintenance: str | None
    first_seen: dt.datetime

    def alarm_at(self, now: dt.datetime) -> dt.datetime:
        """Deadlines count from here: the first evidence, never later than now."""
        return min(self.first_seen, now)


_LEAD = (
    "SELECT a.device_id, a.device_code, a.alert_type, a.severity, d.maintenance_code,"
    " a.first_seen FROM alerts a JOIN devices d ON d.id = a.device_id"
    " WHERE a.incident_id = %s AND a.state = 'open' AND a.muted_by IS NULL"
    " ORDER BY array_position(ARRAY['info','warning','major','critical'], a.severity) DESC,"
    " a.first_seen, a.id LIMIT 1"
)


def _lead(conn: Conn, incident_id: int) -> _Lead | None:
    r = conn.execute(_LEAD, (incident_id,)).fetchone()
    return None if r is None else _Lead(int(r[0]), r[1], r[2], r[3], r[4], r[5])


def _decide(
    version: Version, parties: PartyDirectory, inc: DispatchIncident, lead: _Lead
) -> Row | Gap:
    return version.rows.decide(
        estate=inc.estate,
        building=inc.building,
        kind=inc.category,
        alert=lead.alert,
        severity=Severity.parse(lead.severity),
        areas=parties.areas_of(inc.estate),
    )


def _gap(conn: Conn, inc: DispatchIncident, lead: _Lead, reason: str, now: dt.datetime) -> str:
    conn.execute(
        "INSERT INTO dispatch_gaps (incident_id, estate_code, building_code, kind, alert_type,"
        " severity, reason, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (incident_id, alert_type, reason) DO NOTHING",
        (inc.id, inc.estate, inc.building, inc.category, lead.alert, lead.severity, reason, now),
    )
    notify.stream(
        conn,
        topic=f"estate/v1/{inc.estate}/dispatch/gaps",
        event="dispatch.gap",
        payload={
            "incident": inc.id,
            "estate": inc.estate,
            "building": inc.building,
            "kind": inc.category,
            "alert": lead.alert,
            "severity": lead.severity,
            "reason": reason,
        },
        now=now,
    )
    log.warning("dispatch gap, incident %d: %s", inc.id, reason)
    return reason


def dispatch(conn: Conn, now: dt.datetime, version: Version, parties: PartyDirectory) -> Dispatched:
    """Look at every open incident without an order (new, or changed since last looked
    at): create its order, join it to a live order on the same device, or record a gap."""
    out = Dispatched([], [], [])
    for iid, has_order in store.incidents_to_dispatch(conn):
        # one transaction each: in a storm the first order goes out at once, not after
        # the last one is decided
        with conn.transaction():
            inc = store.lock_for_dispatch(conn, iid, has_order=has_order)
            if inc is None:
                continue  # another supervisor has it, or it changed meanwhile
            if has_order:
                _maybe_redispatch(conn, inc, now=now, version=version, parties=parties)
            else:
                _one_incident(conn, inc, now=now, version=version, parties=parties, out=out)
            store.dispatch_checked(conn, inc.id)
    return out


def _one_incident(
    conn: Conn,
    inc: DispatchIncident,
    *,
    now: dt.datetime,
    version: Version,
    parties: PartyDirectory,
    out: Dispatched,
) -> None:
    lead = _lead(conn, inc.id)
    if lead is None:
        return  # its alerts cleared meanwhile
    if _recurrence(conn, inc, now=now, out=out):
        return
    row = _decide(version, parties, inc, lead)
    if isinstance(row, Gap):
        out.gaps.append(_gap(conn, inc, lead, str(row), now))
        return
    if not row.dispatch:
        return
    found = parties.parties(inc.estate, lead.maintenance)
    assert row.responsible is not None  # a dispatching row has one (checked by the model)
    chain = [{"party": p, "org": found.resolve(p)} for p in row.escalation]
    assignee = found.resolve(row.responsible)
    if assignee is None:
        # never dropped: the next party that exists takes it, and the gap is on record
        nxt = next((c for c in chain if c["org"] is not None), None)
        where = f"{inc.estate}/{lead.device}"
        reason = f"the registry names no {row.responsible} for {where}: " + (
            f"order given to {nxt['party']} {nxt['org']}" if nxt else "nobody to give it to"
        )
        out.gaps.append(_gap(conn, inc, lead, reason, now))
        assignee = nxt["org"] if nxt else None
    informed = [(p, found.resolve(p)) for p in row.inform if p != row.responsible]
    out.orders.append(
        _create(
            conn,
            inc,
            lead,
            row=row,
            list_version=version.version,
            assignee=assignee,
            chain=chain,
            informed=informed,
            now=now,
        )
    )


def _dues(alarm: dt.datetime, row: Row) -> Dues:
    d = row.deadlines
    assert d is not None  # a dispatching row has them (checked by the model)
    return Dues.after(alarm, ack_s=d.acknowledge_s, arrive_s=d.arrive_s, resolve_s=d.resolve_s)


def _create(
    conn: Conn,
    inc: DispatchIncident,
    lead: _Lead,
    *,
    row: Row,
    list_version: int,
    assignee: str | None,
    chain: list[dict[str, Any]],
    informed: list[tuple[str, str | None]],
    now: dt.datetime,
) -> int:
    d = row.deadlines
    assert d is not None  # a dispatching row has them (checked by the model)
    alarm = lead.alarm_at(now)
    roles = [row.responsible] if row.responsible in PARTIES else []
    roles += [p for p, org in informed if org is not None and p in PARTIES and p not in roles]

    order_id = orders.create(
        conn,
        incident_id=inc.id,
        estate=inc.estate,
        building=inc.building,
        category=inc.category,
        device=lead.device,
        alert=lead.alert,
        severity=lead.severity,
        assignee=assignee,
        chain=chain,
        notified_roles=roles,
        list_version=list_version,
        list_row=row.model_dump(mode="json"),
        dues=_dues(alarm, row),
        verify_s=d.verify_s,
        alarm=alarm,
        now=now,
    )
    store.cover(conn, inc.id, order_id)
    record(
        conn,
        order_id,
        "created",
        actor="dispatch",
        now=now,
        to_state="created",
        detail={
            "incident": inc.id,
            "list_version": list_version,
            "responsible": row.responsible,
            "alarm_at": alarm.isoformat(timespec="seconds"),
        },
    )
    orders.mark_dispatched(conn, order_id, now)
    payload = record(
        conn,
        order_id,
        "dispatched",
        actor="dispatch",
        now=now,
        from_state="created",
        to_state="dispatched",
        detail={"to": assignee},
    )
    _tell_dispatched(conn, row, assignee, payload, now=now, order_id=order_id)
    for party, org in informed:
        if org is not None and org != assignee:
            notify.tell(
                conn,
                org=org,
                channels=row.channels,
                event="workorder.informed",
                payload={**payload, "informed_as": party},
                now=now,
                order_id=order_id,
            )
    return order_id


def _tell_dispatched(
    conn: Conn,
    row: Row,
    assignee: str | None,
    payload: dict[str, Any],
    *,
    now: dt.datetime,
    order_id: int,
) -> None:
    """The party the order now goes to is told, over the row's channels."""
    notify.tell(
        conn,
        org=assignee,
        channels=row.channels,
        event="workorder.dispatched",
        payload=payload,
        now=now,
        order_id=order_id,
    )


def _recurrence(conn: Conn, inc: DispatchIncident, *, now: dt.datetime, out: Dispatched) -> bool:
    """Join the incident to a live order on one of its devices; reopen it if resolved.
    Only orders of the same kind of incident qualify: a life-safety incident joins only
    the order of the same device and alert type, a grouped one only a grouped one."""
    found = orders.live_on_same_devices(
        conn,
        incident_id=inc.id,
        estate=inc.estate,
        building=inc.building,
        category=inc.category,
        group_key=inc.group_key,
    )
    if found is None:
        return False
    order_id, state, verify_until = found.id, found.state, found.verify_until
    assignee, list_row = found.assignee, found.list_row
    if state == OrderState.VERIFYING and verify_until is not None and inc.opened_at >= verify_until:
        # it had stayed normal for the whole window before this began: closed then
        close(conn, order_id, at=verify_until)
        return False
    if inc.life_safety and state in _AFTER_RESOLUTION:
        # a new entrapment (fire, flood) after the rescue was resolved is a new rescue:
        # its own order and statistics; the old one's look-back failed
        close(
            conn,
            order_id,
            at=now,
            from_state=state,
            detail={"look_back": "failed", "recurrence_incident": inc.id},
        )
        return False
    store.cover(conn, inc.id, order_id)
    out.recurrences.append(order_id)
    if state not in _AFTER_RESOLUTION:
        record(
            conn,
            order_id,
            "recurrence",
            actor="dispatch",
            now=now,
            detail={"incident": inc.id, "state": state},
        )
        return True
    lead = _lead(conn, inc.id)
    alarm = now if lead is None else lead.alarm_at(now)
    orders.reopen(
        conn, order_id, alarm=alarm, dues=_dues(alarm, Row.model_validate(list_row)), now=now
    )
    payload = record(
        conn,
        order_id,
        "reopened",
        actor="dispatch",
        now=now,
        from_state=state,
        to_state="reopened",
        detail={"incident": inc.id, "recurrence_at": inc.opened_at.isoformat(timespec="seconds")},
    )
    notify.tell(
        conn,
        org=assignee,
        channels=Row.model_validate(list_row).channels,
        event="workorder.reopened",
        payload=payload,
        now=now,
        order_id=order_id,
    )
    return True


def close(
    conn: Conn,
    order_id: int,
    *,
    at: dt.datetime,
    from_state: str = OrderState.VERIFYING,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """The order is closed at ``at``: verified, or superseded by a new rescue."""
    orders.mark_closed(conn, order_id, at)
    record(
        conn,
        order_id,
        "closed",
        actor="supervise",
        now=at,
        from_state=from_state,
        to_state="closed",
        detail=detail or {"verified_normal_until": at.isoformat(timespec="seconds")},
    )


def start_verification(conn: Conn, order_id: int, now: dt.datetime) -> bool:
    """A resolved order whose incidents are all resolved starts its look-back window,
    counted from the later of the resolution and the last alert clearing."""
    v = orders.verification(conn, order_id)
    if v.state != OrderState.RESOLVED or v.still_open:
        return False
    start = v.resolved_at or now
    if v.normal_since is not None and v.normal_since > start:
        start = v.normal_since
    until = start + dt.timedelta(seconds=v.verify_s)
    orders.mark_verifying(conn, order_id, until, now)
    record(
        conn,
        order_id,
        "verifying",
        actor="supervise",
        now=now,
        from_state="resolved",
        to_state="verifying",
        detail={
            "normal_since": start.isoformat(timespec="seconds"),
            "verify_until": until.isoformat(timespec="seconds"),
        },
    )
    return True


def act(
    conn: Conn,
    order_id: int,
    action: str,
    *,
    actor: str,
    now: dt.datetime,
    note: str | None = None,
) -> str:
    """A person's step on an order (acknowledge, arrive, resolve, cancel); returns the new
    state. Arriving implies acknowledging, resolving implies both: the skipped times are
    set to the same moment, so response times stay defined. Cancel needs ``note`` (the
    reason)."""
    if action not in ACTIONS:
        raise OrderActionError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    to, allowed = ACTIONS[action]
    with conn.transaction():
        locked = orders.lock(conn, order_id)
        if locked is None:
            raise OrderActionError(f"no work order {order_id}")
        state, assignee, list_row = locked.state, locked.assignee, locked.list_row
        if state not in allowed:
            raise OrderActionError(
                f"work order {order_id} is {state}: cannot {action} it"
                f" (only when {', '.join(allowed)})"
            )
        if action == "cancel" and not (note and note.strip()):
            raise OrderActionError("cancelling needs a reason")
        if action == "cancel" and orders.covers_open_life_safety(conn, order_id):
            # every open life-safety alert keeps a live order: the alarm ends first
            raise OrderActionError(
                f"work order {order_id} covers an open life-safety alert (trapped, fire, "
                "flooding): resolve it, or decide the fire alarm, instead of cancelling"
            )
        orders.apply_step(conn, order_id, action, to=to, now=now, note=note)
        payload = record(
            conn,
            order_id,
            to,
            actor=actor,
            now=now,
            from_state=state,
            to_state=to,
            detail={"note": note} if note else None,
        )
        if action == "cancel":
            notify.tell(
                conn,
                org=assignee,
                channels=Row.model_validate(list_row).channels,
                event="workorder.cancelled",
                payload=payload,
                now=now,
                order_id=order_id,
            )
        if action == "resolve":
            # the rescue is over: what only a person could close is closed now
            store.close_rescued(conn, order_id, actor=actor, now=now)
            if start_verification(conn, order_id, now):
                to = OrderState.VERIFYING
    return to


def fire_verdict(
    conn: Conn,
    alert_id: int,
    *,
    actor: str,
    now: dt.datetime,
    false_alarm_cause: str | None,
    note: str | None = None,
) -> None:
    """The control room's verdict on a fire alarm, and its effect on the order: a
    confirmation acknowledges it (GB 25201 §5.3: confirmed in time) and reports the fire
    at once (``report_confirmed_fires``); a false alarm (a cause from
    ``store.FALSE_ALARM_CAUSES``) that leaves the incident with no open alert cancels it
    with the cause."""
    store.confirm_fire(
        conn, alert_id, actor=actor, now=now, false_alarm_cause=false_alarm_cause, note=note
    )
    found = orders.of_alert(conn, alert_id)
    if found is None:
        return  # not dispatched (yet): dispatch sees the verdict in the alert's state
    order_id, state, incident_state = found.id, found.state, found.incident_state
    if false_alarm_cause is None:
        if state in ACTIONS["acknowledge"][1]:
            act(conn, order_id, "acknowledge", actor=actor, now=now, note="fire alarm confirmed")
        report_confirmed_fires(conn, now, PartyDirectory(conn), order_id=order_id)
    elif incident_state == "resolved" and state in (
        OrderState.DISPATCHED,
        OrderState.ACKNOWLEDGED,
        OrderState.REOPENED,
    ):
        act(
            conn, order_id, "cancel", actor=actor, now=now, note=f"false alarm: {false_alarm_cause}"
        )


def report_confirmed_fires(
    conn: Conn, now: dt.datetime, parties: PartyDirectory, *, order_id: int | None = None
) -> list[int]:
    """Every live order with a confirmed fire alarm not yet reported: its row's
    ``on_confirmed`` parties (the fire brigade, 119; the estate's duty roster) are told
    now, over every channel of the row, whatever the deadlines say. Returns the orders."""
    fires = orders.unreported_fires(conn, order_id)
    out = []
    for fire in fires:
        oid, notified, assignee = fire.id, fire.notified_roles, fire.assignee
        row = Row.model_validate(fire.list_row)
        found = parties.parties(fire.estate_code, fire.maintenance_code)
        told = [(p, found.resolve(p)) for p in (row.on_confirmed or ["fire_brigade"])]
        roles = [*notified, *(p for p, _ in told if p in PARTIES and p not in notified)]
        orders.set_notified(conn, oid, roles, now)
        detail = {"alert": fire.alert, "told": [{"party": p, "org": o} for p, o in told]}
        payload = record(conn, oid, "fire_confirmed", actor="dispatch", now=now, detail=detail)
        channels = sorted({*row.channels, "mqtt", "stream"})
        for party, org in told:
            if org is None:
                log.error("confirmed fire, order %d: the registry names no %s", oid, party)
                continue
            notify.tell(
                conn,
                org=org,
                channels=channels,
                event="workorder.fire_confirmed",
                payload={**payload, "told_as": party, "assignee": assignee},
                now=now,
                order_id=oid,
            )
        log.warning("confirmed fire, order %d: told %s", oid, [o for _, o in told])
        out.append(oid)
    return out


def _maybe_redispatch(
    conn: Conn,
    inc: DispatchIncident,
    *,
    now: dt.datetime,
    version: Version,
    parties: PartyDirectory,
) -> None:
    """A grouped incident whose lead alert is now more severe than the one its order was
    dispatched for: the order goes to the party and deadlines of the more severe row."""
    lead = _lead(conn, inc.id)
    if lead is None:
        return
    r = orders.of_incident(conn, inc.id)
    if r is None:
        return
    order_id, state, lead_severity, list_row = r.id, r.state, r.lead_severity, r.list_row
    old_assignee, old_alert = r.assignee, r.alert_type
    if state in orders.DONE or Severity.parse(lead.severity) <= Severity.parse(
        lead_severity or "info"
    ):
        return
    row = _decide(version, parties, inc, lead)
    if isinstance(row, Gap) or not row.dispatch or row.model_dump(mode="json") == list_row:
        orders.set_lead_severity(conn, order_id, lead.severity, now)
        return
    d = row.deadlines
    assert d is not None
    assert row.responsible is not None
    found = parties.parties(inc.estate, lead.maintenance)
    assignee = found.resolve(row.responsible) or next(
        (found.resolve(p) for p in row.escalation if found.resolve(p)), None
    )
    chain = [{"party": p, "org": found.resolve(p)} for p in row.escalation]
    alarm = lead.alarm_at(now)
    orders.redispatch(
        conn,
        order_id,
        assignee=assignee,
        chain=chain,
        list_version=version.version,
        list_row=row.model_dump(mode="json"),
        alert=lead.alert,
        device=lead.device,
        severity=lead.severity,
        alarm=alarm,
        dues=_dues(alarm, row),
        verify_s=d.verify_s,
        now=now,
    )
    payload = record(
        conn,
        order_id,
        "redispatched",
        actor="dispatch",
        now=now,
        from_state=state,
        to_state="dispatched",
        detail={
            "from": old_assignee,
            "to": assignee,
            "was": old_alert,
            "alert": lead.alert,
            "severity": lead.severity,
        },
    )
    _tell_dispatched(conn, row, assignee, payload, now=now, order_id=order_id)
    if old_assignee not in (None, assignee):
        notify.tell(
            conn,
            org=old_assignee,
            channels=row.channels,
            event="workorder.redispatched",
            payload=payload,
            now=now,
            order_id=order_id,
        )
