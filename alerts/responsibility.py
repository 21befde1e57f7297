"""The responsibility list (事件处置权责清单) as data: who handles an alert, by when, and
who is told when they do not.

Each row matches a scope (the whole city, an area such as a district or county, one
estate, or one building), a device kind,
optionally alert types, and a minimum severity; it names the responsible party, the
deadlines (acknowledge, arrive on site, resolve) and the escalation chain. Parties are
roles resolved per device from the registry ("the device's maintenance company", "the
estate's property firm", "the street office of its area", …) or an organisation code.

The most specific matching row wins: a building row over an estate row over an area row
(the nearest area above the estate first) over the city row; then a row naming the
alert type over one for the whole kind; then the higher minimum severity. An alert no
row covers is a ``Gap``: reported, never dropped. Deadlines count from the alarm (the
first evidence, device time), not from dispatch. ``inform`` parties are told at
dispatch (the lift's user, the property firm, hears of a trapped passenger at once);
``on_confirmed`` parties are told the moment a fire alarm is confirmed (119).

This module decides; creating and supervising work orders from it is ``dispatch``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from alerts.rules import Severity, SeverityName
from estate.db import Conn
from estate.registry import Kind
from estate.yamldata import validate_yaml

Party = Literal[
    "maintenance_company",  # the device's 维保单位 (registry: devices.maintenance)
    "property_firm",  # the estate's 物业服务企业
    "street_office",  # of the estate's area (or an area above it)
    "fire_brigade",
    "market_supervision",
    "housing_authority",
]
PARTIES: tuple[str, ...] = Party.__args__  # type: ignore[attr-defined]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Model):
    """Empty: the whole city. ``area``: every estate in that area or below it (a district,
    a county). ``estate``: one estate. ``estate`` + ``building``: one building."""

    area: str | None = None
    estate: str | None = None
    building: str | None = None

    @model_validator(mode="after")
    def _building_needs_estate(self) -> Scope:
        if self.building is not None and self.estate is None:
            raise ValueError("a building scope needs its estate")
        if self.area is not None and self.estate is not None:
            raise ValueError("a scope is an area or an estate, not both")
        return self

    @property
    def rank(self) -> int:
        return 3 if self.building else 2 if self.estate else 1 if self.area else 0


class Deadlines(_Model):
    acknowledge_s: float = Field(gt=0)
    arrive_s: float | None = Field(default=None, gt=0)
    resolve_s: float = Field(gt=0)
    # 回头看: a resolved order closes once the device has stayed normal this long
    verify_s: float = Field(default=86400, ge=0)


class Row(_Model):
    scope: Scope = Scope()
    kind: Kind
    alerts: list[str] | None = None  # None: every alert type of the kind
    min_severity: SeverityName = "info"
    # False: the alert is covered (no gap) but needs no work order (e.g. a lift in
    # inspection mode: recorded, nobody dispatched)
    dispatch: StrictBool = True  # 0 or "no" is a mistake to point out, not a False
    responsible: str | None = None  # a Party, or an organisation code
    deadlines: Deadlines | None = None
    escalation: list[str] = []  # Parties or organisation codes, in order
    inform: list[str] = []  # told at dispatch besides the responsible party
    on_confirmed: list[str] = []  # told at once when the fire alarm is confirmed
    channels: list[Literal["mqtt", "webhook", "stream"]] = ["mqtt", "stream"]
    note: str = ""

    @model_validator(mode="after")
    def _dispatch_needs_who_and_when(self) -> Row:
        if self.dispatch and (
            self.responsible is None or self.deadlines is None or not self.escalation
        ):
            raise ValueError("a dispatching row needs responsible, deadlines and escalation")
        return self

    def matches(
        self,
        *,
        estate: str,
        building: str | None,
        kind: str,
        alert: str,
        areas: Sequence[str] = (),
    ) -> bool:
        return (
            self.kind == kind
            and (self.alerts is None or alert in self.alerts)
            and self.scope.estate in (None, estate)
            and self.scope.building in (None, building)
            and (self.scope.area is None or self.scope.area in areas)
        )

    def specificity(self, areas: Sequence[str] = ()) -> tuple[int, int, int, int]:
        # among area rows, the nearest area above the estate wins
        near = len(areas) - areas.index(self.scope.area) if self.scope.area in areas else 0
        return (
            self.scope.rank,
            near,
            int(self.alerts is not None),
            int(Severity.parse(self.min_severity)),
        )


class ResponsibilityList(_Model):
    version: Literal[1]
    rows: list[Row] = Field(min_length=1)

    def decide(
        self,
        *,
        estate: str,
        building: str | None,
        kind: str,
        alert: str,
        severity: Severity,
        areas: Sequence[str] = (),
    ) -> Row | Gap:
        """The row that governs this alert, or a ``Gap`` saying why none does. ``areas``:
        the estate's area and those above it, nearest first."""
        rows = [
            r
            for r in self.rows
            if r.matches(estate=estate, building=building, kind=kind, alert=alert, areas=areas)
            and severity >= Severity.parse(r.min_severity)
        ]
        if not rows:
            return Gap(estate, building, kind, alert, str(severity))
        return max(rows, key=lambda r: r.specificity(areas))


@dataclass(frozen=True)
class Gap:
    """An alert no row covers: it must be reported to whoever keeps the list."""

    estate: str
    building: str | None
    kind: str
    alert: str
    severity: str

    def __str__(self) -> str:
        where = f"{self.estate}/{self.building}" if self.building else self.estate
        return (
            f"no responsibility row covers {self.alert} ({self.severity}, {self.kind}) "
            f"in {where}: add one to the responsibility list"
        )


@dataclass(frozen=True)
class Parties:
    """The organisations behind the party roles for one device (from the registry)."""

    maintenance_company: str | None
    property_firm: str | None
    street_office: str | None
    fire_brigade: str | None
    market_supervision: str | None
    housing_authority: str | None

    def resolve(self, who: str) -> str | None:
        """An organisation code for a party role (None when the registry has none), or
        ``who`` itself when it is already an organisation code."""
        return getattr(self, who) if who in PARTIES else who


class PartyDirectory:
    """Resolves party roles to organisations from the registry.

    The device's maintenance company and the estate's property firm are columns; the
    others are the organisation holding that role whose area is the estate's area or the
    nearest area above it (a street office for its street, the county's fire brigade for
    the whole county). An estate with no property firm (community-managed) has none:
    dispatch then reports a gap and gives the order to the next party in the chain.
    """

    AREA_PARTIES = ("street_office", "fire_brigade", "market_supervision", "housing_authority")

    def __init__(self, conn: Conn) -> None:
        self.parent: dict[str, str | None] = dict(
            conn.execute("SELECT code, parent_code FROM areas").fetchall()
        )
        self.by_role_area: dict[tuple[str, str], str] = {}
        for org, role, area in conn.execute(
            "SELECT o.code, r.role, o.area_code FROM organisations o"
            " JOIN organisation_roles r ON r.org_code = o.code"
            " WHERE o.area_code IS NOT NULL ORDER BY o.code DESC"
        ):
            self.by_role_area[(role, area)] = org  # the first code wins on ties
        self.estates: dict[str, tuple[str, str | None]] = {
            code: (area, firm)
            for code, area, firm in conn.execute(
                "SELECT code, area_code, property_firm_code FROM estates"
            )
        }

    def _nearest(self, role: str, area: str | None) -> str | None:
        seen: set[str] = set()
        while area is not None and area not in seen:
            seen.add(area)
            org = self.by_role_area.get((role, area))
            if org is not None:
                return org
            area = self.parent.get(area)
        return None

    def areas_of(self, estate: str) -> list[str]:
        """The estate's area and every area above it, nearest first."""
        area, _ = self.estates.get(estate, (None, None))
        out: list[str] = []
        while area is not None and area not in out:
            out.append(area)
            area = self.parent.get(area)
        return out

    def parties(self, estate: str, maintenance: str | None) -> Parties:
        area, firm = self.estates.get(estate, (None, None))
        found = {p: self._nearest(p, area) for p in self.AREA_PARTIES}
        return Parties(
            maintenance_company=maintenance,
            property_firm=firm,
            street_office=found["street_office"],
            fire_brigade=found["fire_brigade"],
            market_supervision=found["market_supervision"],
            housing_authority=found["housing_authority"],
        )


class ResponsibilityError(ValueError):
    """The list is invalid; the message lists each problem with its row."""


def parse(text: str, *, source: str = "<responsibility>") -> ResponsibilityList:
    return validate_yaml(
        text,
        ResponsibilityList,
        source=source,
        what="responsibility list",
        error=ResponsibilityError,
    )


def shipped_path() -> Path:
    return Path(str(resources.files("alerts") / "responsibility.yaml"))


def load(path: Path | None = None) -> ResponsibilityList:
    p = path or shipped_path()
    return parse(p.read_text(encoding="utf-8"), source=str(p))


# ---------------------------------------------------------------------- versions


@dataclass(frozen=True)
class Version:
    version: int  # 0: the shipped file, never stored
    author: str
    comment: str
    created_at: dt.datetime | None
    rows: ResponsibilityList


class VersionConflict(ValueError):
    """Someone saved a newer version first; the message says which."""


def current(conn: Conn) -> Version:
    """The list in force: the newest stored version, or the shipped file as version 0."""
    row = conn.execute(
        "SELECT version, document, author, comment, created_at FROM responsibility_versions"
        " ORDER BY version DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return Version(0, "shipped", str(shipped_path()), None, load())
    return Version(int(row[0]), row[2], row[3], row[4], ResponsibilityList.model_validate(row[1]))


def current_version(conn: Conn) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM responsibility_versions").fetchone()
    return int(row[0]) if row else 0


def save(
    conn: Conn,
    rows: ResponsibilityList,
    *,
    author: str,
    comment: str,
    based_on: int | None,
    now: dt.datetime,
) -> int:
    """Store ``rows`` as the next version and return its number. ``based_on`` is the
    version the editor started from: if another was saved since, nothing is stored
    (``VersionConflict``), so no edit silently overwrites another. None: no check."""
    with conn.transaction():
        # one writer at a time: the lock makes "read newest, insert next" atomic
        conn.execute("LOCK TABLE responsibility_versions IN SHARE ROW EXCLUSIVE MODE")
        newest = current_version(conn)
        if based_on is not None and based_on != newest:
            raise VersionConflict(
                f"the list is at version {newest}, not {based_on}: reload it and edit again"
            )
        conn.execute(
            "INSERT INTO responsibility_versions (version, document, author, comment,"
            " created_at) VALUES (%s, %s, %s, %s, %s)",
            (newest + 1, Jsonb(rows.model_dump(mode="json")), author, comment, now),
        )
    return newest + 1


def history(conn: Conn) -> list[Version]:
    """Every stored version, newest first."""
    return [
        Version(int(v), a, c, t, ResponsibilityList.model_validate(d))
        for v, d, a, c, t in conn.execute(
            "SELECT version, document, author, comment, created_at FROM responsibility_versions"
            " ORDER BY version DESC"
        )
    ]
