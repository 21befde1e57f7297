"""Rectification notices (整改通知书): an inspector's written order to an estate or a unit
to fix a problem by a date, tracked to closure and looked at again (回头看).

States::

    issued ──rectify──▶ rectified ──close──▶ closed ──look back: holds──▶ (final)
      ▲                    │                   │
      └──────reject────────┘                   └──look back: relapsed──▶ reopened
    reopened ──rectify──▶ rectified …

The recipient rectifies (with a note saying what was done); the issuing authority
accepts (closes, setting the look-back date) or rejects; at the look-back the inspector
records whether the fix held. A notice past its deadline and not rectified is overdue.
Every step is a ``notice_events`` row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from estate.db import Conn

PREFIX = {"fire": "消", "market": "特"}  # 消防 / 特种设备
ACTIONS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "rectify": ("rectified", ("issued", "reopened")),
    "reject": ("issued", ("rectified",)),
    "close": ("closed", ("rectified",)),
    "holds": ("closed", ("closed",)),
    "relapsed": ("reopened", ("closed",)),
}
COLUMNS = (
    "id, number, authority, issued_by, area_code, estate_code, recipient_org, device_code,"
    " problem, basis, deadline, state, issued_at, rectified_at, closed_at, look_back_on,"
    " looked_back_at, look_back_result, reopen_count"
)


class NoticeError(ValueError):
    """The step does not apply; the message says why."""


def issue(
    conn: Conn,
    *,
    authority: str,
    area_code: str,
    estate: str,
    recipient_org: str | None,
    device: str | None,
    problem: str,
    basis: str,
    deadline: dt.date,
    actor: str,
    now: dt.datetime,
) -> int:
    """Issue a notice; numbered per authority, area and year."""
    if deadline < now.date():
        raise NoticeError(f"the deadline {deadline} is already past")
    with conn.transaction():
        if device is not None:
            found = conn.execute(
                "SELECT 1 FROM devices WHERE estate_code = %s AND code = %s", (estate, device)
            ).fetchone()
            if found is None:
                raise NoticeError(f"no device {device} in estate {estate}")
        # one numbering sequence per (authority, area, year), safe under concurrency
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"notice:{authority}:{area_code}",)
        )
        row = conn.execute(
            "SELECT count(*) + 1 FROM notices WHERE authority = %s AND area_code = %s"
            " AND extract(year FROM issued_at) = %s",
            (authority, area_code, now.year),
        ).fetchone()
        assert row is not None
        number = f"{PREFIX[authority]}-{area_code}-{now.year}-{int(row[0]):04d}"
        got = conn.execute(
            "INSERT INTO notices (number, authority, issued_by, area_code, estate_code,"
            " recipient_org, device_code, problem, basis, deadline, issued_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (number, authority, actor, area_code, estate, recipient_org, device, problem, basis,
             deadline, now),
        ).fetchone()  # fmt: skip
        assert got is not None
        conn.execute(
            "INSERT INTO notice_events (notice_id, at, change, actor, note)"
            " VALUES (%s, %s, 'issued', %s, %s)",
            (got[0], now, actor, problem),
        )
    return int(got[0])


def step(
    conn: Conn,
    notice_id: int,
    action: str,
    *,
    actor: str,
    now: dt.datetime,
    note: str = "",
    look_back_days: int = 30,
    new_deadline: dt.date | None = None,
) -> str:
    """One step on a notice; returns its new state."""
    if action not in ACTIONS:
        raise NoticeError(f"unknown step {action!r}; one of {', '.join(ACTIONS)}")
    to, allowed = ACTIONS[action]
    with conn.transaction():
        row = conn.execute(
            "SELECT state, looked_back_at FROM notices WHERE id = %s FOR UPDATE", (notice_id,)
        ).fetchone()
        if row is None:
            raise NoticeError(f"no notice {notice_id}")
        state, looked_back = row
        if state not in allowed:
            raise NoticeError(f"notice {notice_id} is {state}: cannot {action} it")
        if action in ("holds", "relapsed") and looked_back is not None:
            raise NoticeError(f"notice {notice_id} has been looked back at already")
        if action in ("rectify", "reject", "relapsed") and not note.strip():
            raise NoticeError(f"{action} needs a note saying what was done or found")
        if action == "relapsed" and (new_deadline is None or new_deadline < now.date()):
            raise NoticeError("a relapse needs a new deadline, today or later")
        sets = {
            "rectify": "rectified_at = %(now)s",
            "reject": "rectified_at = NULL",
            # a fresh look-back for each closing (an earlier one is in the events)
            "close": "closed_at = %(now)s, look_back_on = %(look)s, looked_back_at = NULL,"
            " look_back_result = NULL",
            "holds": "looked_back_at = %(now)s, look_back_result = 'holds'",
            "relapsed": "looked_back_at = %(now)s, look_back_result = 'relapsed',"
            " reopen_count = reopen_count + 1, deadline = %(deadline)s, rectified_at = NULL,"
            " closed_at = NULL",
        }[action]
        conn.execute(
            "UPDATE notices SET state = %(to)s, " + sets + " WHERE id = %(id)s",  # noqa: S608
            {
                "to": to,
                "now": now,
                "look": now.date() + dt.timedelta(days=look_back_days),
                "deadline": new_deadline,
                "id": notice_id,
            },
        )
        conn.execute(
            "INSERT INTO notice_events (notice_id, at, change, actor, note)"
            " VALUES (%s, %s, %s, %s, %s)",
            (notice_id, now, "rectified" if action == "rectify" else
             "rejected" if action == "reject" else "closed" if action == "close" else action,
             actor, note),
        )  # fmt: skip
    return to
