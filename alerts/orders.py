"""Work orders (工单) as stored: the one module with the SQL of ``work_orders``,
``work_order_events`` and ``work_order_breaches``.

``OrderState`` is the one list of an order's states: the table's CHECK constraint, the API's
schema and the console's labels are tested against it (``tests/alerts/test_orders.py``).
Dispatch and supervision decide what happens to an order; this module reads and writes
it, and streams every change (``record``). Rows come back as typed objects
(``psycopg.rows.class_row``), never by position. Callers hold the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from psycopg import sql
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from alerts import notify
from estate.db import Conn


class OrderState(StrEnum):
    """An order's states; see ``alerts.dispatch`` for the transitions."""

    CREATED = "created"
    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    VERIFYING = "verifying"
    CLOSED = "closed"
    REOPENED = "reopened"
    CANCELLED = "cancelled"


DONE: tuple[OrderState, ...] = (OrderState.CLOSED, OrderState.CANCELLED)
LIVE: tuple[OrderState, ...] = tuple(s for s in OrderState if s not in DONE)
# the due column of each deadline
DUE_COLUMN: Mapping[str, str] = {
    "acknowledge": "ack_due",
    "arrive": "arrive_due",
    "resolve": "resolve_due",
}

COLUMNS = (
    "id, incident_id, estate_code, building_code, category, device_code, alert_type,"
    " severity, state, assignee, chain, escalation_level, notified_roles, list_version,"
    " cycle, reopen_count, ack_due, arrive_due, resolve_due, verify_s, created_at,"
    " dispatched_at, acknowledged_at, arrived_at, resolved_at, verify_until, closed_at,"
    " cancelled_at, cancel_reason, updated_at"
)
_PAYLOAD = (
    "id, state, estate_code AS estate, building_code AS building, category,"
    " device_code AS device, alert_type AS alert, severity, assignee, escalation_level, cycle,"
    " ack_due, arrive_due, resolve_due, verify_until, updated_at AS at"
)


@dataclass(frozen=True)
class Dues:
    """When an order must be acknowledged, reached and resolved (None: no such deadline)."""

    ack: dt.datetime | None
    arrive: dt.datetime | None
    resolve: dt.datetime | None

    @classmethod
    def after(
        cls, alarm: dt.datetime, *, ack_s: float | None, arrive_s: float | None, resolve_s: float
    ) -> Dues:
        """Deadlines counted from the alarm."""

        def due(s: float | None) -> dt.datetime | None:
            return None if s is None else alarm + dt.timedelta(seconds=s)

        return cls(due(ack_s), due(arrive_s), due(resolve_s))


# ------------------------------------------------------------------------- events


def payload(conn: Conn, order_id: int) -> dict[str, Any]:
    """The order as streamed and notified: its main fields, times as ISO 8601 text."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {_PAYLOAD} FROM work_orders WHERE id = %s", (order_id,))  # noqa: S608
        found = row.fetchone()
    assert found is not None
    return {
        k: v.isoformat(timespec="seconds") if isinstance(v, dt.datetime) else v
        for k, v in found.items()
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
    body = payload(conn, order_id)
    notify.stream(
        conn,
        topic=notify.order_topic(body["estate"], order_id),
        event=f"workorder.{change}",
        payload={**body, "actor": actor, **({"detail": dict(detail)} if detail else {})},
        now=now,
        order_id=order_id,
    )
    return body


# ------------------------------------------------------------------------- writes


def create(
    conn: Conn,
    *,
    incident_id: int,
    estate: str,
    building: str | None,
    category: str,
    device: str,
    alert: str,
    severity: str,
    assignee: str | None,
    chain: list[dict[str, Any]],
    notified_roles: list[str],
    list_version: int,
    list_row: Mapping[str, Any],
    dues: Dues,
    verify_s: float,
    alarm: dt.datetime,
    now: dt.datetime,
) -> int:
    """A new order in state ``created`` for ``incident_id`` (the caller links them)."""
    got = conn.execute(
        "INSERT INTO work_orders (incident_id, estate_code, building_code, category,"
        " device_code, alert_type, severity, lead_severity, state, assignee, chain,"
        " notified_roles, list_version, list_row, ack_due, arrive_due, resolve_due, verify_s,"
        " alarm_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
        " 'created', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            incident_id, estate, building, category, device, alert, severity, severity,
            assignee, Jsonb(chain), notified_roles, list_version, Jsonb(dict(list_row)),
            dues.ack, dues.arrive, dues.resolve, verify_s, alarm, now, now,
        ),
    ).fetchone()  # fmt: skip
    assert got is not None
    return int(got[0])


def mark_dispatched(conn: Conn, order_id: int, now: dt.datetime) -> None:
    """``created`` → ``dispatched``."""
    conn.execute(
        "UPDATE work_orders SET state = 'dispatched', dispatched_at = %s, updated_at = %s"
        " WHERE id = %s",
        (now, now, order_id),
    )


def reopen(conn: Conn, order_id: int, *, alarm: dt.datetime, dues: Dues, now: dt.datetime) -> None:
    """A recurrence after resolution: a new cycle with deadlines from the new alarm."""
    conn.execute(
        "UPDATE work_orders SET state = 'reopened', cycle = cycle + 1,"
        " reopen_count = reopen_count + 1, escalation_level = 0, alarm_at = %s,"
        " acknowledged_at = NULL, arrived_at = NULL, resolved_at = NULL, verify_until = NULL,"
        " ack_due = %s, arrive_due = %s, resolve_due = %s, updated_at = %s WHERE id = %s",
        (alarm, dues.ack, dues.arrive, dues.resolve, now, order_id),
    )


def redispatch(
    conn: Conn,
    order_id: int,
    *,
    assignee: str | None,
    chain: list[dict[str, Any]],
    list_version: int,
    list_row: Mapping[str, Any],
    alert: str,
    device: str,
    severity: str,
    alarm: dt.datetime,
    dues: Dues,
    verify_s: float,
    now: dt.datetime,
) -> None:
    """The order goes to another party under another row: a new cycle, back to
    ``dispatched``."""
    conn.execute(
        "UPDATE work_orders SET state = 'dispatched', cycle = cycle + 1, escalation_level = 0,"
        " assignee = %s, chain = %s, list_version = %s, list_row = %s, alert_type = %s,"
        " device_code = %s, severity = %s, lead_severity = %s, alarm_at = %s,"
        " acknowledged_at = NULL, arrived_at = NULL, resolved_at = NULL, verify_until = NULL,"
        " ack_due = %s, arrive_due = %s, resolve_due = %s, verify_s = %s, updated_at = %s"
        " WHERE id = %s",
        (
            assignee, Jsonb(chain), list_version, Jsonb(dict(list_row)), alert, device,
            severity, severity, alarm, dues.ack, dues.arrive, dues.resolve, verify_s, now,
            order_id,
        ),
    )  # fmt: skip


def set_lead_severity(conn: Conn, order_id: int, severity: str, now: dt.datetime) -> None:
    """Remember the severity the order was last looked at for (no re-dispatch needed)."""
    conn.execute(
        "UPDATE work_orders SET lead_severity = %s, updated_at = %s WHERE id = %s",
        (severity, now, order_id),
    )


def set_notified(conn: Conn, order_id: int, roles: Sequence[str], now: dt.datetime) -> None:
    """The parties (roles) told of the order: they may see it."""
    conn.execute(
        "UPDATE work_orders SET notified_roles = %s, updated_at = %s WHERE id = %s",
        (list(roles), now, order_id),
    )


def mark_closed(conn: Conn, order_id: int, at: dt.datetime) -> None:
    """→ ``closed``."""
    conn.execute(
        "UPDATE work_orders SET state = 'closed', closed_at = %s, updated_at = %s WHERE id = %s",
        (at, at, order_id),
    )


def mark_verifying(conn: Conn, order_id: int, until: dt.datetime, now: dt.datetime) -> None:
    """``resolved`` → ``verifying`` until ``until``."""
    conn.execute(
        "UPDATE work_orders SET state = 'verifying', verify_until = %s, updated_at = %s"
        " WHERE id = %s",
        (until, now, order_id),
    )


def apply_step(
    conn: Conn, order_id: int, action: str, *, to: OrderState, now: dt.datetime, note: str | None
) -> None:
    """A person's step: arriving implies acknowledging and resolving implies both (the
    skipped times are set to the same moment, so response times stay defined)."""
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
        {"to": str(to), "act": action, "now": now, "note": note, "id": order_id},
    )


def escalate(
    conn: Conn,
    order_id: int,
    *,
    level: int,
    severity: str,
    notified_roles: Sequence[str],
    now: dt.datetime,
) -> None:
    """A missed deadline raised the order's escalation level and severity."""
    conn.execute(
        "UPDATE work_orders SET escalation_level = %s, severity = %s, updated_at = %s,"
        " notified_roles = %s WHERE id = %s",
        (level, severity, now, list(notified_roles), order_id),
    )


def add_breach(
    conn: Conn,
    order_id: int,
    *,
    cycle: int,
    deadline: str,
    due: dt.datetime,
    now: dt.datetime,
    escalated_to: str | None,
) -> None:
    """A missed deadline, once per order, cycle and deadline."""
    conn.execute(
        "INSERT INTO work_order_breaches (order_id, cycle, deadline, due_at, breached_at,"
        " escalated_to) VALUES (%s, %s, %s, %s, %s, %s)",
        (order_id, cycle, deadline, due, now, escalated_to),
    )


# ------------------------------------------------------------------------- reads


class _Stated:
    """Rows with a ``state`` column: the database's text becomes the ``OrderState``."""

    state: OrderState

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", OrderState(self.state))


@dataclass(frozen=True)
class Locked(_Stated):
    """An order locked for a change (``FOR UPDATE``)."""

    id: int
    state: OrderState
    assignee: str | None
    list_row: dict[str, Any]


def lock(conn: Conn, order_id: int) -> Locked | None:
    """The order, locked until the transaction ends; None if there is none."""
    with conn.cursor(row_factory=class_row(Locked)) as cur:
        return cur.execute(
            "SELECT id, state, assignee, list_row FROM work_orders WHERE id = %s FOR UPDATE",
            (order_id,),
        ).fetchone()


@dataclass(frozen=True)
class Recurring(_Stated):
    """A live order a new incident may join."""

    id: int
    state: OrderState
    verify_until: dt.datetime | None
    assignee: str | None
    list_row: dict[str, Any]


def live_on_same_devices(
    conn: Conn,
    *,
    incident_id: int,
    estate: str,
    building: str | None,
    category: str,
    group_key: str,
) -> Recurring | None:
    """The newest live order of the same estate, building, category and kind of incident
    (``group_key``) covering one of the incident's devices, locked."""
    with conn.cursor(row_factory=class_row(Recurring)) as cur:
        return cur.execute(
            "SELECT o.id, o.state, o.verify_until, o.assignee, o.list_row FROM work_orders o"
            " JOIN incidents first ON first.id = o.incident_id"
            " WHERE o.estate_code = %s AND o.building_code IS NOT DISTINCT FROM %s"
            " AND o.category = %s AND o.state NOT IN ('closed', 'cancelled')"
            " AND first.group_key = %s"
            " AND EXISTS (SELECT 1 FROM incidents i JOIN alerts a ON a.incident_id = i.id"
            "   WHERE i.work_order_id = o.id AND a.device_id IN"
            "   (SELECT device_id FROM alerts WHERE incident_id = %s))"
            " ORDER BY o.id DESC LIMIT 1 FOR UPDATE OF o",
            (estate, building, category, group_key, incident_id),
        ).fetchone()


@dataclass(frozen=True)
class Verification(_Stated):
    """What decides whether a resolved order starts its look-back window."""

    state: OrderState
    verify_s: float
    resolved_at: dt.datetime | None
    normal_since: dt.datetime | None  # the last of its incidents resolved
    still_open: int  # its incidents still open


def verification(conn: Conn, order_id: int) -> Verification:
    """Locked for the change."""
    with conn.cursor(row_factory=class_row(Verification)) as cur:
        found = cur.execute(
            "SELECT o.state, o.verify_s, o.resolved_at,"
            " (SELECT max(resolved_at) FROM incidents WHERE work_order_id = o.id)"
            "   AS normal_since,"
            " (SELECT count(*) FROM incidents WHERE work_order_id = o.id AND state = 'open')"
            "   AS still_open"
            " FROM work_orders o WHERE o.id = %s FOR UPDATE",
            (order_id,),
        ).fetchone()
    assert found is not None
    return found


@dataclass(frozen=True)
class OfAlert(_Stated):
    """The order covering an alert's incident."""

    id: int
    state: OrderState
    incident_state: str


def of_alert(conn: Conn, alert_id: int) -> OfAlert | None:
    """None when the alert's incident has no order (yet)."""
    with conn.cursor(row_factory=class_row(OfAlert)) as cur:
        return cur.execute(
            "SELECT o.id, o.state, i.state AS incident_state FROM alerts a"
            " JOIN incidents i ON i.id = a.incident_id"
            " JOIN work_orders o ON o.id = i.work_order_id WHERE a.id = %s",
            (alert_id,),
        ).fetchone()


@dataclass(frozen=True)
class OfIncident(_Stated):
    """The order covering an incident, as re-dispatch needs it (locked)."""

    id: int
    state: OrderState
    lead_severity: str | None
    list_row: dict[str, Any]
    assignee: str | None
    alert_type: str


def of_incident(conn: Conn, incident_id: int) -> OfIncident | None:
    """Locked until the transaction ends."""
    with conn.cursor(row_factory=class_row(OfIncident)) as cur:
        return cur.execute(
            "SELECT o.id, o.state, o.lead_severity, o.list_row, o.assignee, o.alert_type"
            " FROM incidents i JOIN work_orders o ON o.id = i.work_order_id WHERE i.id = %s"
            " FOR UPDATE OF o",
            (incident_id,),
        ).fetchone()


def covers_open_life_safety(conn: Conn, order_id: int) -> bool:
    """Whether one of the order's alerts is an open life-safety alert."""
    return (
        conn.execute(
            "SELECT 1 FROM alerts a JOIN incidents i ON i.id = a.incident_id"
            " WHERE i.work_order_id = %s AND a.state = 'open' AND a.life_safety LIMIT 1",
            (order_id,),
        ).fetchone()
        is not None
    )


@dataclass(frozen=True)
class ConfirmedFire:
    """A live order with a confirmed fire alarm not yet reported (locked)."""

    id: int
    estate_code: str
    list_row: dict[str, Any]
    notified_roles: list[str]
    assignee: str | None
    alert: int
    maintenance_code: str | None


def unreported_fires(conn: Conn, order_id: int | None = None) -> list[ConfirmedFire]:
    """Every such order (or only ``order_id``), oldest first."""
    with conn.cursor(row_factory=class_row(ConfirmedFire)) as cur:
        return cur.execute(
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


def overdue(conn: Conn, deadline: str, states: Sequence[str], now: dt.datetime) -> list[int]:
    """Orders in ``states`` past their ``deadline`` and not yet breached for it in this
    cycle, locked (others' locks skipped)."""
    q = sql.SQL(
        "SELECT o.id FROM work_orders o WHERE o.state = ANY(%s) AND o.{} <= %s"
        " AND NOT EXISTS (SELECT 1 FROM work_order_breaches b WHERE b.order_id = o.id"
        " AND b.cycle = o.cycle AND b.deadline = %s)"
        " ORDER BY o.id FOR UPDATE OF o SKIP LOCKED"
    ).format(sql.Identifier(DUE_COLUMN[deadline]))
    return [int(r[0]) for r in conn.execute(q, (list(states), now, deadline)).fetchall()]


@dataclass(frozen=True)
class Breaching:
    """What escalating a missed deadline needs to know of the order."""

    cycle: int
    due: dt.datetime
    chain: list[dict[str, Any]]
    escalation_level: int
    severity: str
    list_row: dict[str, Any]
    assignee: str | None
    notified_roles: list[str]


def breaching(conn: Conn, order_id: int, deadline: str) -> Breaching:
    """The order as of its missed ``deadline``."""
    q = sql.SQL(
        "SELECT cycle, {} AS due, chain, escalation_level, severity, list_row, assignee,"
        " notified_roles FROM work_orders WHERE id = %s"
    ).format(sql.Identifier(DUE_COLUMN[deadline]))
    with conn.cursor(row_factory=class_row(Breaching)) as cur:
        found = cur.execute(q, (order_id,)).fetchone()
    assert found is not None
    return found


def resolved_and_normal(conn: Conn) -> list[int]:
    """Resolved orders none of whose incidents is open, locked (others' skipped)."""
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM work_orders o WHERE state = 'resolved' AND NOT EXISTS"
            " (SELECT 1 FROM incidents i WHERE i.work_order_id = o.id AND i.state = 'open')"
            " ORDER BY id FOR UPDATE SKIP LOCKED"
        ).fetchall()
    ]


def verified(conn: Conn, now: dt.datetime) -> list[tuple[int, dt.datetime]]:
    """Orders whose look-back window has passed: (id, end of the window), locked."""
    return [
        (int(r[0]), r[1])
        for r in conn.execute(
            "SELECT id, verify_until FROM work_orders WHERE state = 'verifying'"
            " AND verify_until <= %s ORDER BY id FOR UPDATE SKIP LOCKED",
            (now,),
        ).fetchall()
    ]


@dataclass(frozen=True)
class Line(_Stated):
    """One order as the command line lists it."""

    id: int
    created_at: dt.datetime
    severity: str
    state: OrderState
    alert_type: str
    estate_code: str
    building_code: str | None
    device_code: str
    assignee: str | None
    escalation_level: int
    ack_due: dt.datetime | None
    arrive_due: dt.datetime | None
    resolve_due: dt.datetime | None


def lines(conn: Conn, *, include_done: bool, estate: str | None, limit: int) -> list[Line]:
    """Newest first: live orders, or all with ``include_done``."""
    with conn.cursor(row_factory=class_row(Line)) as cur:
        return cur.execute(
            "SELECT id, created_at, severity, state, alert_type, estate_code, building_code,"
            " device_code, assignee, escalation_level, ack_due, arrive_due, resolve_due"
            " FROM work_orders WHERE (%(all)s OR state NOT IN ('closed', 'cancelled'))"
            " AND (%(e)s::text IS NULL OR estate_code = %(e)s) ORDER BY id DESC LIMIT %(n)s",
            {"all": include_done, "e": estate, "n": limit},
        ).fetchall()


def visible(conn: Conn, order_id: int, scope: sql.Composable) -> bool:
    """Whether the order exists within ``scope`` (a condition over ``work_orders``)."""
    q = sql.SQL("SELECT 1 FROM work_orders WHERE id = %s AND {}").format(scope)
    return conn.execute(q, (order_id,)).fetchone() is not None


def find(conn: Conn, order_id: int, scope: sql.Composable) -> dict[str, Any] | None:
    """The order's ``COLUMNS`` within ``scope``; None when absent or out of scope."""
    q = sql.SQL("SELECT {} FROM work_orders WHERE id = %s AND {}").format(sql.SQL(COLUMNS), scope)
    with conn.cursor(row_factory=dict_row) as cur:
        found: dict[str, Any] | None = cur.execute(q, (order_id,)).fetchone()
    return found


def search(
    conn: Conn,
    scope: sql.Composable,
    *,
    state: str,
    estate: str | None,
    assignee: str | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Orders within ``scope`` newest first; ``state`` is 'live', 'all' or a ``OrderState``."""
    q = sql.SQL(
        "SELECT {} FROM work_orders WHERE {}"
        " AND (%(state)s = 'all' OR (%(state)s = 'live'"
        "      AND state NOT IN ('closed', 'cancelled')) OR state = %(state)s)"
        " AND (%(estate)s::text IS NULL OR estate_code = %(estate)s)"
        " AND (%(assignee)s::text IS NULL OR assignee = %(assignee)s)"
        " AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)"
        " ORDER BY id DESC LIMIT %(limit)s"
    ).format(sql.SQL(COLUMNS), scope)
    params = {
        "state": state, "estate": estate, "assignee": assignee, "cursor": before_id,
        "limit": limit,
    }  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(q, params).fetchall())


def events(conn: Conn, order_id: int) -> list[dict[str, Any]]:
    """Every event of the order in order: at, change, from_state, to_state, actor, detail."""
    with conn.cursor(row_factory=dict_row) as cur:
        return list(
            cur.execute(
                "SELECT at, change, from_state, to_state, actor, detail FROM work_order_events"
                " WHERE order_id = %s ORDER BY at, id",
                (order_id,),
            ).fetchall()
        )


def breaches(conn: Conn, order_id: int) -> list[dict[str, Any]]:
    """Every missed deadline of the order: cycle, deadline, due_at, breached_at,
    escalated_to."""
    with conn.cursor(row_factory=dict_row) as cur:
        return list(
            cur.execute(
                "SELECT cycle, deadline, due_at, breached_at, escalated_to"
                " FROM work_order_breaches WHERE order_id = %s ORDER BY breached_at",
                (order_id,),
            ).fetchall()
        )
