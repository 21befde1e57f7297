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
    group_key: str = ""

    @property
    def life_safety(self) -> bool:
        return self.group_key != ""


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


def _decide(version: Version, parties: PartyDirectory, inc: _Incident, lead: _Lead) -> Row | Gap:
    return version.rows.decide(
        estate=inc.estate,
        building=inc.building,
        kind=inc.category,
        alert=lead.alert,
        severity=Severity.parse(lead.severity),
        areas=parties.areas_of(inc.estate),
    )


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
        "SELECT id, work_order_id IS NOT NULL FROM incidents WHERE state = 'open'"
        " AND (dispatch_checked_at IS NULL OR updated_at > dispatch_checked_at)"
        # life safety first: in a storm the trapped and the fires go out before the rest
        " ORDER BY life_safety DESC, id"
    ).fetchall()
    for iid, has_order in waiting:
        # one transaction each: in a storm the first order goes out at once, not after
        # the last one is decided
        with conn.transaction():
            r = conn.execute(
                "SELECT id, estate_code, building_code, category, opened_at, group_key"
                " FROM incidents WHERE id = %s AND state = 'open'"
                " AND (work_order_id IS NULL) = %s FOR UPDATE SKIP LOCKED",
                (iid, not has_order),
            ).fetchone()
            if r is None:
                continue  # another supervisor has it, or it changed meanwhile
            inc = _Incident(int(r[0]), r[1], r[2], r[3], r[4], r[5])
            if has_order:
                _maybe_redispatch(conn, inc, now=now, version=version, parties=parties)
            else:
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
    informed: list[tuple[str, str | None]],
    now: dt.datetime,
) -> int:
    d = row.deadlines
    assert d is not None  # a dispatching row has them (checked by the model)
    alarm = lead.alarm_at(now)
    roles = [row.responsible] if row.responsible in PARTIES else []
    roles += [p for p, org in informed if org is not None and p in PARTIES and p not in roles]

    got = conn.execute(
        "INSERT INTO work_orders (incident_id, estate_code, building_code, category,"
        " device_code, alert_type, severity, lead_severity, state, assignee, chain,"
        " notified_roles, list_version, list_row, ack_due, arrive_due, resolve_due, verify_s,"
        " alarm_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
        " 'created', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            inc.id,
            inc.estate,
            inc.building,
            inc.category,
            lead.device,
            lead.alert,
            lead.severity,
            lead.severity,
            assignee,
            Jsonb(chain),
            roles,
            list_version,
            Jsonb(row.model_dump(mode="json")),
            _due(alarm, d.acknowledge_s),
            _due(alarm, d.arrive_s),
            _due(alarm, d.resolve_s),
            d.verify_s,
            alarm,
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
        detail={
            "incident": inc.id,
            "list_version": list_version,
            "responsible": row.responsible,
            "alarm_at": alarm.isoformat(timespec="seconds"),
        },
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


def _recurrence(conn: Conn, inc: _Incident, *, now: dt.datetime, out: Dispatched) -> bool:
    """Join the incident to a live order on one of its devices; reopen it if resolved.
    Only orders of the same kind of incident qualify: a life-safety incident joins only
    the order of the same device and alert type, a grouped one only a grouped one."""
    found = conn.execute(
        "SELECT o.id, o.state, o.verify_until, o.assignee, o.list_row FROM work_orders o"
        " JOIN incidents first ON first.id = o.incident_id"
        " WHERE o.estate_code = %s AND o.building_code IS NOT DISTINCT FROM %s"
        " AND o.category = %s AND o.state NOT IN ('closed', 'cancelled')"
        " AND first.group_key = %s"
        " AND EXISTS (SELECT 1 FROM incidents i JOIN alerts a ON a.incident_id = i.id"
        "   WHERE i.work_order_id = o.id AND a.device_id IN"
        "   (SELECT device_id FROM alerts WHERE incident_id = %s))"
        " ORDER BY o.id DESC LIMIT 1 FOR UPDATE OF o",
        (inc.estate, inc.building, inc.category, inc.group_key, inc.id),
    ).fetchone()
    if found is None:
        return False
    order_id, state, verify_until, assignee, list_row = found
    if state == "verifying" and verify_until is not None and inc.opened_at >= verify_until:
        # it had stayed normal for the whole window before this began: closed then
        close(conn, order_id, at=verify_until)
        return False
    if inc.life_safety and state in ("resolved", "verifying"):
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
    lead = _lead(conn, inc.id)
    alarm = now if lead is None else lead.alarm_at(now)
    conn.execute(
        "UPDATE work_orders SET state = 'reopened', cycle = cycle + 1,"
        " reopen_count = reopen_count + 1, escalation_level = 0, alarm_at = %s,"
        " acknowledged_at = NULL, arrived_at = NULL, resolved_at = NULL, verify_until = NULL,"
        " ack_due = %s, arrive_due = %s, resolve_due = %s, updated_at = %s WHERE id = %s",
        (
            alarm,
            _due(alarm, d.acknowledge_s),
            _due(alarm, d.arrive_s),
            _due(alarm, d.resolve_s),
            now,
            order_id,
        ),
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
    from_state: str = "verifying",
    detail: Mapping[str, Any] | None = None,
) -> None:
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
        from_state=from_state,
        to_state="closed",
        detail=detail or {"verified_normal_until": at.isoformat(timespec="seconds")},
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
        if action == "cancel" and _life_safety_open(conn, order_id):
            # every open life-safety alert keeps a live order: the alarm ends first
            raise OrderActionError(
                f"work order {order_id} covers an open life-safety alert (trapped, fire, "
                "flooding): resolve it, or decide the fire alarm, instead of cancelling"
            )
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
        if action == "resolve":
            # the rescue is over: what only a person could close is closed now
            store.close_rescued(conn, order_id, actor=actor, now=now)
            if start_verification(conn, order_id, now):
                to = "verifying"
    return to


def _life_safety_open(conn: Conn, order_id: int) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM alerts a JOIN incidents i ON i.id = a.incident_id"
            " WHERE i.work_order_id = %s AND a.state = 'open' AND a.life_safety LIMIT 1",
            (order_id,),
        ).fetchone()
        is not None
    )


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
        report_confirmed_fires(conn, now, PartyDirectory(conn), order_id=order_id)
    elif incident_state == "resolved" and state in ("dispatched", "acknowledged", "reopened"):
        act(
            conn, order_id, "cancel", actor=actor, now=now, note=f"false alarm: {false_alarm_cause}"
        )


def report_confirmed_fires(
    conn: Conn, now: dt.datetime, parties: PartyDirectory, *, order_id: int | None = None
) -> list[int]:
    """Every live order with a confirmed fire alarm not yet reported: its row's
    ``on_confirmed`` parties (the fire brigade, 119; the estate's duty roster) are told
    now, over every channel of the row, whatever the deadlines say. Returns the orders."""
    rows = conn.execute(
        "SELECT o.id, o.estate_code, o.list_row, o.notified_roles, o.assignee, f.alert,"
        " f.maintenance_code FROM work_orders o CROSS JOIN LATERAL"
        " (SELECT a.id AS alert, d.maintenance_code FROM incidents i"
        "   JOIN alerts a ON a.incident_id = i.id JOIN devices d ON d.id = a.device_id"
        "   WHERE i.work_order_id = o.id AND a.confirmation = 'confirmed'"
        "   ORDER BY a.id LIMIT 1) f"
        " WHERE o.state NOT IN ('closed', 'cancelled')"
        " AND (%(order)s::bigint IS NULL OR o.id = %(order)s)"
        " AND NOT EXISTS (SELECT 1 FROM work_order_events e WHERE e.order_id = o.id"
        "   AND e.change = 'fire_confirmed')"
        " ORDER BY o.id FOR UPDATE OF o",
        {"order": order_id},
    ).fetchall()
    out = []
    for oid, estate, list_row, notified, assignee, alert_id, maint in rows:
        row = Row.model_validate(list_row)
        found = parties.parties(estate, maint)
        told = [(p, found.resolve(p)) for p in (row.on_confirmed or ["fire_brigade"])]
        roles = [*notified, *(p for p, _ in told if p in PARTIES and p not in notified)]
        conn.execute(
            "UPDATE work_orders SET notified_roles = %s, updated_at = %s WHERE id = %s",
            (roles, now, oid),
        )
        detail = {"alert": int(alert_id), "told": [{"party": p, "org": o} for p, o in told]}
        payload = record(conn, int(oid), "fire_confirmed", actor="dispatch", now=now, detail=detail)
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
                order_id=int(oid),
            )
        log.warning("confirmed fire, order %d: told %s", oid, [o for _, o in told])
        out.append(int(oid))
    return out


def _maybe_redispatch(
    conn: Conn, inc: _Incident, *, now: dt.datetime, version: Version, parties: PartyDirectory
) -> None:
    """A grouped incident whose lead alert is now more severe than the one its order was
    dispatched for: the order goes to the party and deadlines of the more severe row."""
    lead = _lead(conn, inc.id)
    if lead is None:
        return
    r = conn.execute(
        "SELECT o.id, o.state, o.lead_severity, o.list_row, o.assignee, o.alert_type"
        " FROM incidents i JOIN work_orders o ON o.id = i.work_order_id WHERE i.id = %s"
        " FOR UPDATE OF o",
        (inc.id,),
    ).fetchone()
    if r is None:
        return
    order_id, state, lead_severity, list_row, old_assignee, old_alert = r
    if state in ("closed", "cancelled") or Severity.parse(lead.severity) <= Severity.parse(
        lead_severity or "info"
    ):
        return
    row = _decide(version, parties, inc, lead)
    if isinstance(row, Gap) or not row.dispatch or row.model_dump(mode="json") == list_row:
        conn.execute(
            "UPDATE work_orders SET lead_severity = %s, updated_at = %s WHERE id = %s",
            (lead.severity, now, order_id),
        )
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
    conn.execute(
        "UPDATE work_orders SET state = 'dispatched', cycle = cycle + 1, escalation_level = 0,"
        " assignee = %s, chain = %s, list_version = %s, list_row = %s, alert_type = %s,"
        " device_code = %s, severity = %s, lead_severity = %s, alarm_at = %s,"
        " acknowledged_at = NULL, arrived_at = NULL, resolved_at = NULL, verify_until = NULL,"
        " ack_due = %s, arrive_due = %s, resolve_due = %s, verify_s = %s, updated_at = %s"
        " WHERE id = %s",
        (
            assignee,
            Jsonb(chain),
            version.version,
            Jsonb(row.model_dump(mode="json")),
            lead.alert,
            lead.device,
            lead.severity,
            lead.severity,
            alarm,
            _due(alarm, d.acknowledge_s),
            _due(alarm, d.arrive_s),
            _due(alarm, d.resolve_s),
            d.verify_s,
            now,
            order_id,
        ),
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
