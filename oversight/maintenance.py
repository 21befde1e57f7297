"""Lift maintenance and inspection records: the ``maintenance_records`` and
``inspection_records`` tables (append-only).

The maintenance company records each visit (TSG T5002: at least every 15 days) with its
technician, start and end, every item of the lift type's checklist (``checklists.yaml``)
answered, and its findings; photos go to ``oversight.attachments`` under
``maintenance:{id}``. The inspection body or market supervision records each periodic
inspection (TSG T7001) with its result, report number and the next due date. What is due
follows from the records (the ``device_due`` view); the registry's dates are only the
starting point. Time is passed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from estate.db import Conn
from estate.yamldata import validate_yaml

Result = Literal["ok", "adjusted", "fault"]
RESULTS: tuple[Result, ...] = ("ok", "adjusted", "fault")
VisitKind = Literal["half_monthly", "quarterly", "half_yearly", "yearly"]
InspectionResult = Literal["pass", "pass_after_rectification", "fail"]
MAX_VISIT = dt.timedelta(hours=12)


class RecordError(ValueError):
    """The record cannot be taken; the message says what is wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(_Model):
    code: str = Field(pattern=r"^[A-Z][0-9]{2}$")
    zh: str


class Checklist(_Model):
    id: str
    title_zh: str
    subtypes: list[str] = Field(min_length=1)
    interval_days: int = Field(gt=0)
    items: list[Item] = Field(min_length=1)


class Checklists(_Model):
    version: Literal[1]
    checklists: list[Checklist]


@cache
def checklists() -> Checklists:
    """The shipped checklists (``oversight/checklists.yaml``)."""
    text = (resources.files("oversight") / "checklists.yaml").read_text(encoding="utf-8")
    return validate_yaml(
        text, Checklists, source="oversight/checklists.yaml", what="checklists",
        error=RecordError,
    )  # fmt: skip


def checklist_for(kind: str, subtype: str) -> Checklist:
    """The checklist of a lift type; RecordError for devices without one."""
    if kind == "elevator":
        for c in checklists().checklists:
            if subtype in c.subtypes:
                return c
    raise RecordError(f"no maintenance checklist for {kind}/{subtype}: lifts only")


@dataclass(frozen=True)
class Visit:
    technician: str
    started_at: dt.datetime
    ended_at: dt.datetime
    items: dict[str, Result]
    findings: str = ""
    kind: VisitKind = "half_monthly"
    technician_cert: str | None = None


def _device(conn: Conn, estate: str, code: str) -> tuple[int, str, str, str | None]:
    row = conn.execute(
        "SELECT id, kind, subtype, maintenance_code FROM devices"
        " WHERE estate_code = %s AND code = %s",
        (estate, code),
    ).fetchone()
    if row is None:
        raise RecordError(f"no device {estate}/{code}")
    return int(row[0]), str(row[1]), str(row[2]), row[3]


def record_visit(
    conn: Conn, estate: str, code: str, visit: Visit, *, org: str, actor: str, now: dt.datetime
) -> int:
    """Record a maintenance visit by ``org`` (the device's maintenance company)."""
    device_id, kind, subtype, maintainer = _device(conn, estate, code)
    if maintainer != org:
        raise RecordError(f"{estate}/{code} is maintained by {maintainer or 'nobody'}, not {org}")
    checklist = checklist_for(kind, subtype)
    if visit.ended_at <= visit.started_at:
        raise RecordError("the visit ends after it starts")
    if visit.ended_at > now + dt.timedelta(minutes=5):
        raise RecordError("the visit cannot end in the future")
    if visit.ended_at - visit.started_at > MAX_VISIT:
        raise RecordError("a visit lasts at most 12 hours: record each day's visit")
    known = {i.code for i in checklist.items}
    missing = [i.code for i in checklist.items if i.code not in visit.items]
    unknown = sorted(set(visit.items) - known)
    if unknown:
        raise RecordError(f"not on {checklist.id}: {', '.join(unknown)}")
    if missing:
        raise RecordError(
            f"every item of {checklist.id} is answered; missing: {', '.join(missing)}"
        )
    bad = sorted(k for k, v in visit.items.items() if v not in RESULTS)
    if bad:
        raise RecordError(f"items {', '.join(bad)}: the answer is ok, adjusted or fault")
    faults = sorted(k for k, v in visit.items.items() if v == "fault")
    if faults and not visit.findings.strip():
        raise RecordError(f"items {', '.join(faults)} are faults: describe them in the findings")
    if not visit.technician.strip():
        raise RecordError("name the technician")
    row = conn.execute(
        "INSERT INTO maintenance_records (device_id, estate_code, device_code, maintenance_code,"
        " kind, technician, technician_cert, started_at, ended_at, checklist, items, findings,"
        " recorded_by, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s, %s) RETURNING id",
        (device_id, estate, code, org, visit.kind, visit.technician.strip(),
         visit.technician_cert, visit.started_at, visit.ended_at, checklist.id,
         Jsonb(visit.items), visit.findings, actor, now),
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def record_inspection(
    conn: Conn,
    estate: str,
    code: str,
    *,
    inspected_on: dt.date,
    result: InspectionResult,
    next_due: dt.date,
    report_no: str,
    certificate_no: str | None,
    inspector: str,
    note: str,
    actor: str,
    now: dt.datetime,
) -> int:
    """Record a periodic inspection (年检) and the next due date."""
    device_id, kind, _, _ = _device(conn, estate, code)
    if kind != "elevator":
        raise RecordError(f"{estate}/{code} is a {kind} device: periodic inspections are lifts'")
    if inspected_on > now.date():
        raise RecordError("the inspection cannot be in the future")
    if next_due <= inspected_on:
        raise RecordError("the next inspection falls due after this one")
    if next_due > inspected_on + dt.timedelta(days=366 * 2):
        raise RecordError("the next inspection falls due within two years")
    if result == "fail" and not note.strip():
        raise RecordError("a failed inspection says what failed (note)")
    if result != "fail" and not (certificate_no or "").strip():
        raise RecordError("a passed inspection records its inspection mark (certificate_no)")
    row = conn.execute(
        "INSERT INTO inspection_records (device_id, estate_code, device_code, inspected_on,"
        " result, next_due, report_no, certificate_no, inspector, note, recorded_by,"
        " recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (device_id, estate, code, inspected_on, result, next_due, report_no,
         (certificate_no or "").strip() or None, inspector, note, actor, now),
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def seed_demo(conn: Conn, now: dt.datetime, *, overdue: int = 2) -> int:
    """The demo county's maintenance history: every lift maintained within the last 1 to
    13 days, except ``overdue`` of them (the first by code), last seen 20 days ago, so the
    console shows a few overdue lifts, not all of them. Skipped when records exist."""
    if conn.execute("SELECT 1 FROM maintenance_records LIMIT 1").fetchone() is not None:
        return 0
    lifts = conn.execute(
        "SELECT estate_code, code, subtype, maintenance_code FROM devices"
        " WHERE kind = 'elevator' AND active AND maintenance_code IS NOT NULL"
        " ORDER BY estate_code, code"
    ).fetchall()
    n = 0
    for i, (estate, code, subtype, org) in enumerate(lifts):
        # the same lift gets the same day in every demo (a hash, not a random draw)
        days = (
            20 if i < overdue else 1 + hashlib.sha256(f"{estate}/{code}".encode()).digest()[0] % 13
        )
        ended = now - dt.timedelta(days=days, hours=2)
        items: dict[str, Result] = {c.code: "ok" for c in checklist_for("elevator", subtype).items}
        record_visit(
            conn, str(estate), str(code),
            Visit(technician="演示维保员", started_at=ended - dt.timedelta(minutes=50),
                  ended_at=ended, items=items),
            org=str(org), actor="demo", now=now,
        )  # fmt: skip
        n += 1
    return n
