"""Storing the judge's ops: alerts, their changes, incidents; loading what the judge needs.

``apply`` runs in one transaction: every op updates its alert (found by the partial unique
index on open (device, alert type)) and adds an ``alert_changes`` row; unmuted open alerts
join the open incident of their (estate, building, category), created on demand, whose
severity follows its open alerts; an incident with no open alert left is resolved. A
life-safety alert has an incident of its own (its group key names the device and the
alert type), so grouping can never put it behind another order.

A repeat (or a change of severity) whose alert a person has closed meanwhile (the rescue
resolved, the fire alarm decided) raises a new alert: an occurrence after resolution is
new, unacknowledged and counted, never folded into the old one. Returns what changed, as
``AlertEvent``s for publishing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from alerts.judge import Op, OpenAlert
from alerts.rules import Severity
from alerts.warn import DeviceInfo
from estate.db import Conn


def _ts(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


@dataclass(frozen=True)
class AlertEvent:
    """One change of one stored alert, as published and streamed."""

    alert_id: int
    change: str
    alert: str
    rule_id: str
    severity: str
    state: str
    confirmation: str | None
    muted_by: str | None
    flapping: bool
    incident_id: int | None
    estate: str
    building: str | None
    device: str
    kind: str
    at: dt.datetime
    life_safety: bool = False
    reraised: bool = False  # a new alert made for an op on one a person had closed
    device_id: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.alert_id,
            "change": self.change,
            "alert": self.alert,
            "rule": self.rule_id,
            "severity": self.severity,
            "state": self.state,
            "confirmation": self.confirmation,
            "muted_by": self.muted_by,
            "flapping": self.flapping,
            "incident": self.incident_id,
            "estate": self.estate,
            "building": self.building,
            "device": self.device,
            "kind": self.kind,
            "life_safety": self.life_safety,
            "at": self.at.isoformat(timespec="milliseconds"),
        }

    @property
    def topic(self) -> str:
        return f"estate/v1/{self.estate}/alerts/{self.kind}/{self.device}"


_RETURNING = sql.SQL(
    " RETURNING id, alert_type, rule_id, severity, state, confirmation, muted_by, flapping,"
    " incident_id, estate_code, building_code, device_code, kind, life_safety"
)
_RAISE = sql.SQL(
    "INSERT INTO alerts (device_id, rule_id, alert_type, severity, confirmation,"
    " muted_by, flapping, estate_code, building_code, device_code, kind,"
    " first_seen, last_seen, evidence, life_safety, rules, latched)"
    " VALUES (%(dev)s, %(rule)s, %(type)s, %(sev)s, %(conf)s, %(muted)s, %(flap)s,"
    " %(estate)s, %(building)s, %(code)s, %(kind)s, %(first)s, %(at)s, %(ev)s, %(ls)s,"
    " %(rules)s, %(latched)s)"
    # open already (the worker restarted between storing and checkpointing): count it
    " ON CONFLICT (device_id, alert_type) WHERE state = 'open' DO UPDATE SET"
    " occurrences = alerts.occurrences + 1, last_seen = EXCLUDED.last_seen{}"
).format(_RETURNING)
_SETS = {
    "repeat": "occurrences = occurrences + 1, last_seen = %(at)s, rules = %(rules)s,"
    " held_at = NULL, latched = %(latched)s",
    "severity": "severity = %(sev)s, last_seen = %(at)s, rules = %(rules)s, held_at = NULL,"
    " latched = %(latched)s",
    "rules": "severity = %(sev)s, rules = %(rules)s, latched = %(latched)s",
    "clear": "state = 'cleared', cleared_at = %(at)s, rules = %(rules)s",
    "hold": "held_at = %(at)s, rules = %(rules)s",
    "mute": "muted_by = %(muted)s",
    "unmute": "muted_by = NULL",
    "confirm": "confirmation = %(conf)s",
}
_UPDATE = {
    kind: sql.SQL(
        "UPDATE alerts SET {} WHERE device_id = %(dev)s AND alert_type = %(type)s"
        " AND state = 'open'{}"
    ).format(sql.SQL(sets), _RETURNING)
    for kind, sets in _SETS.items()
}
# a new occurrence of an alert a person closed meanwhile: a new alert, not nothing
_RAISES_AGAIN = frozenset({"repeat", "severity"})


DISPATCH_CHANNEL = "estate_dispatch"  # NOTIFY: an incident was opened or changed


def apply(conn: Conn, ops: Sequence[Op], devices: Mapping[int, DeviceInfo]) -> list[AlertEvent]:
    """Store ``ops`` in one transaction; return the alert events they made."""
    out: list[AlertEvent] = []
    with conn.transaction():
        for given in ops:
            op = given
            row = _one(conn, op, devices)
            reraised = False
            if row is None and op.kind in _RAISES_AGAIN and op.key[0] in devices:
                op = replace(
                    given,
                    kind="raise",
                    # a new fire alarm waits for its own confirmation
                    confirmation=None if op.confirmation is None else "to_be_confirmed",
                    first_evidence=op.at,
                )
                row, reraised = _one(conn, op, devices), True
            if row is None:
                continue
            alert_id = int(row[0])
            detail = dict(op.evidence)
            if op.confirmation is not None:
                detail["confirmation"] = op.confirmation
            if op.muted_by is not None:
                detail["muted_by"] = op.muted_by
            conn.execute(
                "INSERT INTO alert_changes (alert_id, at, change, severity, detail)"
                " VALUES (%s, %s, %s, %s, %s)",
                (alert_id, _ts(op.at), op.kind, str(op.severity), Jsonb(detail)),
            )
            incident = _incident(conn, alert_id, op, row)
            out.append(
                AlertEvent(
                    alert_id,
                    op.kind,
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    row[6],
                    bool(row[7]),
                    incident,
                    row[9],
                    row[10],
                    row[11],
                    row[12],
                    _ts(op.at),
                    bool(row[13]),
                    reraised,
                    op.key[0],
                )
            )
        if any(e.incident_id is not None for e in out):
            # wakes the supervisor at commit: dispatch does not wait for its next round
            conn.execute("SELECT pg_notify(%s, '')", (DISPATCH_CHANNEL,))
    return out


def _one(conn: Conn, op: Op, devices: Mapping[int, DeviceInfo]) -> tuple[Any, ...] | None:
    dev, alert = op.key
    p: dict[str, Any] = {
        "dev": dev,
        "type": alert,
        "rule": op.rule,
        "rules": list(op.rules),
        "at": _ts(op.at),
        "sev": str(op.severity),
        "muted": op.muted_by,
        "conf": op.confirmation,
        "latched": op.latched,
    }
    if op.kind != "raise":
        return conn.execute(_UPDATE[op.kind], p).fetchone()
    d = devices[dev]
    p.update(
        flap=op.flapping,
        estate=d.estate,
        building=d.building,
        code=d.code,
        kind=d.kind,
        ev=Jsonb(op.evidence),
        ls=op.life_safety,
        first=_ts(op.at if op.first_evidence is None else min(op.first_evidence, op.at)),
    )
    return conn.execute(_RAISE, p).fetchone()


def _incident(conn: Conn, alert_id: int, op: Op, row: tuple[Any, ...]) -> int | None:
    """Keep the alert's incident membership and the incident's severity and state."""
    incident: int | None = row[8]
    state, muted = row[4], row[6]
    at = _ts(op.at)
    if state == "open" and muted is None and incident is None:
        # a life-safety alert is an incident of its own: never behind another order
        group = f"{row[11]}/{row[1]}" if row[13] else ""
        got = conn.execute(
            "INSERT INTO incidents (estate_code, building_code, category, severity, opened_at,"
            " updated_at, group_key, life_safety) VALUES (%s, %s, %s, %s,"
            " (SELECT first_seen FROM alerts WHERE id = %s), %s, %s, %s)"
            " ON CONFLICT (estate_code, coalesce(building_code, ''), category, group_key)"
            " WHERE state = 'open' DO UPDATE SET updated_at = EXCLUDED.updated_at RETURNING id",
            (row[9], row[10], row[12], row[3], alert_id, at, group, bool(row[13])),
        ).fetchone()
        assert got is not None
        incident = int(got[0])
        conn.execute("UPDATE alerts SET incident_id = %s WHERE id = %s", (incident, alert_id))
    if incident is None:
        return None
    settle_incident(conn, incident, at)
    return incident


def settle_incident(conn: Conn, incident: int, at: dt.datetime) -> None:
    """The incident's severity is the highest of its open, unmuted alerts (of all its open
    ones while every one is muted); with no open alert left it is resolved. Muting never
    resolves it: when the silence ends, what it hid is still there."""
    left = conn.execute(
        "SELECT severity, muted_by IS NULL FROM alerts WHERE incident_id = %s AND state = 'open'",
        (incident,),
    ).fetchall()
    if left:
        loud = [s for s, unmuted in left if unmuted] or [s for s, _ in left]
        top = max((Severity.parse(s) for s in loud), default=Severity.INFO)
        conn.execute(
            "UPDATE incidents SET severity = %s, updated_at = %s WHERE id = %s",
            (str(top), at, incident),
        )
    else:
        conn.execute(
            "UPDATE incidents SET state = 'resolved', resolved_at = %s, updated_at = %s"
            " WHERE id = %s AND state = 'open'",
            (at, at, incident),
        )


# ---------------------------------------------------------------------- loading


def devices(conn: Conn, estates: Iterable[str] | None = None) -> list[DeviceInfo]:
    """Active devices (of ``estates``, or all) as the engine sees them."""
    wanted = None if estates is None else sorted(estates)
    rows = conn.execute(
        "SELECT d.id, d.estate_code, b.code, d.code, d.kind, d.subtype, d.params"
        " FROM devices d LEFT JOIN buildings b ON b.id = d.building_id WHERE d.active"
        " AND (%(e)s::text[] IS NULL OR d.estate_code = ANY(%(e)s))",
        {"e": wanted},
    ).fetchall()
    return [DeviceInfo(int(r[0]), r[1], r[2], r[3], r[4], r[5], dict(r[6])) for r in rows]


def open_alerts(conn: Conn, device_ids: Iterable[int]) -> list[OpenAlert]:
    rows = conn.execute(
        "SELECT device_id, rule_id, alert_type, severity, first_seen, muted_by, confirmation,"
        " life_safety, rules, held_at FROM alerts WHERE state = 'open' AND device_id = ANY(%s)",
        (list(device_ids),),
    ).fetchall()
    out = []
    for r in rows:
        sev = Severity.parse(r[3])
        a = OpenAlert(
            int(r[0]),
            r[1],
            r[2],
            sev,
            r[4].timestamp(),
            r[5],
            r[6] if r[6] in ("to_be_confirmed", "confirmed") else None,
            bool(r[7]),
            {rule: sev for rule in (r[8] or [r[1]])},
        )
        if r[9] is not None:
            a.rules = {}  # held for a person: no rule sees it any more
        out.append(a)
    return out


def closed_of(conn: Conn, keys: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """Which of these (device, alert type) keys have no open alert in the database."""
    ks = list(keys)
    if not ks:
        return []
    rows = conn.execute(
        "SELECT k.dev, k.alert FROM unnest(%s::int[], %s::text[]) AS k(dev, alert)"
        " WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = k.dev"
        " AND a.alert_type = k.alert AND a.state = 'open')",
        ([k[0] for k in ks], [k[1] for k in ks]),
    ).fetchall()
    return [(int(d), str(r)) for d, r in rows]


def save_state(conn: Conn, snapshot: Mapping[int, dict[str, Any]], now: dt.datetime) -> None:
    if not snapshot:
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO alert_engine_state (device_id, state, saved_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET state = EXCLUDED.state,"
            " saved_at = EXCLUDED.saved_at",
            [(dev, Jsonb(st), now) for dev, st in snapshot.items()],
        )


def load_state(conn: Conn, device_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    rows = conn.execute(
        "SELECT device_id, state FROM alert_engine_state WHERE device_id = ANY(%s)",
        (list(device_ids),),
    ).fetchall()
    return {int(d): dict(s) for d, s in rows}


# ---------------------------------------------------------------------- operators


class AlertActionError(ValueError):
    """An operator's action does not apply; the message says why."""


# Why a fire alarm was false: the causes inspectors count per estate and per detector.
FalseAlarmCause = Literal[
    "cooking", "steam", "dust", "insects", "fault", "test", "malicious", "other"
]
FALSE_ALARM_CAUSES: dict[str, str] = {
    "cooking": "烹饪油烟",
    "steam": "水蒸气",
    "dust": "粉尘",
    "insects": "昆虫",
    "fault": "设备故障",
    "test": "测试",
    "malicious": "恶意触发",
    "other": "其他（须说明）",
}


def confirm_fire(
    conn: Conn,
    alert_id: int,
    *,
    actor: str,
    now: dt.datetime,
    false_alarm_cause: str | None,
    note: str | None = None,
) -> None:
    """The control room's verdict on a fire alarm (GB 25201 §5.3): confirmed, or a false
    alarm with its cause, one of ``FALSE_ALARM_CAUSES`` ("other" needs ``note``). A false
    alarm also clears the alert."""
    if false_alarm_cause is not None:
        if false_alarm_cause not in FALSE_ALARM_CAUSES:
            raise AlertActionError(
                f"false-alarm cause {false_alarm_cause!r} is not one of "
                f"{', '.join(FALSE_ALARM_CAUSES)}"
            )
        if false_alarm_cause == "other" and not (note and note.strip()):
            raise AlertActionError("a false alarm of cause 'other' needs a note saying what")
    with conn.transaction():
        row = conn.execute(
            "SELECT alert_type, state, confirmation, severity, incident_id FROM alerts"
            " WHERE id = %s FOR UPDATE",
            (alert_id,),
        ).fetchone()
        if row is None:
            raise AlertActionError(f"no alert {alert_id}")
        alert_type, state, confirmation, severity, incident = row
        if confirmation is None:
            raise AlertActionError(f"alert {alert_id} ({alert_type}) is not a fire alarm")
        if state != "open":
            raise AlertActionError(f"alert {alert_id} is {state}: nothing to confirm")
        if false_alarm_cause is not None:
            conn.execute(
                "UPDATE alerts SET confirmation = 'false_alarm', false_alarm_cause = %s,"
                " false_alarm_note = %s, state = 'cleared', cleared_at = %s, held_at = NULL"
                " WHERE id = %s",
                (false_alarm_cause, note, now, alert_id),
            )
            change, detail = "false_alarm", {"cause": false_alarm_cause, "note": note}
            if incident is not None:
                settle_incident(conn, incident, now)
        else:
            conn.execute("UPDATE alerts SET confirmation = 'confirmed' WHERE id = %s", (alert_id,))
            change, detail = "confirm", {"confirmation": "confirmed"}
        conn.execute(
            "INSERT INTO alert_changes (alert_id, at, change, severity, actor, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (alert_id, now, change, severity, actor, Jsonb(detail)),
        )


def acknowledge(conn: Conn, alert_id: int, *, actor: str, now: dt.datetime) -> bool:
    """An operator has seen an open alert on the board. False if it was acknowledged
    already (the first acknowledgement stands); ``AlertActionError`` if it is not open."""
    with conn.transaction():
        row = conn.execute(
            "SELECT state, severity, acknowledged_at FROM alerts WHERE id = %s FOR UPDATE",
            (alert_id,),
        ).fetchone()
        if row is None:
            raise AlertActionError(f"no alert {alert_id}")
        state, severity, acked = row
        if state != "open":
            raise AlertActionError(f"alert {alert_id} is {state}: nothing to acknowledge")
        if acked is not None:
            return False
        conn.execute(
            "UPDATE alerts SET acknowledged_at = %s, acknowledged_by = %s WHERE id = %s",
            (now, actor, alert_id),
        )
        conn.execute(
            "INSERT INTO alert_changes (alert_id, at, change, severity, actor)"
            " VALUES (%s, %s, 'acknowledge', %s, %s)",
            (alert_id, now, severity, actor),
        )
    return True


def close_rescued(conn: Conn, order_id: int, *, actor: str, now: dt.datetime) -> list[int]:
    """The order is resolved: close its life-safety alerts that only a person can close
    (held, or seen by event rules alone: a controller has no "released" code). An alert
    a condition still sees (telemetry says someone is still shut in) stays open."""
    closed = [
        int(r[0])
        for r in conn.execute(
            "UPDATE alerts SET state = 'cleared', cleared_at = %s, held_at = NULL, rules = '{}'"
            " WHERE state = 'open' AND life_safety AND (held_at IS NOT NULL OR latched)"
            " AND incident_id IN (SELECT id FROM incidents WHERE work_order_id = %s)"
            " RETURNING id",
            (now, order_id),
        ).fetchall()
    ]
    for alert_id in closed:
        conn.execute(
            "INSERT INTO alert_changes (alert_id, at, change, severity, actor, detail)"
            " SELECT id, %s, 'clear', severity, %s, %s FROM alerts WHERE id = %s",
            (now, actor, Jsonb({"order": order_id, "resolved": True}), alert_id),
        )
    for (incident,) in conn.execute(
        "SELECT id FROM incidents WHERE work_order_id = %s AND state = 'open'", (order_id,)
    ).fetchall():
        settle_incident(conn, int(incident), now)
    return closed


# ---------------------------------------------------------------------- incidents for dispatch


@dataclass(frozen=True)
class DispatchIncident:
    """An open incident as dispatch decides it."""

    id: int
    estate: str
    building: str | None
    category: str
    opened_at: dt.datetime
    group_key: str = ""

    @property
    def life_safety(self) -> bool:
        return self.group_key != ""


def incidents_to_dispatch(conn: Conn) -> list[tuple[int, bool]]:
    """Open incidents new or changed since dispatch last looked: (id, has an order), life
    safety first (in a storm the trapped and the fires go out before the rest)."""
    rows = conn.execute(
        "SELECT id, work_order_id IS NOT NULL FROM incidents WHERE state = 'open'"
        " AND (dispatch_checked_at IS NULL OR updated_at > dispatch_checked_at)"
        " ORDER BY life_safety DESC, id"
    ).fetchall()
    return [(int(i), bool(has)) for i, has in rows]


def lock_for_dispatch(conn: Conn, incident_id: int, *, has_order: bool) -> DispatchIncident | None:
    """The incident locked, if it is still open and still with (or without) an order;
    None when another supervisor has it or it changed meanwhile."""
    with conn.cursor(row_factory=class_row(DispatchIncident)) as cur:
        return cur.execute(
            "SELECT id, estate_code AS estate, building_code AS building, category, opened_at,"
            " group_key FROM incidents WHERE id = %s AND state = 'open'"
            " AND (work_order_id IS NULL) = %s FOR UPDATE SKIP LOCKED",
            (incident_id, not has_order),
        ).fetchone()


def dispatch_checked(conn: Conn, incident_id: int) -> None:
    """Dispatch has looked at the incident as it is now."""
    conn.execute(
        "UPDATE incidents SET dispatch_checked_at = updated_at WHERE id = %s", (incident_id,)
    )


def recheck_undispatched(conn: Conn) -> None:
    """Dispatch looks again at every open incident without an order (a new responsibility
    list may cover what the old one left as gaps)."""
    conn.execute(
        "UPDATE incidents SET dispatch_checked_at = NULL"
        " WHERE state = 'open' AND work_order_id IS NULL"
    )


def cover(conn: Conn, incident_id: int, order_id: int) -> None:
    """The order now covers the incident (a new one, or a recurrence joining it)."""
    conn.execute("UPDATE incidents SET work_order_id = %s WHERE id = %s", (order_id, incident_id))


@dataclass(frozen=True)
class AlertLine:
    """One alert as the command line lists it."""

    id: int
    first_seen: dt.datetime
    severity: str
    alert_type: str
    estate_code: str
    building_code: str | None
    device_code: str
    state: str
    occurrences: int
    confirmation: str | None
    muted_by: str | None
    incident_id: int | None


def lines(conn: Conn, *, include_cleared: bool, estate: str | None, limit: int) -> list[AlertLine]:
    """Newest first: open alerts, or all with ``include_cleared``."""
    with conn.cursor(row_factory=class_row(AlertLine)) as cur:
        return cur.execute(
            "SELECT id, first_seen, severity, alert_type, estate_code, building_code,"
            " device_code, state, occurrences, confirmation, muted_by, incident_id FROM alerts"
            " WHERE (%(all)s OR state = 'open') AND (%(e)s::text IS NULL OR estate_code = %(e)s)"
            " ORDER BY id DESC LIMIT %(n)s",
            {"all": include_cleared, "e": estate, "n": limit},
        ).fetchall()
