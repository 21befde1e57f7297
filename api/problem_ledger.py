"""The problem ledger (问题台账) for the authorities: every problem open at any time in a
period (notice problems, overdue lift maintenance and inspections, work orders that missed
a deadline), with its history and its state per day (动态销号), filtered, counted per estate
for rankings, and exported (JSON, CSV or an Excel workbook in Chinese)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from psycopg import sql
from pydantic import BaseModel, Field

from api.auth import Principal, Role
from api.deps import Caller, ClockDep, Db, Instant
from api.fund import fund_scope
from api.notices import notice_scope
from api.problems import Problem
from api.workorders import ledger_scope
from estate.db import Conn
from estate.settings import LOCAL_ZONE
from oversight import problems
from oversight.ledger import csv_text

router = APIRouter(prefix="/api/v1", tags=["inspections"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class StepOut(BaseModel):
    at: dt.datetime
    change: str
    note: str


class ProblemOut(BaseModel):
    source: Literal["notice", "overdue", "breach", "fund"]
    ref: str = Field(
        description="notice number#problem, supervision item id, work order id, or fund case id"
        " (fund: a repair-first case whose application is overdue)"
    )
    authority: Literal["fire", "market", "housing", "street"]
    category: str
    estate_code: str
    device_code: str | None
    responsible: str | None = Field(description="the responsible unit")
    responsible_person: str | None
    problem: str
    measures: str
    due: dt.date | None
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    state: str
    supervised: bool = Field(description="挂牌督办")
    open_at_end: bool = Field(description="not closed at the end of the period")
    history: list[StepOut]
    days: dict[str, Literal["open", "closed", ""]] = Field(
        description="state at the end of each day of the period (Asia/Shanghai)"
    )


class EstateCountOut(BaseModel):
    estate_code: str
    problems: int
    open: int
    closed: int
    overdue: int
    supervised: int


def scopes(p: Principal) -> problems.Scopes:
    """The caller's scope over each source."""
    if p.role in (Role.ADMIN, Role.HOUSING_AUTHORITY, Role.MARKET_INSPECTOR, Role.STREET_OFFICE,
                  Role.OPERATOR, Role.MANAGER):  # fmt: skip
        items: sql.Composable = p.estate_scope("estate_code")
    elif p.role is Role.MAINTENANCE:
        items = sql.SQL("maintenance_code = {}").format(sql.Literal(p.org_code))
    else:
        items = sql.SQL("false")
    return problems.Scopes(
        notices=notice_scope(p), items=items, orders=ledger_scope(p),
        cases=fund_scope(p, "c.estate_code"),
    )  # fmt: skip


Authority = Literal["fire", "market", "housing", "street"]
Category = Literal["elevator", "fire", "drainage", "water_supply", "general"]


def _rows(
    c: Conn, p: Principal, start: dt.datetime, end: dt.datetime, f: problems.Filters
) -> list[problems.ProblemRow]:
    if p.role is Role.OWNER:
        raise Problem(403, "forbidden", "Forbidden", "owners have no problem ledger")
    try:
        return problems.ledger(c, scopes(p), start=start, end=end, filters=f, zone=LOCAL_ZONE)
    except ValueError as err:
        raise Problem(422, "bad-period", "Bad period", str(err)) from None


@router.get(
    "/problems",
    response_model=None,
    responses={
        200: {
            "content": {"text/csv": {}, XLSX: {}},
            "description": "the problem ledger (JSON, CSV or an Excel workbook in Chinese)",
        },
        422: {},
    },
)
def get_problems(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    start: Instant,
    end: Instant,
    area: str | None = None,
    estate: str | None = None,
    authority: Authority | None = None,
    type: Annotated[Category | None, Query(description="the problem's kind")] = None,
    state: Annotated[
        Literal["open", "closed"] | None, Query(description="at the end of the period")
    ] = None,
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
) -> Response | list[ProblemOut]:
    """Every problem open at any time in [start, end) that you may see, oldest first."""
    f = problems.Filters(area=area, estate=estate, authority=authority, category=type, state=state)
    rows = _rows(c, p, start, end, f)
    if format == "json":
        return [
            ProblemOut(
                **{k: getattr(r, k) for k in ProblemOut.model_fields if k != "history"},
                history=[StepOut(at=s.at, change=s.change, note=s.note) for s in r.history],
            )
            for r in rows
        ]
    name = f"problems-{start.astimezone(LOCAL_ZONE):%Y%m%d}-{end.astimezone(LOCAL_ZONE):%Y%m%d}"
    if format == "csv":
        header, *body = problems.table_zh(rows, LOCAL_ZONE)
        return Response(
            csv_text(header, body).encode("utf-8-sig"),  # the BOM: Excel reads UTF-8
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    counts = problems.by_estate(rows, min(clock(), end).astimezone(LOCAL_ZONE).date())
    return Response(
        problems.workbook_zh(rows, counts, title=f"问题台账 {name}", zone=LOCAL_ZONE),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


@router.get("/problems/by-estate", responses={422: {}})
def problems_by_estate(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    start: Instant,
    end: Instant,
    area: str | None = None,
    authority: Authority | None = None,
    type: Annotated[Category | None, Query(description="the problem's kind")] = None,
) -> list[EstateCountOut]:
    """Counts per estate for the period, most open problems first (rankings)."""
    rows = _rows(c, p, start, end, problems.Filters(area=area, authority=authority, category=type))
    today = min(clock(), end).astimezone(LOCAL_ZONE).date()
    return [EstateCountOut(**vars(x)) for x in problems.by_estate(rows, today)]
