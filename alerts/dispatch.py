"""Dispatch (派单): incidents become work orders by the responsibility list; the order's
life: acknowledged, on site, resolved, verified, closed, or reopened, or cancelled.

One order per incident. The incident's lead alert (highest severity, then oldest) is
looked up in the list in force; the row names the responsible party, resolved to an
organisation through the registry (``PartyDirectory``), the deadlines (counted from
dispatch) and the escalation chain. An incident the list does not cover, or whose
party the registry does not name, is a gap (``dispatch_gaps``, logged, streamed): never
dropped. An incident on a device whose order is still live (or being verified) is a
recurrence: it joins that order, and reopens it if it was resolved.

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

import psycopg
from psycopg.types.json import Jsonb

from alerts import notify, store
from alerts.responsibility import PARTIES, Gap, PartyDirectory, Row, Version
from alerts.rules import Severity

log = logging.getLogger("estate.dispatch")
Conn = psycopg.Connection[tuple[Any, ...]]

LIVE = ("created", "dispatched", "acknowledged", "on_site", "resolved", "verifying", "reopened")
# what a person may do, from which states
ACTIONS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "acknowledge": ("acknowledged", ("dispatched", "reopened")),
    "arrive": ("on_site", ("dispatched", "acknowledged", "reopened")),
    "resolve": ("resolved", ("dispatched", "acknowledged", "on_site", "reopened")),
    "cancel": ("cancelled", LIVE),
}
_PAYLOAD_KEYS = (
    "id", "state", "estate", "building", "category", "device", "alert", "severity",
    "assignee", "escalation_level", "cycle", "ack_due", "arrive_due", "resolve_due",
    "verify_until", "at",
)  # fmt: skip

ORDER_COLUMNS = (
    "id, incident_id, estate_code, building_code, category, device_code, alert_type,"
    " severity, state, assignee, chain, escalation_level, notified_roles, list_version,"
    " cycle, reopen_count, ack_due, arrive_due, resolve_due, verify_s, created_at,"
    " dispatched_at, acknowledged_at, arrived_at, resolved_at, verify_until, closed_at,"
    " cancelled_at, cancel_reason, updated_at"
)


class OrderActionError(ValueError):
    """The action does not apply to the order as it is; the message says why."""


@dataclass(frozen=True)
class Dispatched:
    """What one dispatch round did."""

    orders: list[int]
    recurrences: list[int]
    gaps: list[str]


def _payload(conn: Conn, order_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT id, state, estate_code, building_code, category, device_code, alert_type,"
        " severity, assignee, escalation_level, cycle, ack_due, arrive_due, resolve_due,"
        " verify_until, updated_at FROM work_orders WHERE id = %s",
        (order_id,),
    ).fetchone()
    assert row is not None
    return {
        k: v.isoformat(timespec="seconds") if isinstance(v, dt.datetime) else v
        for k, v in zip(_PAYLOAD_KEYS, row, strict=True)
    }


def record(
    conn: Conn,
    order_id: int,
    change: str,
    *,
    actor: str,
    now: dt.datetime,
    from_state: str | None = None,
    to_state: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Add the event, stream the order as it now is; returns that payload."""
    conn.execute(
        "INSERT INTO work_order_events (order_id, at, change, from_state, to_state, actor,"
        " detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (order_id, now, change, from_state, to_state, actor, Jsonb(dict(detail or {}))),
    )
    payload = _payload(conn, order_id)
    notify.stream(
        conn,
        topic=notify.order_topic(payload["estate"], order_id),
        event=f"workorder.{change}",
        payload={**payload, "actor": actor, **({"detail": dict(detail)} if detail else {})},
        now=now,
        order_id=order_id,
    )
    return payload


@dataclass(frozen=True)
class _Incident:
    id: int
    estate: str
    building: str | None
    category: str
    opened_at: dt.datetime


@dataclass(frozen=True)
class _Lead:
    """The alert that decides an incident's order."""

    device_id: int
    device: str
    alert: str
    severity: str
    maintenance: str | None


def _gap(conn: Conn, inc: _Incident, lead: _Lead, reason: str, now: dt.datetime) -> str:
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
    waiting = conn.execute(
        "SELECT id FROM incidents WHERE state = 'open' AND work_order_id IS NULL"
        " AND (dispatch_checked_at IS NULL OR updated_at > dispatch_checked_at) ORDER BY id"
    ).fetchall()
    for (iid,) in waiting:
        # one transaction each: in a storm the first order goes out at once, not after
        # the last one is decided
        with conn.transaction():
            r = conn.execute(
                "SELECT id, estate_code, building_code, category, opened_at FROM incidents"
                " WHERE id = %s AND state = 'open' AND work_order_id IS NULL"
                " FOR UPDATE SKIP LOCKED",
                (iid,),
            ).fetchone()
            if r is None:
                continue  # another supervisor has it, or it changed meanwhile
            inc = _Incident(int(r[0]), r[1], r[2], r[3], r[4])
            _one_incident(conn, inc, now=now, version=version, parties=parties, out=out)
            conn.execute(
                "UPDATE incidents SET dispatch_checked_at = updated_at WHERE id = %s", (inc.id,)
            )
    return out


def _one_incident(
    conn: Conn,
    inc: _Incident,
    *,
    now: dt.datetime,
    version: Version,
    parties: PartyDirectory,
    out: Dispatched,
) -> None:
    r = conn.execute(
        "SELECT a.device_id, a.device_code, a.alert_type, a.severity, d.maintenance_code"
        " FROM alerts a JOIN devices d ON d.id = a.device_id"
        " WHERE a.incident_id = %s AND a.state = 'open' AND a.muted_by IS NULL"
        " ORDER BY array_position(ARRAY['info','warning','major','critical'], a.severity) DESC,"
        " a.first_seen, a.id LIMIT 1",
        (inc.id,),
    ).fetchone()
    if r is None:
        return  # its alerts cleared meanwhile
    lead = _Lead(int(r[0]), r[1], r[2], r[3], r[4])
    if _recurrence(conn, inc, now=now, out=out):
        return
    row = version.rows.decide(
        estate=inc.estate,
        building=inc.building,
        kind=inc.category,
        alert=lead.alert,
        severity=Severity.parse(lead.severity),
    )
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
    out.orders.append(
        _create(
            conn,
            inc,
            lead,
            row=row,
            list_version=version.version,
            assignee=assignee,
            chain=chain,
            now=now,
        )
    )


def _due(now: dt.datetime, s: float | None) -> dt.datetime | None:
    return None if s is None else now + dt.timedelta(seconds=s)


def _create(
    conn: Conn,
    inc: _Incident,
    lead: _Lead,
    *,
    row: Row,
    list_version: int,
    assignee: str | None,
    chain: list[dict[str, Any]],
    now: dt.datetime,
) -> int:
    d = row.deadlines
    assert d is not None  # a dispatching row has them (checked by the model)

    got = conn.execute(
        "INSERT INTO work_orders (incident_id, estate_code, building_code, category,"
        " device_code, alert_type, severity, state, assignee, chain, notified_roles,"
        " list_version, list_row, ack_due, arrive_due, resolve_due, verify_s, created_at,"
        " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 'created', %s, %s, %s, %s, %s,"
        " %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            inc.id,
            inc.estate,
            inc.building,
            inc.category,
            lead.device,
            lead.alert,
            lead.severity,
            assignee,
            Jsonb(chain),
            [row.responsible] if row.responsible in PARTIES else [],
            list_version,
            Jsonb(row.model_dump(mode="json")),
            _due(now, d.acknowledge_s),
            _due(now, d.arrive_s),
            _due(now, d.resolve_s),
            d.verify_s,
            now,
            now,
        ),
    ).fetchone()
    assert got is not None
    order_id = int(got[0])
    conn.execute("UPDATE incidents SET work_order_id = %s WHERE id = %s", (order_id, inc.id))
    record(
        conn,
        order_id,
        "created",
        actor="dispatch",
        now=now,
        to_state="created",
        detail={"incident": inc.id, "list_version": list_version, "responsible": row.responsible},
    )
    conn.execute(
        "UPDATE work_orders SET state = 'dispatched', dispatched_at = %s, updated_at = %s"
        " WHERE id = %s",
        (now, now, order_id),
    )
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
    notify.tell(
        conn,
        org=assignee,
        channels=row.channels,
        event="workorder.dispatched",
        payload=payload,
        now=now,
        order_id=order_id,
    )
    return order_id


def _recurrence(conn: Conn, inc: _Incident, *, now: dt.datetime, out: Dispatched) -> bool:
    """Join the incident to a live order on one of its devices; reopen it if resolved."""
    found = conn.execute(
        "SELECT o.id, o.state, o.verify_until, o.assignee, o.list_row FROM work_orders o"
        " WHERE o.estate_code = %s AND o.building_code IS NOT DISTINCT FROM %s"
        " AND o.category = %s AND o.state NOT IN ('closed', 'cancelled')"
        " AND EXISTS (SELECT 1 FROM incidents i JOIN alerts a ON a.incident_id = i.id"
        "   WHERE i.work_order_id = o.id AND a.device_id IN"
        "   (SELECT device_id FROM alerts WHERE incident_id = %s))"
        " ORDER BY o.id DESC LIMIT 1 FOR UPDATE OF o",
        (inc.estate, inc.building, inc.category, inc.id),
    ).fetchone()
    if found is None:
        return False
    order_id, state, verify_until, assignee, list_row = found
    if state == "verifying" and verify_until is not None and inc.opened_at >= verify_until:
        # it had stayed normal for the whole window before this began: closed then
        close(conn, order_id, at=verify_until)
        return False
    conn.execute("UPDATE incidents SET work_order_id = %s WHERE id = %s", (order_id, inc.id))
    out.recurrences.append(order_id)
    if state not in ("resolved", "verifying"):
        record(
            conn,
            order_id,
            "recurrence",
            actor="dispatch",
            now=now,
            detail={"incident": inc.id, "state": state},
        )
        return True
    d = Row.model_validate(list_row).deadlines
    assert d is not None
    conn.execute(
        "UPDATE work_orders SET state = 'reopened', cycle = cycle + 1,"
        " reopen_count = reopen_count + 1, escalation_level = 0,"
        " acknowledged_at = NULL, arrived_at = NULL, resolved_at = NULL, verify_until = NULL,"
        " ack_due = %s, arrive_due = %s, resolve_due = %s, updated_at = %s WHERE id = %s",
        (_due(now, d.acknowledge_s), _due(now, d.arrive_s), _due(now, d.resolve_s), now, order_id),
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


def close(conn: Conn, order_id: int, *, at: dt.datetime) -> None:
    conn.execute(
        "UPDATE work_orders SET state = 'closed', closed_at = %s, updated_at = %s WHERE id = %s",
        (at, at, order_id),
    )
    record(
        conn,
        order_id,
        "closed",
        actor="supervise",
        now=at,
        from_state="verifying",
        to_state="closed",
        detail={"verified_normal_until": at.isoformat(timespec="seconds")},
    )


def start_verification(conn: Conn, order_id: int, now: dt.datetime) -> bool:
    """A resolved order whose incidents are all resolved starts its look-back window,
    counted from the later of the resolution and the last alert clearing."""
    row = conn.execute(
        "SELECT o.state, o.verify_s, o.resolved_at,"
        " (SELECT max(resolved_at) FROM incidents WHERE work_order_id = o.id),"
        " (SELECT count(*) FROM incidents WHERE work_order_id = o.id AND state = 'open')"
        " FROM work_orders o WHERE o.id = %s FOR UPDATE",
        (order_id,),
    ).fetchone()
    assert row is not None
    state, verify_s, resolved_at, normal_since, still_open = row
    if state != "resolved" or still_open:
        return False
    start = resolved_at or now
    if normal_since is not None and normal_since > start:
        start = normal_since
    until = start + dt.timedelta(seconds=verify_s)
    conn.execute(
        "UPDATE work_orders SET state = 'verifying', verify_until = %s, updated_at = %s"
        " WHERE id = %s",
        (until, now, order_id),
    )
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
        row = conn.execute(
            "SELECT state, assignee, list_row FROM work_orders WHERE id = %s FOR UPDATE",
            (order_id,),
        ).fetchone()
        if row is None:
            raise OrderActionError(f"no work order {order_id}")
        state, assignee, list_row = row
        if state not in allowed:
            raise OrderActionError(
                f"work order {order_id} is {state}: cannot {action} it"
                f" (only when {', '.join(allowed)})"
            )
        if action == "cancel" and not (note and note.strip()):
            raise OrderActionError("cancelling needs a reason")
        conn.execute(
            "UPDATE work_orders SET state = %(to)s, updated_at = %(now)s,"
            " acknowledged_at = CASE WHEN %(act)s IN ('acknowledge', 'arrive', 'resolve')"
            "   THEN coalesce(acknowledged_at, %(now)s) ELSE acknowledged_at END,"
            " arrived_at = CASE WHEN %(act)s IN ('arrive', 'resolve')"
            "   THEN coalesce(arrived_at, %(now)s) ELSE arrived_at END,"
            " resolved_at = CASE WHEN %(act)s = 'resolve' THEN %(now)s ELSE resolved_at END,"
            " cancelled_at = CASE WHEN %(act)s = 'cancel' THEN %(now)s END,"
            " cancel_reason = CASE WHEN %(act)s = 'cancel' THEN %(note)s END"
            " WHERE id = %(id)s",
            {"to": to, "act": action, "now": now, "note": note, "id": order_id},
        )
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
        if action == "resolve" and start_verification(conn, order_id, now):
            to = "verifying"
    return to


def fire_verdict(
    conn: Conn, alert_id: int, *, actor: str, now: dt.datetime, false_alarm_cause: str | None
) -> None:
    """The control room's verdict on a fire alarm, and its effect on the order: a
    confirmation acknowledges it (GB 25201 §5.3: confirmed in time), a false alarm that
    leaves the incident with no open alert cancels it with the cause."""
    store.confirm_fire(conn, alert_id, actor=actor, now=now, false_alarm_cause=false_alarm_cause)
    row = conn.execute(
        "SELECT o.id, o.state, i.state FROM alerts a JOIN incidents i ON i.id = a.incident_id"
        " JOIN work_orders o ON o.id = i.work_order_id WHERE a.id = %s",
        (alert_id,),
    ).fetchone()
    if row is None:
        return  # not dispatched (yet): dispatch sees the verdict in the alert's state
    order_id, state, incident_state = row
    if false_alarm_cause is None:
        if state in ACTIONS["acknowledge"][1]:
            act(conn, order_id, "acknowledge", actor=actor, now=now, note="fire alarm confirmed")
    elif incident_state == "resolved" and state in ("dispatched", "acknowledged", "reopened"):
        act(
            conn, order_id, "cancel", actor=actor, now=now, note=f"false alarm: {false_alarm_cause}"
        )
