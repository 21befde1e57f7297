"""Scenarios as data: what happens, when, and which alerts a correct system must raise.

The scenarios live in ``scenarios.yaml`` beside this module; ``load()`` validates them
against the demo registry and the simulators' actions, so a typo fails at load time.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from estate import registry
from simulators.devices import SIMULATORS

ALERT_TYPES = frozenset(
    {
        "elevator.trapped",
        "elevator.overspeed",
        "elevator.door_open_running",
        "elevator.ebike",
        "device.offline",
        "fire.alarm",
        "fire.pressure_low",
        "fire.pressure_falling",
        "fire.door_open",
        "fire.point_disabled",
        "drainage.level_high",
        "drainage.overflow_predicted",
        "drainage.pump_fault",
        "drainage.water_detected",
        "water_supply.pressure_low",
        "water_supply.pump_fault",
        "water_supply.power_loss",
        "water_supply.tank_low",
        "water_supply.tank_overflow",
        "water_supply.hatch_open",
        "water_supply.chlorine_out_of_range",
        "water_supply.turbidity_high",
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(_Model):
    at_s: float = Field(ge=0)
    device: str
    action: str
    args: dict[str, Any] = Field(default_factory=dict)


class Expectation(_Model):
    alert: str
    device: str
    state: str | None = None
    within_s: float | None = None

    @model_validator(mode="after")
    def _known(self) -> Expectation:
        if self.alert not in ALERT_TYPES:
            raise ValueError(f"unknown alert type {self.alert!r}")
        return self


class Scenario(_Model):
    name: str
    title: str
    estate: str
    devices: list[str] = Field(min_length=1)
    duration_s: float = Field(gt=0)
    tick_s: float = Field(default=1.0, gt=0)
    steps: list[Step] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
    must_not: list[Expectation] = Field(default_factory=list)


def _check(s: Scenario, reg: registry.Registry) -> None:
    devices = {(e.code, d.code): d for e, _, d in reg.devices()}
    for code in s.devices:
        if (s.estate, code) not in devices:
            raise ValueError(f"scenario {s.name}: no device {s.estate}/{code} in the demo registry")
    for step in s.steps:
        if step.device not in s.devices:
            raise ValueError(
                f"scenario {s.name}: step on {step.device}, which it does not simulate"
            )
        d = devices[(s.estate, step.device)]
        cls = SIMULATORS[(d.kind, d.subtype)][0]
        if step.action not in cls.ACTIONS:
            raise ValueError(
                f"scenario {s.name}: {cls.__name__} has no action {step.action!r} "
                f"(it has: {', '.join(cls.ACTIONS)})"
            )
    for e in [*s.expect, *s.must_not]:
        if e.device not in s.devices:
            raise ValueError(f"scenario {s.name}: expectation on unsimulated device {e.device}")


class LoopStep(Step):
    estate: str


class Loop(_Model):
    """Steps across the county, played again every ``cycle_s`` (the demo's program)."""

    cycle_s: float = Field(gt=0)
    steps: list[LoopStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _inside_the_cycle(self) -> Loop:
        late = [s for s in self.steps if s.at_s >= self.cycle_s]
        if late:
            raise ValueError(f"step at {late[0].at_s} s is past the cycle ({self.cycle_s} s)")
        return self


def load_loop(path: Path | None = None) -> Loop:
    """The demo's loop (``simulators/demo_loop.yaml``), checked against the demo registry."""
    text = (path or Path(__file__).with_name("demo_loop.yaml")).read_text(encoding="utf-8")
    loop = Loop.model_validate(yaml.safe_load(text))
    devices = {(e.code, d.code): d for e, _, d in registry.read(registry.demo_path()).devices()}
    for step in loop.steps:
        d = devices.get((step.estate, step.device))
        if d is None:
            raise ValueError(f"demo loop: no device {step.estate}/{step.device} in the registry")
        cls = SIMULATORS[(d.kind, d.subtype)][0]
        if step.action not in cls.ACTIONS:
            raise ValueError(
                f"demo loop: {cls.__name__} has no action {step.action!r} "
                f"(it has: {', '.join(cls.ACTIONS)})"
            )
    return loop


@cache
def load(path: Path | None = None) -> dict[str, Scenario]:
    """All scenarios by name, checked against the demo registry."""
    text = (path or Path(__file__).with_name("scenarios.yaml")).read_text(encoding="utf-8")
    items = TypeAdapter(list[Scenario]).validate_python(yaml.safe_load(text))
    reg = registry.read(registry.demo_path())
    for s in items:
        _check(s, reg)
    return {s.name: s for s in items}
