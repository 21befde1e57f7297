"""The problem ledger (问题台账) across estates, with dynamic closing (动态销号).

A problem is one problem of a rectification notice, an overdue lift maintenance or
inspection, or a work order that missed a deadline. The ledger of a period holds every
problem that was open at any time in it (opened before its end and not closed before its
start), whenever it was opened, each with its history and its state at the end of each
day; filters by area, estate, authority, type and state; counts per estate for the
authorities' rankings; and a workbook in Chinese. The caller's scope comes in as SQL
conditions, so the API passes its own.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from psycopg import sql

from estate.db import Conn

# the authority that supervises each kind of problem that no notice names
AUTHORITY_OF_KIND = {
    "elevator": "market",
    "fire": "fire",
    "drainage": "housing",
    "water_supply": "housing",
    "general": "housing",
}
MAX_DAYS = 366


@dataclass(frozen=True)
class Scopes:
    """What the caller may see, as conditions over notices, supervision items, work orders
    and fund cases (aliases ``n``, ``s``, ``o`` and ``c``)."""

    notices: sql.Composable
    items: sql.Composable
    orders: sql.Composable
    cases: sql.Composable = field(default_factory=lambda: sql.SQL("false"))


@dataclass(frozen=True)
class Filters:
    area: str | None = None  # the area and every area under it
    estate: str | None = None
    authority: str | None = None  # fire | market | housing | street
    category: str | None = None  # elevator | fire | drainage | water_supply | general
    state: str | None = None  # open | closed (at the end of the period)


@dataclass(frozen=True)
class Step:
    at: dt.datetime
    change: str
    note: str = ""


@dataclass
class ProblemRow:
    source: str  # notice | overdue | breach | fund
    ref: str  # 消-SFX-2026-0001#2, a supervision item id, a work order id, a fund case id
    authority: str
    category: str
    estate_code: str
    device_code: str | None
    responsible: str | None  # the unit
    responsible_person: str | None
    problem: str
    measures: str
    due: dt.date | None
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    state: str  # the source's own state now
    supervised: bool  # 挂牌督办
    history: list[Step] = field(default_factory=list)
    days: dict[str, str] = field(default_factory=dict)  # local date → open | closed
    open_at_end: bool = True  # at the end of the period


def _area(column: str) -> sql.Composed:
    """The area and estate filters over ``column`` (an estate code)."""
    return sql.SQL(
        " AND (%(area)s::text IS NULL OR {e} IN (SELECT code FROM estates WHERE area_code IN ("
        "  WITH RECURSIVE a(code) AS (SELECT %(area)s::text UNION"
        "  SELECT c.code FROM areas c JOIN a ON c.parent_code = a.code) SELECT code FROM a)))"
        " AND (%(estate)s::text IS NULL OR {e} = %(estate)s)"
    ).format(e=sql.SQL(column))


def _query(scopes: Scopes) -> sql.Composed:
    # every name below is a constant; the scopes are psycopg Composables
    notice = sql.SQL(
        "SELECT 'notice' AS source, n.number || '#' || p.seq AS ref, n.authority, p.category,"
        " n.estate_code, p.device_code,"
        " coalesce(n.recipient_org, e.property_firm_code) AS responsible,"
        " p.responsible_person, p.problem, p.measures, p.deadline AS due, p.opened_at,"
        " CASE WHEN p.state = 'closed' THEN p.closed_at END AS closed_at, p.state,"
        " p.supervised_at IS NOT NULL AND p.state <> 'closed' AS supervised,"
        " n.id AS notice_id, p.seq"
        " FROM notice_problems p JOIN notices n ON n.id = p.notice_id"
        " JOIN estates e ON e.code = n.estate_code"
        " WHERE p.opened_at < %(end)s AND (p.state <> 'closed' OR p.closed_at >= %(start)s)"
        " AND {} {}"
    ).format(scopes.notices, _area("n.estate_code"))
    # a problem reopened after the period may have been closed in it: the history decides
    item = sql.SQL(
        "SELECT 'overdue', s.id::text, 'market', 'elevator', s.estate_code, s.device_code,"
        " s.maintenance_code, NULL, CASE s.item WHEN 'maintenance_overdue'"
        " THEN '电梯维保逾期（TSG T5002：每 15 日一次）' ELSE '电梯定期检验逾期（TSG T7001）' END,"
        " '', s.due, s.opened_at, s.closed_at,"
        " CASE WHEN s.closed_at IS NULL THEN 'open' ELSE 'closed' END, false, NULL, NULL"
        " FROM supervision_items s WHERE s.opened_at < %(end)s"
        " AND (s.closed_at IS NULL OR s.closed_at >= %(start)s) AND {} {}"
    ).format(scopes.items, _area("s.estate_code"))
    breach = sql.SQL(
        "SELECT 'breach', o.id::text, CASE o.category WHEN 'elevator' THEN 'market'"
        " WHEN 'fire' THEN 'fire' ELSE 'housing' END, o.category, o.estate_code, o.device_code,"
        " o.assignee, NULL, o.alert_type || ' 工单' || string_agg(CASE b.deadline"
        " WHEN 'acknowledge' THEN '接单' WHEN 'arrive' THEN '到场' ELSE '处置' END, '、'"
        " ORDER BY b.breached_at) || '超时', '', min(b.due_at)::date, min(b.breached_at),"
        " CASE WHEN o.state IN ('closed', 'cancelled') THEN coalesce(o.closed_at,"
        " o.cancelled_at) END, o.state, false, NULL, NULL"
        " FROM work_orders o JOIN work_order_breaches b ON b.order_id = o.id"
        " WHERE b.breached_at < %(end)s AND (o.state NOT IN ('closed', 'cancelled')"
        "  OR coalesce(o.closed_at, o.cancelled_at) >= %(start)s) AND {} {} GROUP BY o.id"
    ).format(scopes.orders, _area("o.estate_code"))
    # 先修后报: a repair started on the firm's declaration whose application (the estimate
    # with its evidence) was not filed by its deadline; open from the deadline until filed
    fund = sql.SQL(
        "SELECT 'fund', c.id::text, 'housing', 'general', c.estate_code, c.device_code,"
        " e.property_firm_code, NULL, '先修后报：维修资金使用申请逾期未报（' || c.item || '）',"
        " '', c.apply_by::date, c.apply_by, c.applied_at,"
        " CASE WHEN c.applied_at IS NULL THEN 'open' ELSE 'closed' END, false, NULL, NULL"
        " FROM fund_cases c JOIN estates e ON e.code = c.estate_code"
        " WHERE c.repair_first AND c.state <> 'refused' AND c.apply_by < %(end)s"
        " AND (c.applied_at IS NULL OR (c.applied_at > c.apply_by AND c.applied_at >= %(start)s))"
        " AND {} {}"
    ).format(scopes.cases, _area("c.estate_code"))
    return sql.SQL("{} UNION ALL {} UNION ALL {} UNION ALL {} ORDER BY 12, 2").format(
        notice, item, breach, fund
    )


def ledger(
    conn: Conn,
    scopes: Scopes,
    *,
    start: dt.datetime,
    end: dt.datetime,
    filters: Filters = Filters(),
    zone: ZoneInfo,
) -> list[ProblemRow]:
    """Every problem open at any time in [start, end) that the scopes allow, oldest first,
    with its history and its state at the end of each local day of the period."""
    if end <= start:
        raise ValueError("end must be after start")
    rows = conn.execute(
        _query(scopes),
        {"start": start, "end": end, "area": filters.area, "estate": filters.estate},
    ).fetchall()
    out: list[ProblemRow] = []
    notice_keys: list[tuple[int, int]] = []
    for r in rows:
        row = ProblemRow(*r[:15])
        if filters.authority is not None and row.authority != filters.authority:
            continue
        if filters.category is not None and row.category != filters.category:
            continue
        out.append(row)
        if row.source == "notice":
            notice_keys.append((int(r[15]), int(r[16])))
    _histories(conn, out, notice_keys)
    # the state per day for a period of up to a year (a longer one lists without it)
    days = _days(start, end, zone) if (end - start).days <= MAX_DAYS else []
    for row in out:
        row.days = _status_by_day(row, days, zone)
        row.open_at_end = _state_at(row, end) == "open"
    # open at any time in the period: a notice problem closed before the start is not
    out = [x for x in out if _open_in(x, start, end)]
    if filters.state is not None:
        out = [x for x in out if x.open_at_end == (filters.state == "open")]
    return out


def _histories(conn: Conn, rows: list[ProblemRow], notice_keys: list[tuple[int, int]]) -> None:
    # refs are unique within a source only (order 7 and fund case 7 are two problems)
    by_ref: dict[tuple[str, str], ProblemRow] = {(r.source, r.ref): r for r in rows}
    if notice_keys:
        ids = sorted({k[0] for k in notice_keys})
        seqs: dict[int, list[int]] = defaultdict(list)
        for nid, seq in notice_keys:
            seqs[nid].append(seq)
        for nid, number, pseq, at, change, note in conn.execute(
            "SELECT e.notice_id, n.number, e.problem_seq, e.at, e.change, e.note"
            " FROM notice_events e JOIN notices n ON n.id = e.notice_id"
            " WHERE e.notice_id = ANY(%s) ORDER BY e.at, e.id",
            (ids,),
        ):
            # a step on the whole notice (before notices had several problems, or its
            # issue and acknowledgement) belongs to each of its problems
            for seq in [pseq] if pseq is not None else seqs[int(nid)]:
                target = by_ref.get(("notice", f"{number}#{seq}"))
                if target is not None:
                    target.history.append(Step(at, str(change), str(note or "")))
    # supervision items and fund applications: opened at their due date, closed when done
    done = {"overdue": ("due {}", "records brought up to date"),
            "fund": ("application due {}", "application filed")}  # fmt: skip
    for r in rows:
        if r.source in done:
            opened, closed = done[r.source]
            r.history.append(Step(r.opened_at, "opened", opened.format(r.due)))
            if r.closed_at is not None:
                r.history.append(Step(r.closed_at, "closed", closed))
    breaches = [int(r.ref) for r in rows if r.source == "breach"]
    if breaches:
        for oid, at, deadline, told in conn.execute(
            "SELECT order_id, breached_at, deadline, escalated_to FROM work_order_breaches"
            " WHERE order_id = ANY(%s) ORDER BY breached_at",
            (breaches,),
        ):
            by_ref[("breach", str(oid))].history.append(
                Step(at, "breached", f"{deadline} deadline missed; told {told or 'nobody'}")
            )
        for r in rows:
            if r.source == "breach" and r.closed_at is not None:
                r.history.append(Step(r.closed_at, r.state))


_CLOSING = {"closed", "holds"}
_OPENING = {"issued", "relapsed", "opened", "breached", "rejected", "rectified", "supervised"}


def _days(start: dt.datetime, end: dt.datetime, zone: ZoneInfo) -> list[dt.date]:
    first = start.astimezone(zone).date()
    last = (end - dt.timedelta(microseconds=1)).astimezone(zone).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _status_by_day(row: ProblemRow, days: Sequence[dt.date], zone: ZoneInfo) -> dict[str, str]:
    """Open or closed at the end of each local day (blank before it was opened)."""
    changes = sorted(row.history, key=lambda s: s.at)
    out: dict[str, str] = {}
    i, state = 0, ""
    opened = row.opened_at.astimezone(zone).date()
    for d in days:
        while i < len(changes) and changes[i].at.astimezone(zone).date() <= d:
            c = changes[i].change
            if c in _CLOSING or c in ("cancelled",):
                state = "closed"
            elif c in _OPENING:
                state = "open"
            i += 1
        if d >= opened and not state:
            state = "open"
        out[d.isoformat()] = state
    return out


def _state_at(row: ProblemRow, t: dt.datetime) -> str:
    """Open or closed just before ``t``, from the history."""
    state = "open"
    for s in sorted(row.history, key=lambda s: s.at):
        if s.at >= t:
            break
        if s.change in _CLOSING or s.change == "cancelled":
            state = "closed"
        elif s.change in _OPENING:
            state = "open"
    return state


def _open_in(row: ProblemRow, start: dt.datetime, end: dt.datetime) -> bool:
    if row.opened_at >= end:
        return False
    if _state_at(row, start) == "open":
        return True
    # closed before the start: open in the period only if something reopened it in it
    return any(start <= s.at < end and s.change in ("relapsed", "reopened") for s in row.history)


@dataclass(frozen=True)
class EstateCount:
    estate_code: str
    problems: int
    open: int
    closed: int
    overdue: int
    supervised: int


def by_estate(rows: Iterable[ProblemRow], today: dt.date) -> list[EstateCount]:
    """Counts per estate, most open problems first (the authorities' ranking)."""
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for r in rows:
        a = acc[r.estate_code]
        a[0] += 1
        if r.open_at_end:
            a[1] += 1
            if r.due is not None and r.due < today:
                a[3] += 1
        else:
            a[2] += 1
        a[4] += int(r.supervised)
    out = [EstateCount(e, *v) for e, v in acc.items()]
    return sorted(out, key=lambda x: (-x.open, -x.overdue, x.estate_code))


# ---------------------------------------------------------------------- the workbook

SOURCE_ZH = {
    "notice": "整改通知", "overdue": "维保/检验逾期", "breach": "工单超时",
    "fund": "维修资金申请逾期",
}  # fmt: skip
AUTHORITY_ZH = {"fire": "消防", "market": "市场监管", "housing": "住建", "street": "街道"}
CATEGORY_ZH = {"elevator": "电梯", "fire": "消防", "drainage": "排水", "water_supply": "二次供水",
               "general": "综合"}  # fmt: skip
STATE_ZH = {
    "issued": "待整改", "rectified": "已整改待验收", "closed": "已销号", "reopened": "复查反弹",
    "open": "未销号", "maintenance_overdue": "维保逾期", "inspection_overdue": "检验逾期",
    "created": "已创建", "dispatched": "已派单", "acknowledged": "已接单", "on_site": "已到场",
    "resolved": "已处置", "verifying": "回头看", "cancelled": "已取消",
}  # fmt: skip
CHANGE_ZH = {
    "issued": "下发", "acknowledged": "签收", "rectified": "报告整改", "rejected": "退回",
    "closed": "验收销号", "holds": "回头看：未反弹", "relapsed": "回头看：反弹，重新整改",
    "supervised": "逾期，挂牌督办", "opened": "发现", "breached": "超时",
    "cancelled": "取消",
}  # fmt: skip
HEADERS_ZH = [
    "来源", "编号", "主管部门", "类型", "小区", "设备", "责任单位", "责任人", "问题", "整改措施",
    "整改期限", "发现时间", "销号时间", "当前状态", "挂牌督办", "处理经过",
]  # fmt: skip


def _local(v: dt.datetime | None, zone: ZoneInfo) -> str:
    return v.astimezone(zone).strftime("%Y-%m-%d %H:%M") if v is not None else ""


def table_zh(rows: Sequence[ProblemRow], zone: ZoneInfo) -> list[list[Any]]:
    """The ledger as rows of Chinese cells (local times), header first."""
    out: list[list[Any]] = [list(HEADERS_ZH)]
    for r in rows:
        out.append([
            SOURCE_ZH[r.source], r.ref, AUTHORITY_ZH.get(r.authority, r.authority),
            CATEGORY_ZH.get(r.category, r.category), r.estate_code, r.device_code or "",
            r.responsible or "", r.responsible_person or "",
            r.problem, r.measures,
            r.due.isoformat() if r.due else "", _local(r.opened_at, zone),
            _local(r.closed_at, zone), STATE_ZH.get(r.state, r.state),
            "是" if r.supervised else "否",
            "；".join(f"{_local(s.at, zone)} {CHANGE_ZH.get(s.change, s.change)}"
                     f"{' ' + s.note if s.note else ''}"
                     for s in r.history),
        ])  # fmt: skip
    return out


def workbook_zh(
    rows: Sequence[ProblemRow], counts: Sequence[EstateCount], *, title: str, zone: ZoneInfo
) -> bytes:
    """问题台账 (one row per problem), 每日状态 (open/closed at the end of each day) and
    各小区统计 (counts per estate)."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "问题台账"
    for line in table_zh(rows, zone):
        ws.append(line)
    ws.freeze_panes = "A2"
    days = list(rows[0].days) if rows else []
    daily = wb.create_sheet("每日状态")
    daily.append(["编号", "小区", *days])
    word = {"open": "未销号", "closed": "已销号", "": ""}
    for r in rows:
        daily.append([r.ref, r.estate_code, *(word[r.days[d]] for d in days)])
    daily.append(["未销号合计", "", *(sum(r.days[d] == "open" for r in rows) for d in days)])
    daily.freeze_panes = "C2"
    est = wb.create_sheet("各小区统计")
    est.append(["小区", "问题数", "未销号", "已销号", "逾期未整改", "挂牌督办"])
    for c in counts:
        est.append([c.estate_code, c.problems, c.open, c.closed, c.overdue, c.supervised])
    est.freeze_panes = "A2"
    wb.properties.title = title
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
