"""The fire control room's duty roster and shift log: the ``duty_shifts`` and ``duty_log``
tables.

GB 25201 §4.2: the control room is staffed 24 hours a day, at least two people per shift,
each holding the operator's certificate. A shift names its people (with certificate
numbers); shifts of one estate do not overlap; ``gaps`` finds the hours nobody was (or is
planned to be) on duty, which the fire authority checks. The log records handovers,
checks, alarms and faults as the people on duty write them. Time is passed in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from psycopg.types.json import Jsonb

from estate.db import Conn

MIN_STAFF = 2
MAX_SHIFT = dt.timedelta(hours=24)
LogKind = Literal["handover", "check", "alarm", "fault", "note"]


class DutyError(ValueError):
    """The shift or entry cannot be recorded; the message says why."""


@dataclass(frozen=True)
class Staff:
    name: str
    cert_no: str  # 消防设施操作员 certificate


@dataclass(frozen=True)
class Shift:
    id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    staff: list[dict[str, str]]
    recorded_by: str


def add_shift(
    conn: Conn,
    estate: str,
    *,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    staff: list[Staff],
    actor: str,
    now: dt.datetime,
) -> int:
    """Put a shift on the roster; refused with fewer than two certified people, over 24
    hours, or overlapping another shift of the estate."""
    if ends_at <= starts_at:
        raise DutyError("a shift ends after it starts")
    if ends_at - starts_at > MAX_SHIFT:
        raise DutyError("a shift lasts at most 24 hours")
    names = [s.name.strip() for s in staff]
    if len({n for n in names if n}) < MIN_STAFF:
        raise DutyError(f"at least {MIN_STAFF} different people per shift (GB 25201 §4.2)")
    missing = [s.name for s in staff if not s.cert_no.strip()]
    if missing:
        raise DutyError(f"no certificate number for {', '.join(missing)}: on duty only with one")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"duty:{estate}",))
        clash = conn.execute(
            "SELECT starts_at, ends_at FROM duty_shifts WHERE estate_code = %s"
            " AND starts_at < %s AND ends_at > %s ORDER BY starts_at LIMIT 1",
            (estate, ends_at, starts_at),
        ).fetchone()
        if clash is not None:
            raise DutyError(f"overlaps the shift {clash[0]:%Y-%m-%d %H:%M}–{clash[1]:%H:%M} UTC")
        row = conn.execute(
            "INSERT INTO duty_shifts (estate_code, starts_at, ends_at, staff, recorded_by,"
            " recorded_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (estate, starts_at, ends_at,
             Jsonb([{"name": s.name.strip(), "cert_no": s.cert_no.strip()} for s in staff]),
             actor, now),
        ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def shifts(conn: Conn, estate: str, start: dt.datetime, end: dt.datetime) -> list[Shift]:
    """Shifts overlapping [start, end), in time order."""
    rows = conn.execute(
        "SELECT id, starts_at, ends_at, staff, recorded_by FROM duty_shifts"
        " WHERE estate_code = %s AND starts_at < %s AND ends_at > %s ORDER BY starts_at",
        (estate, end, start),
    ).fetchall()
    return [Shift(*r) for r in rows]


def gaps(
    conn: Conn, estate: str, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The stretches of [start, end) that no shift covers (every shift has two people)."""
    out, at = [], start
    for s in shifts(conn, estate, start, end):
        if s.starts_at > at:
            out.append((at, s.starts_at))
        at = max(at, s.ends_at)
    if at < end:
        out.append((at, end))
    return out


def log(
    conn: Conn, estate: str, *, at: dt.datetime, kind: LogKind, text: str, actor: str,
    now: dt.datetime,
) -> int:  # fmt: skip
    """Write an entry in the shift log (not in the future)."""
    if not text.strip():
        raise DutyError("say what happened")
    if at > now + dt.timedelta(minutes=5):
        raise DutyError("an entry cannot be in the future")
    row = conn.execute(
        "INSERT INTO duty_log (estate_code, at, kind, text, author, recorded_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (estate, at, kind, text.strip(), actor, now),
    ).fetchone()
    assert row is not None
    return int(row[0])
