"""Emergency repair cases (紧急维修) paid from the fund, from an alert or work order to the
owners' disclosure.

opened (eligibility checked against the city's emergency list, evidence attached) →
estimated → approved (by the street office or housing authority, or by the owners'
standing authorisation within its limits) → repaired → settled (the actual cost paid from
the account, with the invoice reference; apportioned to owners by floor area) → disclosed
to the building's owners. Refused, with the reason, wherever the rules say no. Every
decision is a ``fund_case_events`` row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from estate.db import Conn
from estate.settings import load_settings
from estate.yamldata import validate_yaml
from fund import ledger
from fund.ledger import Leg


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(_Model):
    id: str
    title_zh: str
    title_en: str
    alerts: list[str] = Field(min_length=1)
    evidence: list[str] = []  # e.g. rectification_notice


class Standing(_Model):
    cap_per_item_fen: int = Field(gt=0)
    share_of_fund: float = Field(gt=0, le=1)
    window_days: int = Field(gt=0)


class City(_Model):
    standing_authorisation: Standing | None = None
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
                    "SELECT ts, to_jsonb(t) - 'ts' - 'device_id' - 'seq' - 'received_at'"
                    " FROM telemetry t WHERE device_id = %s AND ts BETWEEN %s AND %s"
                    " ORDER BY ts LIMIT 500",
                    (dev, first - dt.timedelta(minutes=30), first + dt.timedelta(minutes=30)),
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
) -> int:
    """Open a case from an alert or a work order. An ineligible one is stored as refused
    (with the reason) and ``CaseError`` says why."""
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
        "SELECT alert_type, estate_code, building_code FROM alerts WHERE id = %s", (alert_id,)
    ).fetchone()
    if found is None:
        raise CaseError(f"no alert {alert_id}")
    alert_type, estate, building = found
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
    if dup is not None:
        raise CaseError(f"case {dup[0]} is open for this failure already")
    city = city_of(conn, estate)
    account = account_of(conn, estate, building)
    reason = _ineligible(conn, rules, city=city, item_id=item, alert_type=alert_type,
                         estate=estate)  # fmt: skip
    with conn.transaction():
        got = conn.execute(
            "INSERT INTO fund_cases (account_id, estate_code, building_code, item, list_city,"
            " alert_id, order_id, state, evidence, refused_reason, opened_by, opened_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (account, estate, building, item, city, alert_id, order_id,
             "refused" if reason else "opened", Jsonb(_evidence(conn, alert_id, order_id)),
             reason, actor, now),
        ).fetchone()  # fmt: skip
        assert got is not None
        case_id = int(got[0])
        _event(conn, case_id, "refused" if reason else "opened", actor, now,
               item=item, alert=alert_id, reason=reason)  # fmt: skip
    if reason:
        raise CaseError(f"case {case_id} refused: {reason}")
    return case_id


def _ineligible(conn: Conn, rules: EmergencyList, *, city: str, item_id: str,
                alert_type: str, estate: str) -> str | None:  # fmt: skip
    c = rules.cities.get(city)
    if c is None:
        return f"city {city} has no emergency repair list"
    item = next((i for i in c.items if i.id == item_id), None)
    if item is None:
        return f"{item_id} is not on {city}'s emergency repair list"
    if alert_type not in item.alerts:
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


def estimate(conn: Conn, case_id: int, amount_fen: int, *, actor: str, now: dt.datetime) -> None:
    if amount_fen <= 0:
        raise CaseError("an estimate must be positive")
    with conn.transaction():
        _step(conn, case_id, ("opened", "estimated"))
        conn.execute(
            "UPDATE fund_cases SET state = 'estimated', estimate_fen = %s WHERE id = %s",
            (amount_fen, case_id),
        )
        _event(conn, case_id, "estimated", actor, now, estimate_fen=amount_fen)


def approve(conn: Conn, case_id: int, *, by: str, actor: str, now: dt.datetime,
            rules: EmergencyList | None = None) -> str:  # fmt: skip
    """``by``: 'street_office:<org>' / 'housing_authority:<org>' (a person decided), or
    'standing' (the owners' standing authorisation, checked against its limits)."""
    refused: str | None = None
    with conn.transaction():
        _, account, est, city, _estate = _step(conn, case_id, ("estimated",))
        if by == "standing":
            refused = _over_standing(conn, rules or load_list(), city=city, account=account,
                                     est=int(est), now=now)  # fmt: skip
        if refused:
            # the refusal is a decision too: recorded, then reported (after the commit)
            _event(conn, case_id, "standing_refused", actor, now, reason=refused)
        else:
            conn.execute(
                "UPDATE fund_cases SET state = 'approved', approval = %s WHERE id = %s",
                (by, case_id),
            )
            _event(conn, case_id, "approved", actor, now, by=by, estimate_fen=est)
    if refused:
        raise CaseError(f"the standing authorisation does not cover it: {refused}")
    return by


def _over_standing(conn: Conn, rules: EmergencyList, *, city: str, account: int, est: int,
                   now: dt.datetime) -> str | None:  # fmt: skip
    c = rules.cities.get(city)
    s = c.standing_authorisation if c else None
    if s is None:
        return f"{city} has no standing authorisation"
    if est > s.cap_per_item_fen:
        return f"the estimate {est} fen is over the {s.cap_per_item_fen} fen cap per item"
    since = now - dt.timedelta(days=s.window_days)
    row = conn.execute(
        "SELECT (SELECT balance_fen FROM fund_accounts WHERE id = %(a)s),"
        " coalesce((SELECT sum(cost_fen) FROM fund_cases WHERE account_id = %(a)s"
        "   AND approval = 'standing' AND state = 'settled' AND settled_at >= %(since)s), 0),"
        " coalesce((SELECT sum(estimate_fen) FROM fund_cases WHERE account_id = %(a)s"
        "   AND approval = 'standing' AND state IN ('approved', 'repaired')), 0)",
        {"a": account, "since": since},
    ).fetchone()
    assert row is not None
    balance, spent, pending = (int(x) for x in row)
    fund_size = balance + spent  # the fund as it was before this window's standing spending
    limit = int(Decimal(fund_size) * Decimal(str(s.share_of_fund)))
    if spent + pending + est > limit:
        return (
            f"{spent + pending} fen already spent or approved under it in {s.window_days} days;"
            f" with {est} fen more it would pass {s.share_of_fund:.0%} of the fund ({limit} fen)"
        )
    return None


def repaired(conn: Conn, case_id: int, *, note: str, actor: str, now: dt.datetime) -> None:
    if not note.strip():
        raise CaseError("say what was repaired")
    with conn.transaction():
        _step(conn, case_id, ("approved",))
        conn.execute("UPDATE fund_cases SET state = 'repaired' WHERE id = %s", (case_id,))
        _event(conn, case_id, "repaired", actor, now, note=note)


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
           now: dt.datetime) -> int:  # fmt: skip
    """Pay the actual cost from the account (refused if it cannot cover it) and apportion
    it to the owners by floor area. Idempotent by ``key``; a case is paid once."""
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
        state, account, _est, _city, estate = _step(conn, case_id, ("repaired", "settled"))
        if state == "settled":
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
        jid, _ = ledger.post(
            conn, kind="repair", key=key, actor=actor, now=now, case_id=case_id,
            memo=f"case {case_id}, invoice {invoice_ref}",
            legs=[Leg(ledger.fund(account), -cost_fen), Leg("external:contractor", cost_fen)],
        )  # fmt: skip
        building = conn.execute(
            "SELECT building_code FROM fund_accounts WHERE id = %s", (account,)
        ).fetchone()
        assert building is not None
        areas = [
            (int(u), Decimal(a))
            for u, a in conn.execute(
                "SELECT u.id, u.area_m2 FROM units u JOIN buildings b ON b.id = u.building_id"
                " WHERE b.estate_code = %s AND (%s::text IS NULL OR b.code = %s) ORDER BY u.id",
                (estate, building[0], building[0]),
            )
        ]
        shares = apportion(cost_fen, areas)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO fund_shares (case_id, unit_id, area_m2, share_fen)"
                " VALUES (%s, %s, %s, %s)",
                [(case_id, u, a, shares[u]) for u, a in areas],
            )
        conn.execute(
            "UPDATE fund_cases SET state = 'settled', cost_fen = %s, invoice_ref = %s,"
            " journal_id = %s, settled_at = %s WHERE id = %s",
            (cost_fen, invoice_ref, jid, now, case_id),
        )
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
    shares: list[Share]


def disclosure(conn: Conn, estate: str) -> list[Disclosed]:
    """Completed emergency repairs of an estate, each with every owner's share."""
    out = []
    for cid, building, item, at, cost, inv, appr in conn.execute(
        "SELECT id, building_code, item, settled_at, cost_fen, invoice_ref, approval"
        " FROM fund_cases WHERE estate_code = %s AND state = 'settled' ORDER BY settled_at",
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
                      shares=shares)
        )  # fmt: skip
    return out


def yearly_report(conn: Conn, estate: str, year: int) -> list[dict[str, Any]]:
    """Per account: balance at the start of the year, deposits, interest, repairs, and the
    balance at its end (from the ledger)."""
    start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
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
