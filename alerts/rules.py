"""Alert rules as data: the shipped ``rules.yaml``, validated once, with overrides.

A rule watches the devices of one kind (optionally some subtypes) and says when an alert
of its ``alert`` type is raised, at which severity, and when it clears. Types:

- ``threshold``: a numeric metric against levels (``above``/``below``, highest severity
  wins), cleared with ``hysteresis``, held ``for_s`` seconds before raising;
- ``condition``: all of several metric tests over the device's newest values (trapped =
  occupied, doors closed, not running, …) held ``for_s``;
- ``rate``: least-squares slope of a metric over ``window_s``: falling or rising faster
  than ``slope_per_min``, or predicted to reach ``limit`` within ``horizon_s``;
- ``event``: device event codes raise it (after ``for_s`` without a clear code, if set,
  and only while every ``when`` test holds on the device's newest values);
  ``clear_codes`` or ``auto_clear_s`` clear it;
- ``count``: at least ``count`` events of ``codes`` within ``window_s``;
- ``absence``: nothing from the device for ``silence_s``, or its status says offline
  (event-only points such as detectors have no ``silence_s``: only their status counts).

A threshold value may name a device parameter from the registry (``{param: high_m,
default: 1.2}``), so one rule serves sump pits of every depth. ``overrides`` change a
rule's parameters for one estate or one device (the most specific wins) or disable it.

``life_safety`` declares the alert types where people are in danger (trapped passengers,
fire alarms, flooding). For them the judge never mutes (no inhibition, no silence), the
engine's auto-clear never closes them (a person does, by resolving the order), each gets
an incident and an order of its own; a rules file that inhibits one by name, or lets it
clear itself without a person, is refused here.
"""

from __future__ import annotations

from enum import IntEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from estate.registry import Kind
from estate.yamldata import Loc, validate_yaml
from ingest.contract import KINDS

# An alert type: the kind (or "device") and a name, e.g. water_supply.pressure_low
ALERT_TYPE = r"^[a-z][a-z_]*\.[a-z0-9_]+$"


class Severity(IntEnum):
    INFO = 1
    WARNING = 2
    MAJOR = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, name: str) -> Severity:
        return cls[name.upper()]

    def __str__(self) -> str:
        return self.name.lower()


SeverityName = Literal["info", "warning", "major", "critical"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Param(_Model):
    """A device parameter from the registry, with a default when the device has none."""

    param: str
    default: float


Value = float | Param


class Level(_Model):
    severity: SeverityName
    above: Value | None = None
    below: Value | None = None

    @model_validator(mode="after")
    def _one_side(self) -> Level:
        if (self.above is None) == (self.below is None):
            raise ValueError("a level needs exactly one of 'above' or 'below'")
        return self


class Test(_Model):
    """One metric test of a condition: ``eq`` for booleans, ``above``/``below`` numbers."""

    metric: str
    eq: bool | float | None = None
    above: float | None = None
    below: float | None = None
    not_in: list[float] | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Test:
        given = [x is not None for x in (self.eq, self.above, self.below, self.not_in)]
        if sum(given) != 1:
            raise ValueError("a test needs exactly one of eq, above, below, not_in")
        return self


class _Rule(_Model):
    id: str = Field(pattern=r"^[a-z0-9_.]+$")
    alert: str = Field(pattern=ALERT_TYPE)
    kind: Kind
    subtypes: list[str] | None = None
    title_zh: str
    title_en: str
    severity: SeverityName = "warning"
    enabled: bool = True

    @model_validator(mode="after")
    def _known_subtypes(self) -> _Rule:
        known = KINDS[self.kind].subtype_metrics
        for s in self.subtypes or []:
            if s not in known:
                raise ValueError(f"{self.kind} has no subtype {s!r} (known: {sorted(known)})")
        return self

    def metrics_used(self) -> list[str]:
        return []

    def codes_used(self) -> list[str]:
        return []


class ThresholdRule(_Rule):
    type: Literal["threshold"]
    metric: str
    levels: list[Level] = Field(min_length=1)
    hysteresis: float = Field(default=0.0, ge=0)
    for_s: float = Field(default=0.0, ge=0)

    def metrics_used(self) -> list[str]:
        return [self.metric]


class ConditionRule(_Rule):
    type: Literal["condition"]
    all: list[Test] = Field(min_length=1)
    for_s: float = Field(default=0.0, ge=0)

    def metrics_used(self) -> list[str]:
        return [t.metric for t in self.all]


class RateRule(_Rule):
    type: Literal["rate"]
    metric: str
    window_s: float = Field(gt=0)
    min_points: int = Field(default=5, ge=3)
    slope_per_min: float | None = None  # < 0: falling at least this fast; > 0: rising
    limit: Value | None = None
    horizon_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _something_to_watch(self) -> RateRule:
        if self.slope_per_min is None and (self.limit is None or self.horizon_s is None):
            raise ValueError("a rate rule needs slope_per_min, or limit with horizon_s")
        return self

    def metrics_used(self) -> list[str]:
        return [self.metric]


class EventRule(_Rule):
    type: Literal["event"]
    codes: list[str] = Field(min_length=1)
    clear_codes: list[str] = []
    auto_clear_s: float | None = Field(default=None, gt=0)
    for_s: float = Field(default=0.0, ge=0)  # raise only if no clear code came within this
    # raise only while all of these hold on the device's newest values (a power cut with
    # someone in the car); a metric never reported fails the test
    when: list[Test] = []

    def codes_used(self) -> list[str]:
        return [*self.codes, *self.clear_codes]

    def metrics_used(self) -> list[str]:
        return [t.metric for t in self.when]


class CountRule(_Rule):
    type: Literal["count"]
    codes: list[str] = Field(min_length=1)
    count: int = Field(ge=2)
    window_s: float = Field(gt=0)

    def codes_used(self) -> list[str]:
        return self.codes


class AbsenceRule(_Rule):
    type: Literal["absence"]
    # None: the device sends only when something happens (a detector), so silence means
    # nothing and only its status (Last Will) tells
    silence_s: float | None = Field(default=None, gt=0)
    on_status_offline: bool = True

    @model_validator(mode="after")
    def _watches_something(self) -> AbsenceRule:
        if self.silence_s is None and not self.on_status_offline:
            raise ValueError("an absence rule needs silence_s or on_status_offline")
        return self


Rule = Annotated[
    ThresholdRule | ConditionRule | RateRule | EventRule | CountRule | AbsenceRule,
    Field(discriminator="type"),
]


class Override(_Model):
    """Change parameters of ``rule`` for one estate, or one device (estate + device)."""

    rule: str
    estate: str
    device: str | None = None
    enabled: bool | None = None
    set: dict[str, Any] = {}


class Matcher(_Model):
    """Which alerts: by type, device kind and fire-alarm confirmation (all given must match)."""

    alerts: list[str] | None = None
    kinds: list[Kind] | None = None
    confirmation: Literal["to_be_confirmed", "confirmed"] | None = None


class Inhibit(_Model):
    """While a ``source`` alert is open, ``target`` alerts sharing ``equal`` are muted
    (as Alertmanager's inhibit rules)."""

    name: str
    source: Matcher
    target: Matcher
    equal: Literal["device", "building", "estate"]


class EventMatch(_Model):
    kind: Kind
    subtypes: list[str] | None = None
    codes: list[str] = []


class FireConfirmation(_Model):
    """A fire alarm is confirmed by a second detector in its building, or by one of
    ``events`` (pump start, flow switch) in its estate, within ``window_s``."""

    alert: str = "fire.alarm"
    window_s: float = Field(default=180, gt=0)
    second_detector: bool = True
    events: list[EventMatch] = []


class Correlation(_Model):
    """An alert raised from what several devices say together: while any ``when_open``
    alert is open in the estate (``equal: estate``) or the same building, each device of
    ``device`` whose newest values pass ``test`` has ``alert`` raised; it clears when
    either stops (a backflow valve left open while the water rises)."""

    name: str
    alert: str = Field(pattern=ALERT_TYPE)
    title_zh: str
    title_en: str
    severity: SeverityName = "critical"
    when_open: list[str] = Field(min_length=1)
    equal: Literal["building", "estate"] = "estate"
    device: EventMatch
    test: Test

    @property
    def rule_id(self) -> str:
        return f"correlation.{self.name}"


class LifeSafety(_Model):
    """Alert types where people are in danger; see the module docstring."""

    alerts: list[str] = Field(min_length=1)
    note: str = ""


class Flapping(_Model):
    """An alert raised ``raises`` times within ``window_s`` is flagged as flapping."""

    raises: int = Field(default=4, ge=2)
    window_s: float = Field(default=3600, gt=0)


class RuleBook(_Model):
    version: Literal[1]
    rules: list[Rule]
    overrides: list[Override] = []
    inhibit: list[Inhibit] = []
    fire_confirmation: FireConfirmation = FireConfirmation()
    flapping: Flapping = Flapping()
    life_safety: list[LifeSafety] = []
    correlations: list[Correlation] = []

    @model_validator(mode="after")
    def _consistent(self) -> RuleBook:
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique: {dupes}")
        for r in self.rules:
            spec = KINDS[r.kind]
            for m in r.metrics_used():
                if m not in spec.metrics:
                    raise ValueError(f"rule {r.id}: {r.kind} has no metric {m!r}")
            for c in r.codes_used():
                if c not in spec.events:
                    raise ValueError(f"rule {r.id}: {r.kind} has no event code {c!r}")
        for o in self.overrides:
            if o.rule not in ids:
                raise ValueError(f"override names unknown rule {o.rule!r}")
        types = {r.alert for r in self.rules} | {cor.alert for cor in self.correlations}
        self._correlations_known(types)
        for inh in self.inhibit:
            for matcher in (inh.source, inh.target):
                unknown = sorted(set(matcher.alerts or []) - types)
                if unknown:
                    raise ValueError(f"inhibit {inh.name}: no rule raises {unknown}")
        self._life_safety_kept(types)
        return self

    def _correlations_known(self, types: set[str]) -> None:
        for cor in self.correlations:
            unknown = sorted(set(cor.when_open) - types)
            if unknown:
                raise ValueError(f"correlation {cor.name}: no rule raises {unknown}")
            if cor.test.metric not in KINDS[cor.device.kind].metrics:
                raise ValueError(
                    f"correlation {cor.name}: {cor.device.kind} has no metric {cor.test.metric!r}"
                )

    def _life_safety_kept(self, types: set[str]) -> None:
        """Refuse what would mute or silently close a life-safety alert."""
        declared = {a for ls in self.life_safety for a in ls.alerts}
        unknown = sorted(declared - types)
        if unknown:
            raise ValueError(f"life_safety: no rule raises {unknown}")
        for inh in self.inhibit:
            named = sorted(declared & set(inh.target.alerts or []))
            if named:
                raise ValueError(
                    f"inhibit {inh.name} would mute the life-safety alert(s) {named}: "
                    "nothing may mute a trapped passenger, a fire alarm or flooding "
                    "(remove them from its target)"
                )
        for r in self.rules:
            if r.alert in declared and isinstance(r, EventRule) and r.auto_clear_s is not None:
                raise ValueError(
                    f"rule {r.id}: auto_clear_s on the life-safety alert {r.alert} would close "
                    "it without a person; it closes when its order is resolved (remove "
                    "auto_clear_s, or give the device's own clear code in clear_codes)"
                )
        for o in self.overrides:
            rule = next(r for r in self.rules if r.id == o.rule)
            if rule.alert in declared and (o.enabled is False or "auto_clear_s" in o.set):
                raise ValueError(
                    f"override of {o.rule} for {o.estate}: a life-safety rule cannot be "
                    "disabled or given auto_clear_s per estate or device"
                )

    def life_safety_alert(self, alert: str) -> bool:
        """Whether ``alert`` is declared life-safety."""
        return any(alert in ls.alerts for ls in self.life_safety)

    def for_device(self, estate: str, device: str) -> list[Rule]:
        """The rules as they apply to one device: overrides merged, disabled ones dropped.

        An estate-wide override applies first, a device one over it.
        """
        out: list[Rule] = []
        for r in self.rules:
            merged: Rule = r
            for o in sorted(
                (o for o in self.overrides if o.rule == r.id and o.estate == estate),
                key=lambda o: o.device is not None,
            ):
                if o.device not in (None, device):
                    continue
                data = {**merged.model_dump(), **o.set}
                if o.enabled is not None:
                    data["enabled"] = o.enabled
                merged = type(r).model_validate(data)
            if merged.enabled:
                out.append(merged)
        return out


class RulesError(ValueError):
    """The rules file is invalid; the message lists each problem with its place."""


def _rule_id(data: Any, loc: Loc) -> str:
    """ " (rule <id>)" for a problem inside one rule, so a person finds it by its id."""
    if isinstance(data, dict) and loc[:1] == ("rules",) and len(loc) > 1:
        idx, items = loc[1], data.get("rules") or []
        if isinstance(idx, int) and idx < len(items) and isinstance(items[idx], dict):
            return f" (rule {items[idx].get('id', '?')})"
    return ""


def parse(text: str, *, source: str = "<rules>") -> RuleBook:
    return validate_yaml(
        text, RuleBook, source=source, what="rules", error=RulesError, label=_rule_id
    )


def shipped_path() -> Path:
    return Path(str(resources.files("alerts") / "rules.yaml"))


def load(path: Path | None = None) -> RuleBook:
    """The rule book from ``path`` (default: the shipped ``alerts/rules.yaml``)."""
    p = path or shipped_path()
    return parse(p.read_text(encoding="utf-8"), source=str(p))
