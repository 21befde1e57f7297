"""Silences (维保静默): the one module with the SQL of ``silences``.

A silence mutes matching alerts for maintenance work (they are still stored and shown,
not notified); unset matchers match anything in the estate. Life-safety alerts (trapped,
fire alarm, flooding) are never muted: naming one is refused here, and the judge skips
them for a silence without an alert type. Time is always passed in: the command line and
the API see the same silences at the same moment.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from psycopg import sql
from psycopg.rows import class_row

from alerts.judge import Silence
from alerts.rules import RuleBook
from estate.db import Conn

_COLUMNS = (
    "id, estate_code, building_code, device_code, alert_type, starts_at, ends_at, author, reason"
)


class SilenceError(ValueError):
    """The silence cannot be stored as asked; the message says why."""


@dataclass(frozen=True)
class SilenceRecord:
    """A silence as stored (and as the API returns it)."""

    id: int
    estate_code: str
    building_code: str | None
    device_code: str | None
    alert_type: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    author: str
    reason: str


def active(conn: Conn, now: dt.datetime) -> list[Silence]:
    """Silences not yet ended at ``now``, as the judge matches them."""
    with conn.cursor(row_factory=class_row(SilenceRecord)) as cur:
        q = sql.SQL("SELECT {} FROM silences WHERE ends_at > %s").format(sql.SQL(_COLUMNS))
        rows = cur.execute(q, (now,)).fetchall()
    return [
        Silence(
            id=r.id,
            estate=r.estate_code,
            building=r.building_code,
            device=r.device_code,
            alert=r.alert_type,
            starts=r.starts_at.timestamp(),
            ends=r.ends_at.timestamp(),
        )
        for r in rows
    ]


def unknown_target(
    conn: Conn, *, estate: str, building: str | None, device: str | None
) -> str | None:
    """What of the silence's building or device the registry does not have; None if all
    is there."""
    row = conn.execute(
        "SELECT (%(b)s::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM buildings"
        "   WHERE estate_code = %(e)s AND code = %(b)s)),"
        " (%(d)s::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM devices d"
        "   LEFT JOIN buildings b ON b.id = d.building_id WHERE d.estate_code = %(e)s"
        "   AND d.code = %(d)s AND (%(b)s::text IS NULL OR b.code = %(b)s)))",
        {"e": estate, "b": building, "d": device},
    ).fetchone()
    assert row is not None
    if row[0]:
        return f"{estate} has no building {building!r}"
    if row[1]:
        return f"{estate} has no device {device!r} there"
    return None


def add(
    conn: Conn,
    *,
    book: RuleBook,
    estate: str,
    building: str | None,
    device: str | None,
    alert_type: str | None,
    starts: dt.datetime,
    ends: dt.datetime,
    author: str,
    reason: str,
) -> SilenceRecord:
    """Store a silence for maintenance work. A silence naming a life-safety alert is
    refused (``SilenceError`` says why)."""
    if alert_type is not None and book.life_safety_alert(alert_type):
        raise SilenceError(
            f"{alert_type} is a life-safety alert (people may be in danger): it cannot be "
            "silenced; a maintainer who sets it off on purpose resolves its order instead"
        )
    with conn.cursor(row_factory=class_row(SilenceRecord)) as cur:
        q = sql.SQL(
            "INSERT INTO silences (estate_code, building_code, device_code, alert_type,"
            " starts_at, ends_at, author, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING {}"
        ).format(sql.SQL(_COLUMNS))
        found = cur.execute(
            q, (estate, building, device, alert_type, starts, ends, author, reason)
        ).fetchone()
    assert found is not None
    return found


def listing(
    conn: Conn, scope: sql.Composable, *, now: dt.datetime, active_only: bool, limit: int = 500
) -> list[SilenceRecord]:
    """Silences within ``scope`` (a condition over ``silences``), newest first; with
    ``active_only`` those not yet ended at ``now``."""
    q = sql.SQL(
        "SELECT {} FROM silences WHERE {} AND (NOT %s OR ends_at > %s) ORDER BY id DESC LIMIT %s"
    ).format(sql.SQL(_COLUMNS), scope)
    with conn.cursor(row_factory=class_row(SilenceRecord)) as cur:
        return cur.execute(q, (active_only, now, limit)).fetchall()


def expire(
    conn: Conn, silence_id: int, scope: sql.Composable, now: dt.datetime
) -> SilenceRecord | None:
    """End the silence at ``now`` (the record stays); one already ended is unchanged.
    None when there is no such silence within ``scope``."""
    q = sql.SQL(
        # ends_at must stay after starts_at: one ended the moment it began moves back 1 ms
        "UPDATE silences SET"
        " starts_at = CASE WHEN ends_at > %(now)s"
        "   THEN least(starts_at, %(now)s - interval '1 millisecond') ELSE starts_at END,"
        " ends_at = CASE WHEN ends_at > %(now)s THEN %(now)s ELSE ends_at END"
        " WHERE id = %(id)s AND {} RETURNING {}"
    ).format(scope, sql.SQL(_COLUMNS))
    with conn.cursor(row_factory=class_row(SilenceRecord)) as cur:
        return cur.execute(q, {"now": now, "id": silence_id}).fetchone()
