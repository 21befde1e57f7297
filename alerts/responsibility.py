"""The responsibility list (事件处置权责清单) as data: who handles an alert, by when, and
who is told when they do not.

Each row matches a scope (the whole city, one estate, or one building), a device kind,
optionally alert types, and a minimum severity; it names the responsible party, the
deadlines (acknowledge, arrive on site, resolve) and the escalation chain. Parties are
roles resolved per device from the registry ("the device's maintenance company", "the
estate's property firm", "the street office of its area", …) or an organisation code.

The most specific matching row wins: a building row over an estate row over the city
row; then a row naming the alert type over one for the whole kind; then the higher
minimum severity. An alert no row covers is a ``Gap``: reported, never dropped.

This module decides; creating and supervising work orders from it is ``dispatch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.rules import Severity, SeverityName
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
    """Empty: the whole city. ``estate``: one estate. ``estate`` + ``building``: one
    building."""

    estate: str | None = None
    building: str | None = None

    @model_validator(mode="after")
    def _building_needs_estate(self) -> Scope:
        if self.building is not None and self.estate is None:
            raise ValueError("a building scope needs its estate")
        return self

    @property
    def rank(self) -> int:
        return 2 if self.building else 1 if self.estate else 0


class Deadlines(_Model):
    acknowledge_s: float = Field(gt=0)
    arrive_s: float | None = Field(default=None, gt=0)
    resolve_s: float = Field(gt=0)


class Row(_Model):
    scope: Scope = Scope()
    kind: Literal["elevator", "fire", "drainage"]
    alerts: list[str] | None = None  # None: every alert type of the kind
    min_severity: SeverityName = "info"
    # False: the alert is covered (no gap) but needs no work order (e.g. a lift in
    # inspection mode: recorded, nobody dispatched)
    dispatch: bool = True
    responsible: str | None = None  # a Party, or an organisation code
    deadlines: Deadlines | None = None
    escalation: list[str] = []  # Parties or organisation codes, in order
    channels: list[Literal["mqtt", "webhook", "stream"]] = ["mqtt", "stream"]
    note: str = ""

    @model_validator(mode="after")
    def _dispatch_needs_who_and_when(self) -> Row:
        if self.dispatch and (
            self.responsible is None or self.deadlines is None or not self.escalation
        ):
            raise ValueError("a dispatching row needs responsible, deadlines and escalation")
        return self

    def matches(self, *, estate: str, building: str | None, kind: str, alert: str) -> bool:
        return (
            self.kind == kind
            and (self.alerts is None or alert in self.alerts)
            and self.scope.estate in (None, estate)
            and self.scope.building in (None, building)
        )

    def specificity(self) -> tuple[int, int, int]:
        return (
            self.scope.rank,
            int(self.alerts is not None),
            int(Severity.parse(self.min_severity)),
        )


class ResponsibilityList(_Model):
    version: Literal[1]
    rows: list[Row] = Field(min_length=1)

    def decide(
        self, *, estate: str, building: str | None, kind: str, alert: str, severity: Severity
    ) -> Row | Gap:
        """The row that governs this alert, or a ``Gap`` saying why none does."""
        rows = [
            r
            for r in self.rows
            if r.matches(estate=estate, building=building, kind=kind, alert=alert)
            and severity >= Severity.parse(r.min_severity)
        ]
        if not rows:
            return Gap(estate, building, kind, alert, str(severity))
        return max(rows, key=Row.specificity)


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
