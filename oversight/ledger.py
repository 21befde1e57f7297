"""The ledger (台账): work orders of a period per unit and estate, with response times,
breaches and reopenings, and a summary per unit; exported as CSV or Excel (.xlsx),
since inspectors work in Excel.

Times are seconds from dispatch to acknowledgement, arrival and resolution of the
order's latest cycle (a reopened order starts again; its reopenings are counted). The
scope is a SQL condition over ``work_orders`` so the API can pass the caller's.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

from openpyxl import Workbook
from psycopg import sql

from estate.db import Conn


@dataclass(frozen=True)
class Line:
    order: int
    estate: str
    building: str | None
    device: str
    category: str
    alert: str
    severity: str
    unit: str | None  # the organisation the order is assigned to
    state: str
    created_at: dt.datetime
    acknowledged_at: dt.datetime | None
    arrived_at: dt.datetime | None
    resolved_at: dt.datetime | None
    closed_at: dt.datetime | None
    ack_s: float | None
    arrive_s: float | None
    resolve_s: float | None
    breaches: int
    breached: str  # e.g. "acknowledge,arrive"
    reopenings: int
    escalated_to: str  # organisations told on breaches


@dataclass(frozen=True)
class UnitSummary:
    unit: str | None
    orders: int
    closed: int
    open: int
    breaches: int
    reopenings: int
    median_ack_s: float | None
    median_arrive_s: float | None
    median_resolve_s: float | None


def lines(
    conn: Conn,
    *,
    start: dt.datetime,
    end: dt.datetime,
    estate: str | None = None,
    unit: str | None = None,
    scope: sql.Composable | None = None,
) -> list[Line]:
    """Orders created in [start, end), oldest first."""
    query = sql.SQL(
        "SELECT o.id, o.estate_code, o.building_code, o.device_code, o.category, o.alert_type,"
        " o.severity, o.assignee, o.state, o.created_at, o.acknowledged_at, o.arrived_at,"
        " o.resolved_at, o.closed_at,"
        " extract(epoch FROM o.acknowledged_at - o.dispatched_at)::float8,"
        " extract(epoch FROM o.arrived_at - o.dispatched_at)::float8,"
        " extract(epoch FROM o.resolved_at - o.dispatched_at)::float8,"
        " (SELECT count(*) FROM work_order_breaches b WHERE b.order_id = o.id),"
        " (SELECT coalesce(string_agg(DISTINCT b.deadline, ','), '')"
        "    FROM work_order_breaches b WHERE b.order_id = o.id),"
        " o.reopen_count,"
        " (SELECT coalesce(string_agg(DISTINCT b.escalated_to, ','), '')"
        "    FROM work_order_breaches b WHERE b.order_id = o.id)"
        " FROM work_orders o WHERE o.created_at >= %(start)s AND o.created_at < %(end)s"
        " AND (%(estate)s::text IS NULL OR o.estate_code = %(estate)s)"
        " AND (%(unit)s::text IS NULL OR o.assignee = %(unit)s) AND {}"
        " ORDER BY o.created_at, o.id"
    ).format(scope if scope is not None else sql.SQL("true"))
    rows = conn.execute(
        query, {"start": start, "end": end, "estate": estate, "unit": unit}
    ).fetchall()
    return [Line(*r) for r in rows]


def _median(xs: Sequence[float | None]) -> float | None:
    got = [x for x in xs if x is not None]
    return round(statistics.median(got), 1) if got else None


def summary(ls: Sequence[Line]) -> list[UnitSummary]:
    units = sorted({x.unit for x in ls}, key=lambda u: u or "")
    out = []
    for u in units:
        mine = [x for x in ls if x.unit == u]
        out.append(
            UnitSummary(
                unit=u,
                orders=len(mine),
                closed=sum(x.state == "closed" for x in mine),
                open=sum(x.state not in ("closed", "cancelled") for x in mine),
                breaches=sum(x.breaches for x in mine),
                reopenings=sum(x.reopenings for x in mine),
                median_ack_s=_median([x.ack_s for x in mine]),
                median_arrive_s=_median([x.arrive_s for x in mine]),
                median_resolve_s=_median([x.resolve_s for x in mine]),
            )
        )
    return out


def cell(v: Any) -> Any:
    """A value as a spreadsheet shows it: UTC times, dates in ISO form, 0.1 s."""
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float):
        return round(v, 1)
    return v


HEADERS = [f.name for f in fields(Line)]
SUMMARY_HEADERS = [f.name for f in fields(UnitSummary)]


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with ``header``; cells as ``cell`` renders them (None as empty)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else cell(v) for v in r])
    return buf.getvalue()


def workbook(
    sheets: Mapping[str, tuple[Sequence[str], Iterable[Sequence[Any]]]], *, title: str
) -> bytes:
    """An .xlsx with one sheet per entry (header row frozen); cells as ``cell`` renders."""
    wb = Workbook()
    first = wb.active
    assert first is not None
    wb.remove(first)
    for name, (header, rows) in sheets.items():
        ws = wb.create_sheet(name)
        ws.append(list(header))
        for r in rows:
            ws.append([cell(v) for v in r])
        ws.freeze_panes = "A2"
    wb.properties.title = title
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def to_csv(ls: Sequence[Line]) -> str:
    """One row per order; times in UTC. (The summary is the Excel file's second sheet.)"""
    return csv_text(HEADERS, (astuple(x) for x in ls))


def to_xlsx(ls: Sequence[Line], *, title: str) -> bytes:
    """A workbook: 'orders' (one row per order) and 'units' (the summary per unit)."""
    return workbook(
        {
            "orders": (HEADERS, (astuple(x) for x in ls)),
            "units": (SUMMARY_HEADERS, (astuple(s) for s in summary(ls))),
        },
        title=title,
    )
