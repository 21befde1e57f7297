"""Rectification notices (整改通知书): an authority's written order to an estate or a unit
to fix one or more problems, each tracked to closure (动态销号) and looked at again (回头看).

Any authority issues within its area: the fire brigade (fire matters), market supervision
(lifts, special equipment), the housing authority and the street office (anything in the
estate). A notice lists problems, each with the rule broken, the measures (整改措施), a named
responsible person (责任人) and a deadline. Each problem goes::

    issued ──rectify──▶ rectified ──close──▶ closed ──look back: holds──▶ (final)
      ▲                    │                   │
      └──────reject────────┘                   └──look back: relapsed──▶ reopened
    reopened ──rectify──▶ rectified …

The recipient is told at issue (its notification channels) and acknowledges; it reports
each rectification with what was done (and evidence, ``oversight.attachments``); the
issuing authority accepts (closes, setting the look-back date) or sends it back; on or
after the look-back date it records whether the fix held, and a relapse reopens the
problem with a new deadline. A problem past its deadline and not rectified is overdue;
``supervise`` escalates it once to 挂牌督办 (supervised), telling the next authorities,
and reminds the issuer of look-backs that fall due. The notice's own state, deadline and
dates summarise its problems. Every step is a ``notice_events`` row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerts import notify
from alerts.responsibility import PartyDirectory
from estate.db import Conn


@dataclass(frozen=True)
class Authority:
    """An issuing authority: its numbering prefix, the party role that stands for it in
    the registry, the device kind it supervises (None: anything in the estate), and who
    is told when one of its problems goes overdue (挂牌督办)."""

    prefix: str
    party: str
    domain: str | None
    escalate_to: tuple[str, ...]
    zh: str


AUTHORITIES: Mapping[str, Authority] = {
    "fire": Authority("消", "fire_brigade", "fire", ("street_office", "housing_authority"),
                      "消防救援机构"),
    "market": Authority("特", "market_supervision", "elevator",
                        ("street_office", "housing_authority"), "市场监管部门"),
    "housing": Authority("建", "housing_authority", None, ("street_office",), "住房和城乡建设部门"),
    "street": Authority("街", "street_office", None, ("housing_authority",), "街道办事处"),
}  # fmt: skip
ACTIONS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "rectify": ("rectified", ("issued", "reopened")),
    "reject": ("issued", ("rectified",)),
    "close": ("closed", ("rectified",)),
    "holds": ("closed", ("closed",)),
    "relapsed": ("reopened", ("closed",)),
}
EVENT_OF = {"rectify": "rectified", "reject": "rejected", "close": "closed"}
COLUMNS = (
    "id, number, authority, issued_by, area_code, estate_code, recipient_org, device_code,"
    " problem, basis, deadline, state, issued_at, rectified_at, closed_at, look_back_on,"
    " looked_back_at, look_back_result, reopen_count, acknowledged_at, acknowledged_by"
)
PROBLEM_COLUMNS = (
    "seq, category, device_code, problem, basis, measures, responsible_person, deadline,"
    " state, opened_at, rectified_at, rectification, closed_at, look_back_on, looked_back_at,"
    " look_back_result, reopen_count, supervised_at, supervised_to"
)
MAX_PROBLEMS = 50


class NoticeError(ValueError):
    """The step does not apply; the message says why."""


@dataclass(frozen=True)
class ProblemIn:
    """One problem as the issuer writes it."""

    problem: str
    deadline: dt.date
    basis: str = ""
    measures: str = ""
    responsible_person: str | None = None
    device: str | None = None
    category: str | None = None  # default: the device's kind, else the authority's domain


def recipient_party(
    conn: Conn, notice_id: int, directory: PartyDirectory | None = None
) -> tuple[str, str | None]:
    """Who must act on the notice: ("org", code) for a named unit or the estate's property
    firm, or ("street_office", code) for an estate without one (community-managed), where
    the street office acts for the owners."""
    row = conn.execute(
        "SELECT n.recipient_org, e.property_firm_code, n.estate_code FROM notices n"
        " JOIN estates e ON e.code = n.estate_code WHERE n.id = %s",
        (notice_id,),
    ).fetchone()
    if row is None:
        raise NoticeError(f"no notice {notice_id}")
    recipient, firm, estate = row
    if recipient is not None:
        return "org", str(recipient)
    if firm is not None:
        return "org", str(firm)
    found = (directory or PartyDirectory(conn)).parties(str(estate), None)
    return "street_office", found.street_office


def issue(
    conn: Conn,
    *,
    authority: str,
    area_code: str,
    estate: str,
    recipient_org: str | None,
    problems: Sequence[ProblemIn],
    actor: str,
    now: dt.datetime,
) -> int:
    """Issue a notice with its problems (numbered per authority, area and year) and tell
    the recipient at once."""
    if authority not in AUTHORITIES:
        raise NoticeError(f"unknown authority {authority!r}; one of {', '.join(AUTHORITIES)}")
    if not problems:
        raise NoticeError("a notice lists at least one problem")
    if len(problems) > MAX_PROBLEMS:
        raise NoticeError(f"a notice lists at most {MAX_PROBLEMS} problems")
    auth = AUTHORITIES[authority]
    for i, p in enumerate(problems, 1):
        if p.deadline < now.date():
            raise NoticeError(f"problem {i}: the deadline {p.deadline} is already past")
        if not p.problem.strip():
            raise NoticeError(f"problem {i}: say what the problem is")
    with conn.transaction():
        kinds: dict[str, str] = {}
        for i, p in enumerate(problems, 1):
            if p.device is None:
                continue
            found = conn.execute(
                "SELECT kind FROM devices WHERE estate_code = %s AND code = %s", (estate, p.device)
            ).fetchone()
            if found is None:
                raise NoticeError(f"problem {i}: no device {p.device} in estate {estate}")
            kinds[p.device] = str(found[0])
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
        number = f"{auth.prefix}-{area_code}-{now.year}-{int(row[0]):04d}"
        first = problems[0]
        got = conn.execute(
            "INSERT INTO notices (number, authority, issued_by, area_code, estate_code,"
            " recipient_org, device_code, problem, basis, deadline, issued_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (number, authority, actor, area_code, estate, recipient_org, first.device,
             first.problem, first.basis, min(p.deadline for p in problems), now),
        ).fetchone()  # fmt: skip
        assert got is not None
        notice_id = int(got[0])
        for i, p in enumerate(problems, 1):
            category = p.category or (
                kinds[p.device] if p.device is not None else auth.domain or "general"
            )
            conn.execute(
                "INSERT INTO notice_problems (notice_id, seq, category, device_code, problem,"
                " basis, measures, responsible_person, deadline, opened_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (notice_id, i, category, p.device, p.problem, p.basis, p.measures,
                 p.responsible_person, p.deadline, now),
            )  # fmt: skip
        _event(
            conn,
            notice_id,
            None,
            "issued",
            actor=actor,
            now=now,
            note=f"共 {len(problems)} 项问题",
        )
        _sync(conn, notice_id)
        _tell_recipient(conn, notice_id, "notice.issued", now)
    return notice_id


def acknowledge(conn: Conn, notice_id: int, *, actor: str, now: dt.datetime) -> None:
    """The recipient confirms it has the notice (签收); once."""
    with conn.transaction():
        row = conn.execute(
            "SELECT acknowledged_at FROM notices WHERE id = %s FOR UPDATE", (notice_id,)
        ).fetchone()
        if row is None:
            raise NoticeError(f"no notice {notice_id}")
        if row[0] is not None:
            raise NoticeError(f"notice {notice_id} was acknowledged at {row[0]:%Y-%m-%d %H:%M} UTC")
        _acknowledge(conn, notice_id, actor, now)


def _acknowledge(conn: Conn, notice_id: int, actor: str, now: dt.datetime) -> None:
    conn.execute(
        "UPDATE notices SET acknowledged_at = %s, acknowledged_by = %s WHERE id = %s",
        (now, actor, notice_id),
    )
    _event(conn, notice_id, None, "acknowledged", actor=actor, now=now)


def step(
    conn: Conn,
    notice_id: int,
    action: str,
    *,
    actor: str,
    now: dt.datetime,
    seq: int | None = None,
    note: str = "",
    look_back_days: int = 30,
    new_deadline: dt.date | None = None,
) -> str:
    """One step on problem ``seq`` of the notice, or (``seq`` None) on every problem it
    applies to; returns the notice's new state."""
    if action not in ACTIONS:
        raise NoticeError(f"unknown step {action!r}; one of {', '.join(ACTIONS)}")
    if not 1 <= look_back_days <= 366:
        raise NoticeError("the look-back comes 1 to 366 days after closing")
    to, allowed = ACTIONS[action]
    with conn.transaction():
        head = conn.execute(
            "SELECT acknowledged_at FROM notices WHERE id = %s FOR UPDATE", (notice_id,)
        ).fetchone()
        if head is None:
            raise NoticeError(f"no notice {notice_id}")
        rows = conn.execute(
            "SELECT seq, state, look_back_on, looked_back_at FROM notice_problems"
            " WHERE notice_id = %s AND (%s::int IS NULL OR seq = %s) ORDER BY seq FOR UPDATE",
            (notice_id, seq, seq),
        ).fetchall()
        if not rows:
            raise NoticeError(f"notice {notice_id} has no problem {seq}")
        targets = [r for r in rows if r[1] in allowed]
        if not targets:
            states = ", ".join(sorted({str(r[1]) for r in rows}))
            what = f"problem {seq}" if seq is not None else "no problem"
            raise NoticeError(
                f"notice {notice_id}: {what} is {states}: cannot {action} it"
                if seq is not None
                else f"notice {notice_id}: no problem can be {action}d (they are {states})"
            )
        _check(action, targets, note=note, new_deadline=new_deadline, today=now.date())
        if action == "rectify" and head[0] is None:
            _acknowledge(conn, notice_id, actor, now)  # acting on it is acknowledging it
        sets = {
            "rectify": "rectified_at = %(now)s, rectification = %(note)s",
            "reject": "rectified_at = NULL",
            # a fresh look-back for each closing (an earlier one is in the events)
            "close": "closed_at = %(now)s, look_back_on = %(look)s, looked_back_at = NULL,"
            " look_back_result = NULL, look_back_reminded = NULL",
            "holds": "looked_back_at = %(now)s, look_back_result = 'holds'",
            "relapsed": "looked_back_at = %(now)s, look_back_result = 'relapsed',"
            " reopen_count = reopen_count + 1, deadline = %(deadline)s, rectified_at = NULL,"
            " closed_at = NULL, supervised_at = NULL, supervised_to = '{}'",
        }[action]
        for s, *_ in targets:
            conn.execute(
                "UPDATE notice_problems SET state = %(to)s, " + sets  # noqa: S608 (constants)
                + " WHERE notice_id = %(id)s AND seq = %(seq)s",
                {
                    "to": to, "now": now, "note": note,
                    "look": now.date() + dt.timedelta(days=look_back_days),
                    "deadline": new_deadline, "id": notice_id, "seq": s,
                },
            )  # fmt: skip
            _event(conn, notice_id, int(s), EVENT_OF.get(action, action), actor=actor, now=now,
                   note=note)  # fmt: skip
        state = _sync(conn, notice_id)
        if action == "rectify":
            _tell_issuer(conn, notice_id, "notice.rectified", now)
        elif action in ("reject", "relapsed"):
            _tell_recipient(conn, notice_id, f"notice.{EVENT_OF.get(action, action)}", now)
    return state


def _check(
    action: str,
    targets: Sequence[tuple[Any, ...]],
    *,
    note: str,
    new_deadline: dt.date | None,
    today: dt.date,
) -> None:
    """What a step needs besides the right state: a note, a new deadline, the look-back's date."""
    if action in ("rectify", "reject", "relapsed") and not note.strip():
        raise NoticeError(f"{action} needs a note saying what was done or found")
    if action == "relapsed" and (new_deadline is None or new_deadline < today):
        raise NoticeError("a relapse needs a new deadline, today or later")
    if action in ("holds", "relapsed"):
        for seq, _, look_on, looked in targets:
            if looked is not None:
                raise NoticeError(f"problem {seq} has been looked back at already")
            if look_on is not None and today < look_on:
                raise NoticeError(f"problem {seq}: the look-back is due on {look_on}, not before")


def supervise(conn: Conn, now: dt.datetime) -> tuple[int, int]:
    """One round: overdue problems escalate to 挂牌督办 (once per deadline), the next
    authorities and the recipient told; look-backs due today or earlier remind the
    issuing authority (once per closing). Returns (supervised, reminded)."""
    today = now.date()
    supervised = reminded = 0
    directory: PartyDirectory | None = None
    with conn.transaction():
        overdue = conn.execute(
            "SELECT p.notice_id, p.seq, n.authority, n.estate_code, n.number, p.problem,"
            " p.deadline FROM notice_problems p JOIN notices n ON n.id = p.notice_id"
            " WHERE p.state IN ('issued', 'reopened') AND p.deadline < %s"
            " AND p.supervised_at IS NULL ORDER BY p.notice_id, p.seq"
            " FOR UPDATE OF p SKIP LOCKED",
            (today,),
        ).fetchall()
        for notice_id, seq, authority, estate, number, problem, deadline in overdue:
            directory = directory or PartyDirectory(conn)
            parties = directory.parties(str(estate), None)
            told = [
                org
                for org in dict.fromkeys(
                    parties.resolve(p) for p in AUTHORITIES[str(authority)].escalate_to
                )
                if org is not None
            ]
            conn.execute(
                "UPDATE notice_problems SET supervised_at = %s, supervised_to = %s"
                " WHERE notice_id = %s AND seq = %s",
                (now, told, notice_id, seq),
            )
            why = f"逾期未整改（期限 {deadline}），挂牌督办，已告知 {'、'.join(told) or '无'}"
            _event(conn, int(notice_id), int(seq), "supervised", actor="system", now=now, note=why)
            payload = {"notice": number, "problem": int(seq), "estate": estate,
                       "text": problem, "deadline": deadline.isoformat()}  # fmt: skip
            for org in told:
                notify.tell(conn, org=org, channels=("mqtt", "webhook"),
                            event="notice.supervised", payload=payload, now=now)  # fmt: skip
            _tell_recipient(conn, int(notice_id), "notice.supervised", now, problem=int(seq),
                            directory=directory)  # fmt: skip
            supervised += 1
        due = conn.execute(
            "SELECT p.notice_id, p.seq FROM notice_problems p"
            " WHERE p.state = 'closed' AND p.looked_back_at IS NULL AND p.look_back_on <= %s"
            " AND p.look_back_reminded IS NULL ORDER BY p.notice_id, p.seq"
            " FOR UPDATE SKIP LOCKED",
            (today,),
        ).fetchall()
        for notice_id, seq in due:
            directory = directory or PartyDirectory(conn)
            conn.execute(
                "UPDATE notice_problems SET look_back_reminded = %s"
                " WHERE notice_id = %s AND seq = %s",
                (now, notice_id, seq),
            )
            _tell_issuer(conn, int(notice_id), "notice.look_back_due", now, problem=int(seq),
                         directory=directory)  # fmt: skip
            reminded += 1
    return supervised, reminded


# ---------------------------------------------------------------------- helpers


def _event(
    conn: Conn, notice_id: int, seq: int | None, change: str, *, actor: str, now: dt.datetime,
    note: str = "",
) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO notice_events (notice_id, problem_seq, at, change, actor, note)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (notice_id, seq, now, change, actor, note),
    )


def _sync(conn: Conn, notice_id: int) -> str:
    """The notice's summary columns from its problems; returns its state."""
    row = conn.execute(
        "UPDATE notices n SET state = s.state, deadline = s.deadline,"
        " rectified_at = s.rectified_at, closed_at = s.closed_at, look_back_on = s.look_back_on,"
        " looked_back_at = s.looked_back_at, look_back_result = s.look_back_result,"
        " reopen_count = s.reopen_count"
        " FROM (SELECT"
        "  CASE WHEN bool_and(state = 'closed') THEN 'closed'"
        "       WHEN bool_or(state = 'reopened') THEN 'reopened'"
        "       WHEN bool_and(state IN ('rectified', 'closed')) THEN 'rectified'"
        "       ELSE 'issued' END AS state,"
        "  coalesce(min(deadline) FILTER (WHERE state <> 'closed'), max(deadline)) AS deadline,"
        "  CASE WHEN bool_and(state IN ('rectified', 'closed')) THEN max(rectified_at) END"
        "    AS rectified_at,"
        "  CASE WHEN bool_and(state = 'closed') THEN max(closed_at) END AS closed_at,"
        "  min(look_back_on) FILTER (WHERE state = 'closed' AND looked_back_at IS NULL)"
        "    AS look_back_on,"
        "  CASE WHEN bool_and(looked_back_at IS NOT NULL) THEN max(looked_back_at) END"
        "    AS looked_back_at,"
        "  CASE WHEN bool_and(looked_back_at IS NOT NULL) THEN"
        "    CASE WHEN bool_or(look_back_result = 'relapsed') THEN 'relapsed' ELSE 'holds' END"
        "  END AS look_back_result,"
        "  sum(reopen_count)::int AS reopen_count"
        "  FROM notice_problems WHERE notice_id = %(id)s) s"
        " WHERE n.id = %(id)s RETURNING n.state",
        {"id": notice_id},
    ).fetchone()
    assert row is not None
    return str(row[0])


def _payload(conn: Conn, notice_id: int, problem: int | None) -> dict[str, object]:
    row = conn.execute(
        "SELECT number, authority, estate_code, state, deadline FROM notices WHERE id = %s",
        (notice_id,),
    ).fetchone()
    assert row is not None
    out: dict[str, object] = {
        "notice": row[0],
        "id": notice_id,
        "authority": row[1],
        "estate": row[2],
        "state": row[3],
        "deadline": row[4].isoformat(),
    }
    if problem is not None:
        out["problem"] = problem
    return out  # fmt: skip


def _tell_recipient(
    conn: Conn, notice_id: int, event: str, now: dt.datetime, *, problem: int | None = None,
    directory: PartyDirectory | None = None,
) -> None:  # fmt: skip
    _, org = recipient_party(conn, notice_id, directory)
    notify.tell(conn, org=org, channels=("mqtt", "webhook"), event=event,
                payload=_payload(conn, notice_id, problem), now=now)  # fmt: skip


def _tell_issuer(
    conn: Conn, notice_id: int, event: str, now: dt.datetime, *, problem: int | None = None,
    directory: PartyDirectory | None = None,
) -> None:  # fmt: skip
    row = conn.execute(
        "SELECT authority, estate_code FROM notices WHERE id = %s", (notice_id,)
    ).fetchone()
    assert row is not None
    parties = (directory or PartyDirectory(conn)).parties(str(row[1]), None)
    org = parties.resolve(AUTHORITIES[str(row[0])].party)
    notify.tell(conn, org=org, channels=("mqtt", "webhook"), event=event,
                payload=_payload(conn, notice_id, problem), now=now)  # fmt: skip
