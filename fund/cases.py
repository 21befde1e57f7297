"""Emergency repair cases (紧急维修) paid from the fund, from an alert or work order to the
owners' disclosure.

opened (from an alert or work order, eligibility checked against the city's emergency
list, evidence attached; or by hand for a failure no sensor sees, with photos; repair first
(先修后报) on the property firm's declaration, the application due within the city's days)
→ estimated (the application) → approved (by the owners' committee, or where the estate has
none the street office acting for it; by the housing authority; or by the owners' standing
authorisation, voted as 民法典 art. 278 asks and within its limits; never by the party that
estimated) → repaired (the work order resolved; before approval only when repair first) →
accepted (竣工验收 by the committee or, where there is none, its stand-in; the work order
verified by its look-back; never the party that estimated) → settled (the actual cost,
checked against the estimate and every cap again; over the review margin it needs a cost
review (审价) by a second party; paid from the account with the invoice reference and
apportioned to owners by floor area) →
disclosed to the building's owners. Refused, with the reason, wherever the rules say no.
Every decision is a ``fund_case_events`` row. The per-home accounts (分户账) are derived
from the ledger (``homes``) and reconcile to it to the fen.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from estate.db import Conn
from estate.settings import LOCAL_ZONE, load_settings
from estate.yamldata import validate_yaml
from fund import ledger
from fund.ledger import Leg


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(_Model):
    id: str
    title_zh: str
    title_en: str
    alerts: list[str] = []
    evidence: list[str] = []  # e.g. rectification_notice
    # no sensor sees it (a roof leak, a facade at risk): opened by hand, with photos
    manual: bool = False
    min_photos: int = Field(default=0, ge=0, le=20)

    @model_validator(mode="after")
    def _how_it_is_known(self) -> Item:
        if not self.alerts and not self.manual:
            raise ValueError(f"{self.id}: an item names its alerts, or is manual")
        return self


class Standing(_Model):
    cap_per_item_fen: int = Field(gt=0)
    share_of_fund: float = Field(gt=0, le=1)
    window_days: int = Field(gt=0)


class City(_Model):
    standing_authorisation: Standing | None = None
    # how owners' votes are judged: 民法典 art. 278 (two thirds take part by area and by
    # head; more than half of those consent), or the older 双三分之二 (two thirds of all
    # owners consent, by area and by head)
    vote_rule: Literal["civil_code", "two_thirds"] = "civil_code"
    # the cost paid may pass the estimate by this share without a cost review (审价)
    cost_review_margin: float = Field(default=0.10, ge=0, le=1)
    # a settled repair is disclosed this long (公示期); owners who paid may object meanwhile
    disclosure_days: int = Field(default=7, ge=1, le=90)
    # 先修后报: a repair started on the property firm's declaration is applied for (the
    # estimate with its evidence) within this many days, or it is overdue
    application_days: int = Field(default=15, ge=1, le=90)
    items: list[Item] = Field(min_length=1)


class EmergencyList(_Model):
    version: int
    cities: dict[str, City]


class CaseError(ValueError):
    """The step is refused; the message says why."""


def load_list(path: Path | None = None) -> EmergencyList:
    """The emergency list: ``path``, else ESTATE_EMERGENCY_LIST, else the shipped one."""
    p = (
        path
        or load_settings().emergency_list
        or Path(str(resources.files("fund") / "emergency.yaml"))
    )
    return validate_yaml(
        p.read_text(encoding="utf-8"), EmergencyList, source=str(p), what="emergency list",
        error=CaseError,
    )  # fmt: skip


def city_of(conn: Conn, estate: str) -> str:
    """The top of the estate's area chain (the city whose list applies)."""
    row = conn.execute(
        "WITH RECURSIVE up(code, parent) AS ("
        " SELECT a.code, a.parent_code FROM areas a JOIN estates e ON e.area_code = a.code"
        " WHERE e.code = %s UNION ALL"
        " SELECT a.code, a.parent_code FROM areas a JOIN up ON a.code = up.parent)"
        " SELECT code FROM up WHERE parent IS NULL",
        (estate,),
    ).fetchone()
    if row is None:
        raise CaseError(f"no estate {estate}")
    return str(row[0])


def has_committee(conn: Conn, estate: str) -> bool:
    """Whether the estate's owners have a committee (业委会) on record."""
    row = conn.execute("SELECT owners_committee FROM estates WHERE code = %s", (estate,)).fetchone()
    return bool(row and row[0])


def committee(estate: str) -> str:
    """The party name of an estate's owners' committee, as decisions record it."""
    return f"owners_committee:{estate}"


def _owners_side(
    conn: Conn, estate: str, party: str, what: str, *, authority: bool = True
) -> str | None:
    """Why ``party`` may not act for the owners of ``estate`` on ``what``, or None: their
    committee where there is one; where there is none, the street office for it (task 17)
    or the housing authority; the housing authority everywhere when ``authority`` (it
    approves applications as the supervisor)."""
    role = party.split(":", 1)[0]
    if role == "admin" or (role == "housing_authority" and authority):
        return None
    if has_committee(conn, estate):
        if party != committee(estate):
            return f"{estate} has an owners' committee (业委会): it {what}"
        return None
    if role == "owners_committee":
        return f"{estate} has no owners' committee on record"
    if role not in ("street_office", "housing_authority"):
        return f"the street office {what} for the owners of {estate} (it has no committee)"
    return None


def _event(conn: Conn, case_id: int, change: str, actor: str, now: dt.datetime,
           **detail: Any) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO fund_case_events (case_id, at, change, actor, detail)"
        " VALUES (%s, %s, %s, %s, %s)",
        (case_id, now, change, actor, Jsonb(detail)),
    )


# ---------------------------------------------------------------------- accounts


def has_accounts(conn: Conn, estate: str) -> bool:
    """Whether the estate's fund is kept here (it has at least one account)."""
    return (
        conn.execute(
            "SELECT 1 FROM fund_accounts WHERE estate_code = %s LIMIT 1", (estate,)
        ).fetchone()
        is not None
    )


def open_accounts(conn: Conn, now: dt.datetime) -> int:
    """An account for every building (and estate) that has none; returns how many."""
    cur = conn.execute(
        "INSERT INTO fund_accounts (estate_code, building_code, name, opened_at)"
        " SELECT b.estate_code, b.code, e.name || ' ' || b.name, %s FROM buildings b"
        " JOIN estates e ON e.code = b.estate_code"
        " UNION ALL SELECT e.code, NULL, e.name, %s FROM estates e"
        " ON CONFLICT DO NOTHING",
        (now, now),
    )
    return cur.rowcount


def account_of(conn: Conn, estate: str, building: str | None) -> int:
    row = conn.execute(
        "SELECT id FROM fund_accounts WHERE estate_code = %s"
        " AND coalesce(building_code, '') = coalesce(%s, '')",
        (estate, building),
    ).fetchone()
    if row is None:
        where = f"{estate}/{building}" if building else estate
        raise CaseError(f"no fund account for {where}: open it first (estate fund open)")
    return int(row[0])


def deposit(conn: Conn, account_id: int, amount_fen: int, *, kind: str, key: str, actor: str,
            now: dt.datetime, memo: str = "") -> int:  # fmt: skip
    """Owners' deposits or interest into an account."""
    if amount_fen <= 0:
        raise ledger.LedgerError("a deposit must be positive")
    source = "external:owners" if kind == "deposit" else "external:bank"
    with conn.transaction():
        jid, _ = ledger.post(
            conn, kind=kind, key=key, actor=actor, now=now, memo=memo,
            legs=[Leg(ledger.fund(account_id), amount_fen), Leg(source, -amount_fen)],
        )  # fmt: skip
    return jid


# ---------------------------------------------------------------------- cases


def _evidence(conn: Conn, alert_id: int | None, order_id: int | None) -> dict[str, Any]:
    """The alert, the device's readings 30 min either side, the order's history, and the
    estate's rectification notices."""
    ev: dict[str, Any] = {}
    if order_id is not None:
        ev["work_order"] = [
            {"at": at.isoformat(), "change": ch, "actor": actor}
            for at, ch, actor in conn.execute(
                "SELECT at, change, actor FROM work_order_events WHERE order_id = %s"
                " ORDER BY at, id",
                (order_id,),
            )
        ]
    if alert_id is not None:
        row = conn.execute(
            "SELECT alert_type, severity, first_seen, evidence, device_id, estate_code"
            " FROM alerts WHERE id = %s",
            (alert_id,),
        ).fetchone()
        if row is not None:
            typ, sev, first, raised_by, dev, estate = row
            ev["alert"] = {"id": alert_id, "type": typ, "severity": sev,
                           "first_seen": first.isoformat(), "evidence": raised_by}  # fmt: skip
            ev["readings"] = [
                {"ts": ts.isoformat(), **{k: v for k, v in vals.items() if v is not None}}
                for ts, vals in conn.execute(
                    # raw or kept as runs (ingest.runs): a case opened days later still
                    # shows the readings around its alert
                    "SELECT ts, to_jsonb(t) - 'ts' - 'device_id' - 'seq' - 'received_at'"
                    " FROM telemetry_between(%s, %s) t WHERE device_id = %s"
                    " ORDER BY ts LIMIT 500",
                    (
                        first - dt.timedelta(minutes=30),
                        first + dt.timedelta(minutes=30, microseconds=1),
                        dev,
                    ),
                )
            ]
            ev["notices"] = [
                {"number": n, "problem": p, "state": s}
                for n, p, s in conn.execute(
                    "SELECT number, problem, state FROM notices WHERE estate_code = %s",
                    (estate,),
                )
            ]
    return ev


def open_case(
    conn: Conn,
    *,
    item: str,
    actor: str,
    now: dt.datetime,
    alert_id: int | None = None,
    order_id: int | None = None,
    rules: EmergencyList | None = None,
    repair_first: bool = False,
) -> int:
    """Open a case from an alert or a work order. An ineligible one is stored as refused
    (with the reason) and ``CaseError`` says why. ``repair_first``: the property firm
    declares the emergency and repairs at once (先修后报); the application is then due
    within the city's ``application_days``."""
    if (alert_id is None) == (order_id is None):
        raise CaseError("a case is opened from one alert or one work order")
    rules = rules or load_list()
    if order_id is not None:
        row = conn.execute(
            "SELECT a.id FROM work_orders o JOIN incidents i ON i.work_order_id = o.id"
            " JOIN alerts a ON a.incident_id = i.id WHERE o.id = %s"
            " ORDER BY array_position(ARRAY['info','warning','major','critical'], a.severity)"
            " DESC, a.id LIMIT 1",
            (order_id,),
        ).fetchone()
        if row is None:
            raise CaseError(f"no work order {order_id} with an alert")
        alert_id = int(row[0])
    found = conn.execute(
        "SELECT alert_type, estate_code, building_code, device_code FROM alerts WHERE id = %s",
        (alert_id,),
    ).fetchone()
    if found is None:
        raise CaseError(f"no alert {alert_id}")
    alert_type, estate, building, device = found
    # one failure, one case: the alert, its work order, or any alert under that order
    dup = conn.execute(
        "WITH o AS (SELECT coalesce(%(order)s, i.work_order_id) AS id FROM alerts a"
        "   LEFT JOIN incidents i ON i.id = a.incident_id WHERE a.id = %(alert)s)"
        " SELECT c.id FROM fund_cases c WHERE c.state <> 'refused' AND (c.alert_id = %(alert)s"
        "   OR c.order_id = (SELECT id FROM o) OR c.alert_id IN (SELECT a.id FROM alerts a"
        "   JOIN incidents i ON i.id = a.incident_id WHERE i.work_order_id = (SELECT id FROM o)))"
        " LIMIT 1",
        {"order": order_id, "alert": alert_id},
    ).fetchone()
    if dup is None:
        # a failure raises more than one alert (a trapped car: the controller's event and
        # the telemetry pattern, a power loss with someone inside): one device, one item,
        # one case until it is paid or refused
        dup = conn.execute(
            "SELECT id FROM fund_cases WHERE estate_code = %s AND device_code = %s"
            " AND item = %s AND state NOT IN ('settled', 'refused') LIMIT 1",
            (estate, device, item),
        ).fetchone()
    if dup is not None:
        raise CaseError(f"case {dup[0]} is open for this failure already")
    city = city_of(conn, estate)
    account = account_of(conn, estate, building)
    reason = _ineligible(conn, rules, city=city, item_id=item, alert_type=alert_type,
                         estate=estate)  # fmt: skip
    first = repair_first and not reason
    apply_by = _apply_by(rules, city, now) if first else None
    with conn.transaction():
        got = conn.execute(
            "INSERT INTO fund_cases (account_id, estate_code, building_code, item, list_city,"
            " alert_id, order_id, device_code, state, evidence, refused_reason, opened_by,"
            " opened_at, repair_first, apply_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (account, estate, building, item, city, alert_id, order_id, device,
             "refused" if reason else "opened", Jsonb(_evidence(conn, alert_id, order_id)),
             reason, actor, now, first, apply_by),
        ).fetchone()  # fmt: skip
        assert got is not None
        case_id = int(got[0])
        _event(conn, case_id, "refused" if reason else "opened", actor, now, item=item,
               alert=alert_id, reason=reason, repair_first=first,
               apply_by=apply_by.isoformat() if apply_by else None)  # fmt: skip
    if reason:
        raise CaseError(f"case {case_id} refused: {reason}")
    return case_id


def open_manual(
    conn: Conn,
    *,
    item: str,
    estate: str,
    building: str | None,
    description: str,
    actor: str,
    now: dt.datetime,
    rules: EmergencyList | None = None,
    repair_first: bool = False,
) -> int:
    """Open a case by hand for a failure no sensor reports (a roof or wall leak, a facade
    at risk of falling, a drainage pipe burst): only for the list's manual items; photos
    follow (``attachments``, subject ``fund_case:{id}``) before it can be estimated.
    ``repair_first`` as for ``open_case``."""
    rules = rules or load_list()
    if not description.strip():
        raise CaseError("describe the failure: what, where, since when")
    city = city_of(conn, estate)
    c = rules.cities.get(city)
    found = next((i for i in c.items if i.id == item), None) if c else None
    if found is None:
        raise CaseError(f"{item} is not on {city}'s emergency repair list")
    if not found.manual:
        raise CaseError(f"{item} is reported by sensors: open it from its alert or work order")
    if building is not None:
        known = conn.execute(
            "SELECT 1 FROM buildings WHERE estate_code = %s AND code = %s", (estate, building)
        ).fetchone()
        if known is None:
            raise CaseError(f"no building {building} in {estate}")
    dup = conn.execute(
        "SELECT id FROM fund_cases WHERE estate_code = %s AND coalesce(building_code, '') ="
        " coalesce(%s, '') AND item = %s AND alert_id IS NULL AND order_id IS NULL"
        " AND state NOT IN ('settled', 'refused') LIMIT 1",
        (estate, building, item),
    ).fetchone()
    if dup is not None:
        raise CaseError(f"case {dup[0]} is open for this failure already")
    account = account_of(conn, estate, building)
    apply_by = _apply_by(rules, city, now) if repair_first else None
    with conn.transaction():
        got = conn.execute(
            "INSERT INTO fund_cases (account_id, estate_code, building_code, item, list_city,"
            " state, evidence, description, opened_by, opened_at, repair_first, apply_by)"
            " VALUES (%s, %s, %s, %s, %s, 'opened', %s, %s, %s, %s, %s, %s) RETURNING id",
            (account, estate, building, item, city, Jsonb({"manual": True}), description.strip(),
             actor, now, repair_first, apply_by),
        ).fetchone()  # fmt: skip
        assert got is not None
        case_id = int(got[0])
        _event(conn, case_id, "opened", actor, now, item=item, manual=True,
               repair_first=repair_first,
               apply_by=apply_by.isoformat() if apply_by else None)  # fmt: skip
    return case_id


def _apply_by(rules: EmergencyList, city: str, now: dt.datetime) -> dt.datetime:
    c = rules.cities.get(city)
    return now + dt.timedelta(days=c.application_days if c else 15)


def photos(conn: Conn, case_id: int) -> int:
    """How many evidence files the case has."""
    row = conn.execute(
        "SELECT count(*) FROM attachments WHERE subject = %s", (f"fund_case:{case_id}",)
    ).fetchone()
    return int(row[0]) if row else 0


def _item(rules: EmergencyList, city: str, item_id: str) -> Item | None:
    c = rules.cities.get(city)
    return next((i for i in c.items if i.id == item_id), None) if c else None


def _ineligible(conn: Conn, rules: EmergencyList, *, city: str, item_id: str,
                alert_type: str, estate: str) -> str | None:  # fmt: skip
    c = rules.cities.get(city)
    if c is None:
        return f"city {city} has no emergency repair list"
    item = next((i for i in c.items if i.id == item_id), None)
    if item is None:
        return f"{item_id} is not on {city}'s emergency repair list"
    if alert_type not in item.alerts:
        if not item.alerts:
            return f"{item_id} is opened by hand with photos (no sensor reports it)"
        return f"{alert_type} does not make {item_id} eligible (it needs one of {item.alerts})"
    if "rectification_notice" in item.evidence:
        notice = conn.execute(
            "SELECT 1 FROM notices WHERE estate_code = %s AND authority = 'fire'"
            " AND state <> 'closed'",
            (estate,),
        ).fetchone()
        if notice is None:
            return f"{item_id} needs the fire authority's open rectification notice for {estate}"
    return None


def _step(conn: Conn, case_id: int, allowed: Sequence[str]) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT state, account_id, estimate_fen, list_city, estate_code FROM fund_cases"
        " WHERE id = %s FOR UPDATE",
        (case_id,),
    ).fetchone()
    if row is None:
        raise CaseError(f"no case {case_id}")
    if row[0] not in allowed:
        raise CaseError(f"case {case_id} is {row[0]}: not possible now")
    return tuple(row)


def _parties(conn: Conn, case_id: int) -> tuple[str | None, str | None, str | None]:
    row = conn.execute(
        "SELECT estimated_by, approved_by, accepted_by FROM fund_cases WHERE id = %s",
        (case_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def estimate(
    conn: Conn, case_id: int, amount_fen: int, *, actor: str, now: dt.datetime,
    party: str | None = None, rules: EmergencyList | None = None,
) -> None:  # fmt: skip
    """The repair's estimate, by ``party`` (who estimated may not approve or accept it); a
    manual case first needs the item's photos."""
    if amount_fen <= 0:
        raise CaseError("an estimate must be positive")
    with conn.transaction():
        _, _, _, city, _ = _step(conn, case_id, ("opened", "estimated"))
        row = conn.execute(
            "SELECT item, alert_id IS NULL AND order_id IS NULL FROM fund_cases WHERE id = %s",
            (case_id,),
        ).fetchone()
        assert row is not None
        item = _item(rules or load_list(), city, str(row[0]))
        have = photos(conn, case_id) if row[1] and item is not None else 0
        if item is not None and row[1] and have < item.min_photos:
            raise CaseError(
                f"{item.id} needs {item.min_photos} photos of the failure before an estimate;"
                f" it has {have}"
            )
        # the estimate with its evidence is the application (of a repair-first case too)
        conn.execute(
            "UPDATE fund_cases SET state = 'estimated', estimate_fen = %s, estimated_by = %s,"
            " applied_at = coalesce(applied_at, %s) WHERE id = %s",
            (amount_fen, party or actor, now, case_id),
        )
        _event(conn, case_id, "estimated", actor, now, estimate_fen=amount_fen)


def approve(conn: Conn, case_id: int, *, by: str, actor: str, now: dt.datetime,
            rules: EmergencyList | None = None, party: str | None = None) -> str:  # fmt: skip
    """``by``: the deciding party, 'owners_committee:<estate>' (the committee applies for the
    fund, task 17), 'street_office:<…>' (only where the estate has no committee: it acts for
    the owners), 'housing_authority:<…>'; or 'standing' (the owners' standing
    authorisation: a vote in effect, within its limits). The party that estimated does not
    approve its own estimate. A repair-first case reported repaired moves on to
    'repaired'."""
    refused: str | None = None
    who = party or actor
    with conn.transaction():
        _, account, est, city, estate = _step(conn, case_id, ("estimated",))
        estimated_by, _, _ = _parties(conn, case_id)
        if by != "standing" and estimated_by == who:
            raise CaseError(f"{who} estimated this repair and cannot approve it too")
        if by != "standing":
            why = _owners_side(conn, estate, party or by, "applies for the fund")
            if why:
                raise CaseError(why)
        if by == "standing":
            refused = standing_missing(conn, estate, now.date()) or _over_standing(
                conn, rules or load_list(), city=city, account=account, amount=int(est), now=now
            )
        if refused:
            # the refusal is a decision too: recorded, then reported (after the commit)
            _event(conn, case_id, "standing_refused", actor, now, reason=refused)
        else:
            conn.execute(
                "UPDATE fund_cases SET state = CASE WHEN repaired_at IS NULL THEN 'approved'"
                " ELSE 'repaired' END, approval = %s, approved_by = %s WHERE id = %s",
                (by, who, case_id),
            )
            _event(conn, case_id, "approved", actor, now, by=by, estimate_fen=est)
    if refused:
        raise CaseError(f"the standing authorisation does not cover it: {refused}")
    return by


def _over_standing(conn: Conn, rules: EmergencyList, *, city: str, account: int, amount: int,
                   now: dt.datetime, case_id: int | None = None) -> str | None:  # fmt: skip
    """Why ``amount`` (an estimate, or the cost being paid for ``case_id``) is over the
    standing authorisation's caps, or None."""
    c = rules.cities.get(city)
    s = c.standing_authorisation if c else None
    if s is None:
        return f"{city} has no standing authorisation"
    if amount > s.cap_per_item_fen:
        return f"{amount} fen is over the {s.cap_per_item_fen} fen cap per item"
    since = now - dt.timedelta(days=s.window_days)
    row = conn.execute(
        "SELECT (SELECT balance_fen FROM fund_accounts WHERE id = %(a)s),"
        " coalesce((SELECT sum(cost_fen) FROM fund_cases WHERE account_id = %(a)s"
        "   AND approval = 'standing' AND state = 'settled' AND settled_at >= %(since)s), 0),"
        " coalesce((SELECT sum(estimate_fen) FROM fund_cases WHERE account_id = %(a)s"
        "   AND approval = 'standing' AND state IN ('approved', 'repaired', 'accepted')"
        "   AND id IS DISTINCT FROM %(case)s), 0)",
        {"a": account, "since": since, "case": case_id},
    ).fetchone()
    assert row is not None
    balance, spent, pending = (int(x) for x in row)
    fund_size = balance + spent  # the fund as it was before this window's standing spending
    limit = int(Decimal(fund_size) * Decimal(str(s.share_of_fund)))
    if spent + pending + amount > limit:
        return (
            f"{spent + pending} fen already spent or approved under it in {s.window_days} days;"
            f" with {amount} fen more it would pass {s.share_of_fund:.0%} of the fund ({limit} fen)"
        )
    return None


# (the order states that show it, what is waited for): paid once the order says the
# repair is done; accepted once the look-back (回头看) has seen the device stay normal
_DONE = (("resolved", "verifying", "closed"), "the repair is paid once it is resolved")
_VERIFIED = (
    ("closed",),
    "the repair is accepted once the look-back (回头看) has verified it and closed the order",
)


def _order_done(conn: Conn, case_id: int, wanted: tuple[Sequence[str], str] = _DONE) -> str | None:
    """Why the case's work order does not show the repair done (or verified) yet, or
    None (a manual case has no order)."""
    row = conn.execute(
        "SELECT o.id, o.state FROM fund_cases c JOIN work_orders o ON o.id = c.order_id"
        " WHERE c.id = %(c)s UNION ALL"
        " SELECT o.id, o.state FROM fund_cases c JOIN alerts a ON a.id = c.alert_id"
        " JOIN incidents i ON i.id = a.incident_id JOIN work_orders o ON o.id = i.work_order_id"
        " WHERE c.id = %(c)s AND c.order_id IS NULL LIMIT 1",
        {"c": case_id},
    ).fetchone()
    states, waited = wanted
    if row is not None and row[1] not in states:
        return f"work order {row[0]} is {row[1]}: {waited}"
    return None


def repaired(conn: Conn, case_id: int, *, note: str, actor: str, now: dt.datetime) -> None:
    """The repair is done, as the work order says. After approval; a repair-first case
    (先修后报) may report it before: it is kept and the case moves on when approved."""
    if not note.strip():
        raise CaseError("say what was repaired")
    with conn.transaction():
        state = _step(conn, case_id, ("opened", "estimated", "approved"))[0]  # locked
        row = conn.execute(
            "SELECT repair_first, repaired_at FROM fund_cases WHERE id = %s", (case_id,)
        ).fetchone()
        assert row is not None
        first, already = bool(row[0]), row[1] is not None
        if state != "approved" and not first:
            raise CaseError(f"case {case_id} is {state}: not possible now")
        if already:
            raise CaseError(f"case {case_id} was reported repaired already")
        why = _order_done(conn, case_id)
        if why:
            raise CaseError(why)
        conn.execute(
            "UPDATE fund_cases SET repaired_at = %s, state = CASE WHEN state = 'approved'"
            " THEN 'repaired' ELSE state END WHERE id = %s",
            (now, case_id),
        )
        _event(conn, case_id, "repaired", actor, now, note=note,
               before_approval=state != "approved")  # fmt: skip


def accept(
    conn: Conn, case_id: int, *, party: str, note: str, actor: str, now: dt.datetime
) -> None:
    """Completion acceptance (竣工验收), by the owners' committee or, where the estate has
    none, its stand-in (the street office; the housing authority): never the party that
    estimated the repair (or did it), and only once the work order's look-back (回头看) has
    verified the repair and closed it."""
    with conn.transaction():
        estate = _step(conn, case_id, ("repaired",))[4]
        estimated_by, _, _ = _parties(conn, case_id)
        if party == estimated_by:
            raise CaseError(f"{party} estimated this repair and cannot accept it too")
        why = _owners_side(
            conn, estate, party, "accepts the repair", authority=False
        ) or _order_done(conn, case_id, _VERIFIED)
        if why:
            raise CaseError(why)
        conn.execute(
            "UPDATE fund_cases SET state = 'accepted', accepted_by = %s, accepted_at = %s"
            " WHERE id = %s",
            (party, now, case_id),
        )
        _event(conn, case_id, "accepted", actor, now, note=note)


def review(
    conn: Conn, case_id: int, reviewed_fen: int, *, reason: str, party: str, actor: str,
    now: dt.datetime,
) -> None:  # fmt: skip
    """A cost review (审价): the amount that may be paid when the cost passes the estimate
    by more than the margin, with the reason; a second approval, so never by the party that
    approved (or estimated) the case."""
    if reviewed_fen <= 0:
        raise CaseError("a reviewed amount is positive")
    if not reason.strip():
        raise CaseError("say why the cost passes the estimate")
    with conn.transaction():
        _step(conn, case_id, ("repaired", "accepted"))
        estimated_by, approved_by, _ = _parties(conn, case_id)
        if party in (estimated_by, approved_by):
            raise CaseError(f"{party} estimated or approved this repair: a second party reviews")
        conn.execute(
            "UPDATE fund_cases SET reviewed_fen = %s, reviewed_by = %s, review_reason = %s"
            " WHERE id = %s",
            (reviewed_fen, party, reason.strip(), case_id),
        )
        _event(conn, case_id, "reviewed", actor, now, reviewed_fen=reviewed_fen, reason=reason)


def _payable(conn: Conn, rules: EmergencyList, case_id: int, cost_fen: int,
             now: dt.datetime) -> str | None:  # fmt: skip
    """Why ``cost_fen`` may not be paid for the case, or None: over the estimate by more
    than the margin without a review, over the review, over a standing cap."""
    row = conn.execute(
        "SELECT estimate_fen, reviewed_fen, approval, list_city, account_id FROM fund_cases"
        " WHERE id = %s",
        (case_id,),
    ).fetchone()
    assert row is not None
    est, reviewed, approval, city, account = row
    c = rules.cities.get(city)
    margin = c.cost_review_margin if c else 0.0
    if reviewed is not None:
        if cost_fen > reviewed:
            return f"the cost {cost_fen} fen is over the reviewed {reviewed} fen"
    elif cost_fen > int(Decimal(int(est)) * (1 + Decimal(str(margin)))):
        return (
            f"the cost {cost_fen} fen passes the estimate {est} fen by more than {margin:.0%}:"
            " it needs a cost review (审价) with the reason, by a second party"
        )
    if approval == "standing":
        over = _over_standing(conn, rules, city=city, account=account, amount=cost_fen,
                              now=now, case_id=case_id)  # fmt: skip
        if over:
            return f"paid under the standing authorisation, {over}"
    return None


# ---------------------------------------------------------------------- owners' votes


def vote_passes(
    rule: str, *, total: tuple[Decimal, int], part: tuple[Decimal, int], yes: tuple[Decimal, int]
) -> bool:
    """Whether a vote passed: (area m², owners) in total, taking part, consenting.
    civil_code: 民法典 art. 278, two thirds take part by area and by head, and more than half
    of those consent by area and by head (using the maintenance fund); two_thirds: the older
    rule, two thirds of all owners consent by area and by head."""
    (ta, tn), (pa, pn), (ya, yn) = total, part, yes
    if rule == "two_thirds":
        return ya * 3 >= ta * 2 and yn * 3 >= tn * 2
    return pa * 3 >= ta * 2 and pn * 3 >= tn * 2 and ya * 2 > pa and yn * 2 > pn


def record_vote(
    conn: Conn, estate: str, *, held_on: dt.date, valid_until: dt.date,
    participating: tuple[Decimal, int], consenting: tuple[Decimal, int], actor: str,
    now: dt.datetime, rules: EmergencyList | None = None,
) -> tuple[int, bool]:  # fmt: skip
    """Record the owners' vote on a standing authorisation for emergency repairs, judged by
    the city's rule against the estate's registered floor area and homes. Returns (id,
    passed)."""
    if held_on > now.date():
        raise CaseError("the vote has not been held yet")
    if valid_until <= held_on:
        raise CaseError("the authorisation is valid for some time after the vote")
    row = conn.execute(
        "SELECT coalesce(sum(u.area_m2), 0), count(u.id) FROM units u"
        " JOIN buildings b ON b.id = u.building_id WHERE b.estate_code = %s",
        (estate,),
    ).fetchone()
    assert row is not None
    total = (Decimal(row[0]), int(row[1]))
    if total[1] == 0:
        raise CaseError(f"{estate} has no registered homes to vote")
    (pa, pn), (ya, yn) = participating, consenting
    if not (0 <= ya <= pa <= total[0] and 0 <= yn <= pn <= total[1]):
        raise CaseError(
            f"consenting ≤ taking part ≤ all ({total[0]} m², {total[1]} homes in {estate})"
        )
    rule = (rules or load_list()).cities.get(city_of(conn, estate))
    name = rule.vote_rule if rule else "civil_code"
    passed = vote_passes(name, total=total, part=(pa, pn), yes=(ya, yn))
    got = conn.execute(
        "INSERT INTO owner_votes (estate_code, subject, rule, held_on, valid_until,"
        " total_area_m2, total_owners, participating_area_m2, participating_owners,"
        " consenting_area_m2, consenting_owners, passed, recorded_by, recorded_at)"
        " VALUES (%s, 'standing_authorisation', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (estate, name, held_on, valid_until, total[0], total[1], pa, pn, ya, yn, passed, actor,
         now),
    ).fetchone()  # fmt: skip
    assert got is not None
    return int(got[0]), passed


def standing_missing(conn: Conn, estate: str, today: dt.date) -> str | None:
    """Why the estate has no standing authorisation in effect today, or None."""
    row = conn.execute(
        "SELECT held_on, valid_until FROM owner_votes WHERE estate_code = %s"
        " AND subject = 'standing_authorisation' AND passed AND held_on <= %s"
        " AND valid_until >= %s ORDER BY held_on DESC LIMIT 1",
        (estate, today, today),
    ).fetchone()
    if row is None:
        return (
            f"the owners of {estate} have not voted a standing authorisation in effect"
            " (民法典 art. 278): the street office or the housing authority decides instead"
        )
    return None


def apportion(cost_fen: int, areas: Sequence[tuple[int, Decimal]]) -> dict[int, int]:
    """Shares of ``cost_fen`` by floor area, in whole fen, summing exactly to the cost:
    each unit gets the floor of its exact share, and the fen left over go one each to the
    largest remainders (ties: the lower unit id)."""
    total = sum((a for _, a in areas), Decimal(0))
    if total <= 0:
        raise CaseError("no floor area to apportion over")
    exact = {u: Decimal(cost_fen) * a / total for u, a in areas}
    shares = {u: int(x) for u, x in exact.items()}  # floor: everything is non-negative
    left = cost_fen - sum(shares.values())
    for u in sorted(exact, key=lambda u: (-(exact[u] - shares[u]), u))[:left]:
        shares[u] += 1
    return shares


# An invoice number (发票号码): published to owners, so nothing but the number itself.
INVOICE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,63}")


def settle(conn: Conn, case_id: int, *, cost_fen: int, invoice_ref: str, key: str, actor: str,
           now: dt.datetime, rules: EmergencyList | None = None,
           contractor: str | None = None) -> int:  # fmt: skip
    """Pay the actual cost of an accepted repair from the account (refused if it cannot
    cover it, if it passes the estimate by more than the margin without a review, or a
    standing cap) and apportion it to the owners by floor area. Idempotent by ``key``; a
    case is paid once."""
    if cost_fen <= 0:
        raise CaseError("the cost must be positive")
    if not INVOICE_REF.fullmatch(invoice_ref):
        raise CaseError(
            f"invoice reference {invoice_ref[:40]!r} is not an invoice number (letters, digits,"
            " - _ / . ; it is published to owners)"
        )
    if not invoice_ref.strip():
        raise CaseError("the invoice reference is required")
    with conn.transaction():
        state, account, _est, _city, estate = _step(
            conn, case_id, ("accepted", "settled", "closed")
        )
        if state in ("settled", "closed"):
            row = conn.execute(
                "SELECT j.id, c.cost_fen, c.invoice_ref FROM fund_cases c"
                " JOIN fund_journal j ON j.id = c.journal_id"
                " WHERE c.id = %s AND j.idempotency_key = %s",
                (case_id, key),
            ).fetchone()
            if row is None:
                raise CaseError(f"case {case_id} is settled already (no case is paid twice)")
            if (row[1], row[2]) != (cost_fen, invoice_ref):
                raise ledger.KeyReused(
                    f"idempotency key {key!r} settled case {case_id} with another cost or"
                    " invoice: send a new key for a new request"
                )
            return int(row[0])  # the same request again: its first answer
        why = _payable(conn, rules or load_list(), case_id, cost_fen, now)
        if why:
            raise CaseError(why)
        jid, _ = ledger.post(
            conn, kind="repair", key=key, actor=actor, now=now, case_id=case_id,
            memo=f"维修资金案件 #{case_id}，发票 {invoice_ref}",
            legs=[Leg(ledger.fund(account), -cost_fen), Leg("external:contractor", cost_fen)],
        )  # fmt: skip
        building = conn.execute(
            "SELECT building_code FROM fund_accounts WHERE id = %s", (account,)
        ).fetchone()
        assert building is not None
        areas = [(u.id, u.area_m2) for u in _units(conn, estate, building[0])]
        shares = apportion(cost_fen, areas)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO fund_shares (case_id, unit_id, area_m2, share_fen)"
                " VALUES (%s, %s, %s, %s)",
                [(case_id, u, a, shares[u]) for u, a in areas],
            )
        city = (rules or load_list()).cities.get(str(_city))
        days = city.disclosure_days if city else 7
        # what was done, as the repair was reported, is disclosed with the cost
        work = conn.execute(
            "SELECT detail->>'note' FROM fund_case_events WHERE case_id = %s"
            " AND change = 'repaired' ORDER BY id DESC LIMIT 1",
            (case_id,),
        ).fetchone()
        conn.execute(
            "UPDATE fund_cases SET state = 'settled', cost_fen = %s, invoice_ref = %s,"
            " journal_id = %s, settled_at = %s, disclosed_until = %s, contractor = %s,"
            " work = %s WHERE id = %s",
            (cost_fen, invoice_ref, jid, now, now + dt.timedelta(days=days), contractor,
             work[0] if work else None, case_id),
        )  # fmt: skip
        _event(conn, case_id, "settled", actor, now, cost_fen=cost_fen, invoice=invoice_ref,
               journal=jid, owners=len(shares))  # fmt: skip
    return jid


# ---------------------------------------------------------------------- disclosure


class Share(_Model):
    building: str
    unit: str
    share_fen: int


class Disclosed(_Model):
    """One completed emergency repair as owners see it (the public disclosure)."""

    case_id: int
    building: str | None
    item: str
    settled_at: dt.datetime
    cost_fen: int
    invoice_ref: str
    approval: str
    work: str | None = None  # what was done
    contractor: str | None = None
    disclosed_until: dt.datetime | None = None  # the end of the 公示期
    objections: int = 0
    state: str = "settled"  # closed once the period is over and every objection answered
    shares: list[Share]


def disclosure(conn: Conn, estate: str) -> list[Disclosed]:
    """Completed emergency repairs of an estate, each with every owner's share."""
    out = []
    for cid, building, item, at, cost, inv, appr, work, contractor, until, n, st in conn.execute(
        "SELECT id, building_code, item, settled_at, cost_fen, invoice_ref, approval, work,"
        " contractor, disclosed_until,"
        " (SELECT count(*) FROM fund_objections o WHERE o.case_id = c.id), state"
        " FROM fund_cases c WHERE estate_code = %s AND state IN ('settled', 'closed')"
        " ORDER BY settled_at",
        (estate,),
    ).fetchall():
        shares = [
            Share(building=str(b), unit=str(u), share_fen=int(f))
            for b, u, f in conn.execute(
                "SELECT b.code, u.code, s.share_fen FROM fund_shares s"
                " JOIN units u ON u.id = s.unit_id JOIN buildings b ON b.id = u.building_id"
                " WHERE s.case_id = %s ORDER BY b.code, u.floor, u.code",
                (cid,),
            )
        ]
        # published: who decided as a kind of authority, never a login name behind it
        out.append(
            Disclosed(case_id=int(cid), building=building, item=item, settled_at=at,
                      cost_fen=int(cost), invoice_ref=inv, approval=str(appr).split(":")[0],
                      work=work, contractor=contractor, disclosed_until=until,
                      objections=int(n), state=str(st), shares=shares)
        )  # fmt: skip
    return out


def year_bounds(year: int, zone: dt.tzinfo = LOCAL_ZONE) -> tuple[dt.datetime, dt.datetime]:
    """The calendar year as the owners live it (local midnight to local midnight)."""
    return dt.datetime(year, 1, 1, tzinfo=zone), dt.datetime(year + 1, 1, 1, tzinfo=zone)


def yearly_report(
    conn: Conn, estate: str, year: int, zone: dt.tzinfo = LOCAL_ZONE
) -> list[dict[str, Any]]:
    """Per account: balance at the start of the year, deposits, interest, repairs, and the
    balance at its end (from the ledger), the year in ``zone``."""
    start, end = year_bounds(year, zone)
    rows = conn.execute(
        "SELECT a.id, a.name, a.building_code,"
        " coalesce(sum(l.amount_fen) FILTER (WHERE j.at < %(s)s), 0)::bigint,"
        " coalesce(sum(l.amount_fen) FILTER (WHERE j.at >= %(s)s AND j.at < %(e)s"
        "   AND j.kind = 'deposit'), 0)::bigint,"
        " coalesce(sum(l.amount_fen) FILTER (WHERE j.at >= %(s)s AND j.at < %(e)s"
        "   AND j.kind = 'interest'), 0)::bigint,"
        " coalesce(-sum(l.amount_fen) FILTER (WHERE j.at >= %(s)s AND j.at < %(e)s"
        "   AND j.kind = 'repair'), 0)::bigint,"
        " coalesce(sum(l.amount_fen) FILTER (WHERE j.at < %(e)s), 0)::bigint"
        " FROM fund_accounts a LEFT JOIN fund_legs l ON l.account = 'fund:' || a.id"
        " LEFT JOIN fund_journal j ON j.id = l.journal_id"
        " WHERE a.estate_code = %(estate)s GROUP BY a.id ORDER BY a.building_code NULLS FIRST",
        {"s": start, "e": end, "estate": estate},
    ).fetchall()
    keys = ("account", "name", "building", "opening_fen", "deposits_fen", "interest_fen",
            "repairs_fen", "closing_fen")  # fmt: skip
    return [dict(zip(keys, r, strict=True)) for r in rows]


# ---------------------------------------------------------------------- per-home accounts


class Movement(_Model):
    at: dt.datetime
    kind: str  # deposit | interest | refund | repair
    amount_fen: int  # + into the home's share of the fund, - out of it
    case_id: int | None = None


class Home(_Model):
    unit_id: int
    building: str
    unit: str
    area_m2: Decimal
    balance_fen: int
    movements: list[Movement]


class HomeYear(_Model):
    """One home's share of an account over a year (the yearly report per home)."""

    year: int
    opening_fen: int
    deposits_fen: int
    interest_fen: int
    repairs_fen: int  # its shares of the repairs settled in the year (positive)
    other_fen: int  # refunds and corrections (+ in, - out)
    closing_fen: int


def home_year(home: Home, year: int, zone: dt.tzinfo = LOCAL_ZONE) -> HomeYear:
    """``home``'s movements summed over ``year``: opening + deposits + interest - repairs
    + other = closing, to the fen."""
    start, end = year_bounds(year, zone)
    during = [m for m in home.movements if start <= m.at < end]

    def total(kind: str) -> int:
        return sum(m.amount_fen for m in during if m.kind == kind)

    known = ("deposit", "interest", "repair")
    return HomeYear(
        year=year,
        opening_fen=sum(m.amount_fen for m in home.movements if m.at < start),
        deposits_fen=total("deposit"), interest_fen=total("interest"),
        repairs_fen=-total("repair"),
        other_fen=sum(m.amount_fen for m in during if m.kind not in known),
        closing_fen=sum(m.amount_fen for m in home.movements if m.at < end),
    )  # fmt: skip


@dataclass(frozen=True)
class _Unit:
    id: int
    building: str
    code: str
    area_m2: Decimal


def _units(conn: Conn, estate: str, building: str | None) -> list[_Unit]:
    """The homes an account covers (its building's, or the whole estate's), by id: the one
    list both the repair shares and the per-home credits are apportioned over, so the two
    reconcile by construction."""
    return [
        _Unit(int(u), str(b), str(c), Decimal(a))
        for u, b, c, a in conn.execute(
            "SELECT u.id, b.code, u.code, u.area_m2 FROM units u JOIN buildings b"
            " ON b.id = u.building_id WHERE b.estate_code = %s"
            " AND (%s::text IS NULL OR b.code = %s) ORDER BY u.id",
            (estate, building, building),
        )
    ]


def homes(conn: Conn, account_id: int) -> list[Home]:
    """Every home's share of an account (分户账), derived from the ledger: each deposit,
    interest or refund credited by floor area (``apportion``, exact to the fen), each
    settled repair's share debited. The balances sum to the account's balance exactly."""
    acc = conn.execute(
        "SELECT estate_code, building_code FROM fund_accounts WHERE id = %s", (account_id,)
    ).fetchone()
    if acc is None:
        raise CaseError(f"no fund account {account_id}")
    units = _units(conn, acc[0], acc[1])
    areas = [(u.id, u.area_m2) for u in units]
    moves: dict[int, list[Movement]] = {u: [] for u, _ in areas}
    if areas:
        for at, kind, amount in conn.execute(
            "SELECT j.at, j.kind, l.amount_fen FROM fund_legs l JOIN fund_journal j"
            " ON j.id = l.journal_id WHERE l.account = %s AND j.kind <> 'repair' ORDER BY j.id",
            (ledger.fund(account_id),),
        ):
            sign = 1 if amount > 0 else -1
            for u, share in apportion(abs(int(amount)), areas).items():
                if share:
                    moves[u].append(Movement(at=at, kind=kind, amount_fen=sign * share))
    for u, share, at, case in conn.execute(
        "SELECT s.unit_id, s.share_fen, c.settled_at, c.id FROM fund_shares s"
        " JOIN fund_cases c ON c.id = s.case_id WHERE c.account_id = %s ORDER BY c.settled_at",
        (account_id,),
    ):
        if int(u) in moves and share:
            moves[int(u)].append(
                Movement(at=at, kind="repair", amount_fen=-int(share), case_id=int(case))
            )
    return [
        Home(unit_id=u.id, building=u.building, unit=u.code, area_m2=u.area_m2,
             balance_fen=sum(m.amount_fen for m in moves[u.id]),
             movements=sorted(moves[u.id], key=lambda m: m.at))
        for u in units
    ]  # fmt: skip


# ---------------------------------------------------------------------- 先修后报


class Overdue(_Model):
    case_id: int
    estate_code: str
    building_code: str | None
    item: str
    state: str
    opened_by: str
    opened_at: dt.datetime
    apply_by: dt.datetime
    overdue_s: int  # how long past the deadline


def overdue_applications(conn: Conn, now: dt.datetime, scope: sql.Composable) -> list[Overdue]:
    """Repair-first cases whose application (the estimate with its evidence) is past its
    deadline, longest overdue first, within ``scope`` (a condition over ``estate_code``):
    for the housing authority to chase."""
    query = sql.SQL(
        "SELECT id, estate_code, building_code, item, state, opened_by, opened_at, apply_by"
        " FROM fund_cases WHERE repair_first AND applied_at IS NULL AND apply_by < %s"
        " AND state <> 'refused' AND {} ORDER BY apply_by, id"
    ).format(scope)
    return [
        Overdue(case_id=int(i), estate_code=e, building_code=b, item=it, state=st,
                opened_by=ob, opened_at=oa, apply_by=ab,
                overdue_s=int((now - ab).total_seconds()))
        for i, e, b, it, st, ob, oa, ab in conn.execute(query, (now,))
    ]  # fmt: skip


# ---------------------------------------------------------------------- objections


def object_to(conn: Conn, case_id: int, *, unit_id: int, text: str, actor: str,
              now: dt.datetime) -> int:  # fmt: skip
    """An owner's objection to a settled repair, during its disclosure period, from a home
    that paid a share of it."""
    if not text.strip():
        raise CaseError("say what you object to")
    row = conn.execute(
        "SELECT state, disclosed_until FROM fund_cases WHERE id = %s", (case_id,)
    ).fetchone()
    if row is None or row[0] not in ("settled", "closed"):
        raise CaseError(f"case {case_id} is not disclosed")
    if row[1] is None or now >= row[1]:  # settled before disclosure periods: none open
        ended = f" at {row[1]:%Y-%m-%d %H:%M} UTC" if row[1] is not None else ""
        raise CaseError(f"the disclosure period of case {case_id} ended{ended}")
    paid = conn.execute(
        "SELECT 1 FROM fund_shares WHERE case_id = %s AND unit_id = %s", (case_id, unit_id)
    ).fetchone()
    if paid is None:
        raise CaseError(f"your home paid no share of case {case_id}")
    got = conn.execute(
        "INSERT INTO fund_objections (case_id, unit_id, text, filed_by, filed_at)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (case_id, unit_id, text.strip(), actor, now),
    ).fetchone()
    assert got is not None
    _event(conn, case_id, "objection", actor, now, objection=int(got[0]))
    return int(got[0])


def answer(conn: Conn, objection_id: int, *, text: str, actor: str, now: dt.datetime) -> None:
    """The housing authority's answer to an objection (once)."""
    if not text.strip():
        raise CaseError("an answer says something")
    row = conn.execute(
        "UPDATE fund_objections SET answer = %s, answered_by = %s, answered_at = %s"
        " WHERE id = %s AND answered_at IS NULL RETURNING case_id",
        (text.strip(), actor, now, objection_id),
    ).fetchone()
    if row is None:
        raise CaseError(f"no unanswered objection {objection_id}")
    _event(conn, int(row[0]), "answered", actor, now, objection=objection_id)


def close_disclosed(conn: Conn, now: dt.datetime) -> int:
    """Close settled cases whose disclosure period is over and whose every objection is
    answered (a supervisor round); returns how many."""
    closed = 0
    for (case_id,) in conn.execute(
        "SELECT id FROM fund_cases c WHERE state = 'settled' AND disclosed_until <= %s"
        " AND NOT EXISTS (SELECT 1 FROM fund_objections o WHERE o.case_id = c.id"
        "   AND o.answered_at IS NULL) ORDER BY id",
        (now,),
    ).fetchall():
        with conn.transaction():
            conn.execute(
                "UPDATE fund_cases SET state = 'closed', closed_at = %s WHERE id = %s"
                " AND state = 'settled'",
                (now, case_id),
            )
            _event(conn, int(case_id), "closed", "system", now)
        closed += 1
    return closed


def home_of(conn: Conn, unit_id: int) -> list[tuple[int, Home]]:
    """An owner's home in each account that covers it (its building's, the estate's):
    (account id, the home's derived account)."""
    accounts = conn.execute(
        "SELECT a.id FROM fund_accounts a JOIN buildings b ON b.estate_code = a.estate_code"
        " JOIN units u ON u.building_id = b.id WHERE u.id = %s"
        " AND (a.building_code IS NULL OR a.building_code = b.code) ORDER BY a.id",
        (unit_id,),
    ).fetchall()
    out: list[tuple[int, Home]] = []
    for (account,) in accounts:
        mine = [h for h in homes(conn, int(account)) if h.unit_id == unit_id]
        out.extend((int(account), h) for h in mine)
    return out
