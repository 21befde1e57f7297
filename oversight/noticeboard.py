"""What an estate's noticeboard (公示栏) shows its owners (seed 001 task 20): who keeps the
lifts, fire systems and pumps and how to reach them, each lift's 96333 rescue code,
registration and maintenance dates, and the year's maintenance spending per company.
The spending is the ``maintenance_spending`` table, recorded by the property firm."""

from __future__ import annotations

import datetime as dt
from typing import Any

from estate.db import Conn

KINDS = ("elevator", "fire", "drainage", "water_supply")


class BoardError(ValueError):
    """The entry cannot be recorded; the message says why."""


def set_spending(
    conn: Conn, estate: str, *, year: int, kind: str, org: str, amount_fen: int, note: str,
    actor: str, now: dt.datetime,
) -> None:  # fmt: skip
    """Record (or correct) what the estate paid ``org`` for ``kind`` maintenance in ``year``."""
    if kind not in KINDS:
        raise BoardError(f"kind is one of {', '.join(KINDS)}")
    if amount_fen < 0:
        raise BoardError("an amount is not negative")
    if year > now.year:
        raise BoardError(f"{year} has not begun")
    found = conn.execute("SELECT 1 FROM organisations WHERE code = %s", (org,)).fetchone()
    if found is None:
        raise BoardError(f"no organisation {org} in the registry")
    conn.execute(
        "INSERT INTO maintenance_spending (estate_code, year, kind, org_code, amount_fen, note,"
        " recorded_by, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (estate_code, year, kind, org_code) DO UPDATE SET"
        " amount_fen = EXCLUDED.amount_fen, note = EXCLUDED.note,"
        " recorded_by = EXCLUDED.recorded_by, recorded_at = EXCLUDED.recorded_at",
        (estate, year, kind, org, amount_fen, note, actor, now),
    )


def board(conn: Conn, estate: str, year: int) -> dict[str, Any] | None:
    """The noticeboard of ``estate`` for ``year``; None for an unknown estate."""
    head = conn.execute(
        "SELECT e.code, e.name, e.address, o.name, o.phone FROM estates e"
        " LEFT JOIN organisations o ON o.code = e.property_firm_code WHERE e.code = %s",
        (estate,),
    ).fetchone()
    if head is None:
        return None
    companies = [
        {"kind": k, "code": c, "name": n, "phone": ph, "devices": int(cnt)}
        for k, c, n, ph, cnt in conn.execute(
            "SELECT d.kind, o.code, o.name, o.phone, count(*) FROM devices d"
            " JOIN organisations o ON o.code = d.maintenance_code"
            " WHERE d.estate_code = %s AND d.active GROUP BY d.kind, o.code, o.name, o.phone"
            " ORDER BY d.kind, o.code",
            (estate,),
        )
    ]
    lifts = [
        {"code": c, "location": loc, "emergency_code": rescue, "registration_no": reg,
         "maintenance_code": m, "last_maintenance": last, "inspection_due": due}
        for c, loc, rescue, reg, m, last, due in conn.execute(
            "SELECT d.code, d.location, d.emergency_code, d.registration_no, d.maintenance_code,"
            " u.last_maintenance, u.inspection_due FROM devices d"
            " JOIN device_due u ON u.device_id = d.id"
            " WHERE d.estate_code = %s AND d.kind = 'elevator' AND d.active ORDER BY d.code",
            (estate,),
        )
    ]  # fmt: skip
    spending = [
        {"kind": k, "org_code": o, "org_name": n, "amount_fen": int(a), "note": note}
        for k, o, n, a, note in conn.execute(
            "SELECT s.kind, s.org_code, o.name, s.amount_fen, s.note FROM maintenance_spending s"
            " JOIN organisations o ON o.code = s.org_code"
            " WHERE s.estate_code = %s AND s.year = %s ORDER BY s.kind, s.org_code",
            (estate, year),
        )
    ]
    return {
        "estate_code": head[0], "estate_name": head[1], "address": head[2],
        "property_firm": {"name": head[3], "phone": head[4]} if head[3] else None,
        "companies": companies, "lifts": lifts, "year": year, "spending": spending,
        "lift_spending_fen": sum(s["amount_fen"] for s in spending if s["kind"] == "elevator"),
    }  # fmt: skip
