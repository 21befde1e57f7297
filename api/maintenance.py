"""Lift maintenance and inspection records through the API (TSG T5002, T7001).

The maintenance company records each visit from the phone: the lift type's checklist
(every item answered), technician, start and end, findings, photos. Market supervision
(or the inspection body through an admin) records each periodic inspection. Everyone who
sees the lift sees its records and what falls due next; overdue maintenance and
inspection follow from the records (``device_due``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from psycopg import sql
from pydantic import BaseModel, Field

from api import files
from api.auth import Principal, Role
from api.console import scoped_devices
from api.deps import Caller, ClockDep, Day, Db, Instant, allow
from api.files import AttachmentOut
from api.problems import Problem
from estate.db import Conn
from oversight import attachments, maintenance
from oversight.maintenance import InspectionResult, Result, VisitKind

router = APIRouter(prefix="/api/v1", tags=["maintenance"])


class ChecklistItemOut(BaseModel):
    code: str
    zh: str


class ChecklistOut(BaseModel):
    id: str
    title_zh: str
    interval_days: int
    items: list[ChecklistItemOut]


class VisitIn(BaseModel):
    technician: str = Field(min_length=1, max_length=64)
    technician_cert: str | None = Field(default=None, max_length=64, description="作业人员证")
    started_at: Instant
    ended_at: Instant
    kind: VisitKind = "half_monthly"
    items: dict[str, Result] = Field(description="every checklist item: ok, adjusted or fault")
    findings: str = Field(default="", max_length=4000)


class VisitOut(BaseModel):
    id: int
    estate_code: str
    device_code: str
    maintenance_code: str
    kind: str
    technician: str
    technician_cert: str | None
    started_at: dt.datetime
    ended_at: dt.datetime
    checklist: str
    items: dict[str, str]
    findings: str
    recorded_by: str
    recorded_at: dt.datetime
    photos: list[AttachmentOut]


class InspectionIn(BaseModel):
    inspected_on: Day
    result: InspectionResult
    next_due: Day
    report_no: str = Field(min_length=1, max_length=64)
    certificate_no: str | None = Field(
        default=None, max_length=64, description="安全检验合格标志: required unless it failed"
    )
    inspector: str = Field(min_length=1, max_length=120, description="the inspection body")
    note: str = Field(default="", max_length=2000)


class InspectionOut(BaseModel):
    id: int
    estate_code: str
    device_code: str
    inspected_on: dt.date
    result: str
    next_due: dt.date
    report_no: str
    certificate_no: str | None
    inspector: str
    note: str
    recorded_by: str
    recorded_at: dt.datetime


class RecordsOut(BaseModel):
    last_maintenance: dt.date | None = Field(description="the newest visit, else the registry's")
    maintenance_due: dt.date | None
    inspection_due: dt.date | None
    visits: list[VisitOut]
    inspections: list[InspectionOut]


def _lift(c: Conn, p: Principal, estate: str, code: str) -> tuple[int, str, str, str | None]:
    """A device the caller may see: (id, kind, subtype, maintenance company), else 404."""
    row = c.execute(
        sql.SQL(
            "WITH sd AS ({}) SELECT id, kind, subtype, maintenance_code FROM sd"
            " WHERE estate_code = %s AND code = %s"
        ).format(scoped_devices(p)),
        (estate, code),
    ).fetchone()
    if row is None:
        raise Problem(404, "not-found", "Not found", f"no device {estate}/{code} that you may see")
    return int(row[0]), str(row[1]), str(row[2]), row[3]


def _visit_by(c: Conn, p: Principal, estate: str, code: str, record_id: int) -> str:
    """The company that recorded visit ``record_id`` to a lift the caller sees; else 404."""
    device_id, _, _, _ = _lift(c, p, estate, code)
    row = c.execute(
        "SELECT maintenance_code FROM maintenance_records WHERE id = %s AND device_id = %s",
        (record_id, device_id),
    ).fetchone()
    if row is None:
        raise Problem(404, "not-found", "Not found", f"no visit {record_id} to {estate}/{code}")
    return str(row[0])


_VISIT = (
    "id, estate_code, device_code, maintenance_code, kind, technician, technician_cert,"
    " started_at, ended_at, checklist, items, findings, recorded_by, recorded_at"
)
_INSPECTION = (
    "id, estate_code, device_code, inspected_on, result, next_due, report_no, certificate_no,"
    " inspector, note, recorded_by, recorded_at"
)


def _visits(c: Conn, where: str, args: tuple[Any, ...]) -> list[VisitOut]:
    names = [n.strip() for n in _VISIT.split(",")]
    out = []
    for r in c.execute(
        f"SELECT {_VISIT} FROM maintenance_records WHERE {where}"  # noqa: S608 (constants)
        " ORDER BY ended_at DESC, id DESC LIMIT 100",
        args,
    ):
        d = dict(zip(names, r, strict=True))
        photos = [files.out(a) for a in attachments.listing(c, f"maintenance:{d['id']}")]
        out.append(VisitOut(**d, photos=photos))
    return out


@router.get("/devices/{estate}/{code}/maintenance/checklist", responses={404: {}, 422: {}})
def get_checklist(c: Db, p: Caller, estate: str, code: str) -> ChecklistOut:
    """The checklist a visit to this lift answers (TSG T5002 half-monthly items)."""
    _, kind, subtype, _ = _lift(c, p, estate, code)
    try:
        cl = maintenance.checklist_for(kind, subtype)
    except maintenance.RecordError as err:
        raise Problem(422, "no-checklist", "No checklist", str(err)) from None
    return ChecklistOut(
        id=cl.id,
        title_zh=cl.title_zh,
        interval_days=cl.interval_days,
        items=[ChecklistItemOut(code=i.code, zh=i.zh) for i in cl.items],
    )


@router.get("/devices/{estate}/{code}/maintenance", responses={404: {}})
def get_records(c: Db, p: Caller, estate: str, code: str) -> RecordsOut:
    """The lift's maintenance visits and inspections, newest first, and what falls due."""
    device_id, _, _, _ = _lift(c, p, estate, code)
    due = c.execute(
        "SELECT last_maintenance, inspection_due FROM device_due WHERE device_id = %s",
        (device_id,),
    ).fetchone()
    last, inspection_due = due if due is not None else (None, None)
    names = [n.strip() for n in _INSPECTION.split(",")]
    inspections = [
        InspectionOut(**dict(zip(names, r, strict=True)))
        for r in c.execute(
            f"SELECT {_INSPECTION} FROM inspection_records WHERE device_id = %s"  # noqa: S608
            " ORDER BY inspected_on DESC, id DESC LIMIT 100",
            (device_id,),
        )
    ]
    return RecordsOut(
        last_maintenance=last,
        maintenance_due=last + dt.timedelta(days=15) if last is not None else None,
        inspection_due=inspection_due,
        visits=_visits(c, "device_id = %s", (device_id,)),
        inspections=inspections,
    )


@router.post(
    "/devices/{estate}/{code}/maintenance", status_code=201, responses={403: {}, 404: {}, 422: {}}
)
def add_visit(
    *, c: Db, p: Caller, clock: ClockDep, estate: str, code: str, body: VisitIn
) -> VisitOut:
    """Record a maintenance visit (the lift's maintenance company)."""
    allow(p, Role.MAINTENANCE)
    _, _, _, maintainer = _lift(c, p, estate, code)
    if maintainer != p.org_code:
        raise Problem(403, "forbidden", "Forbidden", f"{estate}/{code} is not maintained by you")
    now = clock()
    visit = maintenance.Visit(
        technician=body.technician, started_at=body.started_at, ended_at=body.ended_at,
        items=body.items, findings=body.findings, kind=body.kind,
        technician_cert=body.technician_cert,
    )  # fmt: skip
    assert p.org_code is not None
    try:
        rid = maintenance.record_visit(c, estate, code, visit, org=p.org_code, actor=p.actor,
                                       now=now)  # fmt: skip
    except maintenance.RecordError as err:
        raise Problem(422, "bad-record", "Record refused", str(err)) from None
    return _visits(c, "id = %s", (rid,))[0]


@router.post(
    "/devices/{estate}/{code}/maintenance/{record_id}/photos",
    status_code=201,
    responses={403: {}, 404: {}, 413: {}, 422: {}},
    openapi_extra=files.UPLOAD_DOC,
)  # fmt: skip
def add_photo(
    *,
    c: Db,
    p: Caller,
    clock: ClockDep,
    estate: str,
    code: str,
    record_id: int,
    data: files.Upload,
    filename: Annotated[str, Query(min_length=1, max_length=255)],
) -> AttachmentOut:
    """A photo of the visit (the company that recorded it)."""
    allow(p, Role.MAINTENANCE)
    if _visit_by(c, p, estate, code, record_id) != p.org_code:
        raise Problem(403, "forbidden", "Forbidden", "only the company that recorded the visit")
    return files.store(c, subject=f"maintenance:{record_id}", part="photo", filename=filename,
                       data=data, actor=p.actor, now=clock())  # fmt: skip


@router.get(
    "/devices/{estate}/{code}/maintenance/{record_id}/photos/{photo_id}",
    response_class=Response,
    responses=files.DOWNLOAD_DOC,
)
def get_photo(
    *, c: Db, p: Caller, estate: str, code: str, record_id: int, photo_id: int
) -> Response:
    """One photo of a visit, to whoever sees the lift."""
    _visit_by(c, p, estate, code, record_id)
    return files.serve(c, f"maintenance:{record_id}", photo_id,
                       missing=f"no photo {photo_id} of visit {record_id}")  # fmt: skip


@router.post(
    "/devices/{estate}/{code}/inspections", status_code=201, responses={403: {}, 404: {}, 422: {}}
)
def add_inspection(
    *, c: Db, p: Caller, clock: ClockDep, estate: str, code: str, body: InspectionIn
) -> InspectionOut:
    """Record a periodic inspection (market supervision in its area; an admin for the
    inspection body)."""
    allow(p, Role.MARKET_INSPECTOR, Role.ADMIN)
    _lift(c, p, estate, code)
    try:
        rid = maintenance.record_inspection(
            c, estate, code, inspected_on=body.inspected_on, result=body.result,
            next_due=body.next_due, report_no=body.report_no,
            certificate_no=body.certificate_no, inspector=body.inspector,
            note=body.note, actor=p.actor, now=clock(),
        )  # fmt: skip
    except maintenance.RecordError as err:
        raise Problem(422, "bad-record", "Record refused", str(err)) from None
    names = [n.strip() for n in _INSPECTION.split(",")]
    row = c.execute(
        f"SELECT {_INSPECTION} FROM inspection_records WHERE id = %s",  # noqa: S608
        (rid,),
    ).fetchone()
    assert row is not None
    return InspectionOut(**dict(zip(names, row, strict=True)))
