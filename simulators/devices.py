"""Device behaviour: elevators, fire points, drainage points and secondary water supply that
act like the real ones.

Every simulator is stepped with the time passed in (``step(now)``) and returns what the
device would publish at that moment, encoded with the contract's own helpers. Randomness
comes from the ``random.Random`` handed in, so a seeded run is repeatable. Scenario actions
(``trap``, ``fail_pump``, …) are plain methods; ``ACTIONS`` lists them per simulator class.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ingest import contract
from ingest.contract import Channel

TsStyle = Literal["rfc3339", "epoch_ms"]


@dataclass(frozen=True)
class Outgoing:
    """One MQTT publication: channel, JSON-ready payload, and whether it is retained."""

    channel: Channel
    payload: dict[str, Any]
    retain: bool = False


@dataclass
class DeviceSim:
    """Common parts: identity, seq counter, publishing cadence, clock skew and jitter."""

    estate: str
    code: str
    kind: str
    subtype: str
    rng: random.Random
    interval_s: float = 10.0
    params: dict[str, Any] = field(default_factory=dict)
    skew_s: float = 0.0  # the device clock runs this far ahead (negative: behind)
    jitter_s: float = 0.0  # each publication is late by up to this much
    ts_style: TsStyle = "rfc3339"
    seq: int = 0
    online: bool = True
    _next_due: dt.datetime | None = None
    _pending: list[Outgoing] = field(default_factory=list)

    ACTIONS: ClassVar[tuple[str, ...]] = ("go_offline", "come_online")

    @property
    def topic_base(self) -> str:
        return f"{contract.ROOT}/{self.estate}/{self.kind}/{self.code}"

    def topic(self, channel: Channel) -> str:
        return f"{self.topic_base}/{channel}"

    def _seq(self) -> int:
        s = self.seq
        self.seq = (self.seq + 1) % (contract.SEQ_MAX + 1)
        return s

    def _device_time(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.skew_s)

    def emit_event(self, now: dt.datetime, code: str, detail: dict[str, Any] | None = None) -> None:
        payload = contract.event(
            self._device_time(now), self._seq(), code, detail, ts_style=self.ts_style
        )
        self._pending.append(Outgoing(Channel.EVENT, payload))

    def values(self) -> dict[str, float | bool]:
        """The current telemetry values (empty: the device sends no telemetry)."""
        return {}

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        """Move the physical model forward by ``dt_s`` seconds."""

    def step(self, now: dt.datetime, dt_s: float) -> list[Outgoing]:
        """Advance to ``now`` and return what the device publishes at this instant."""
        self.advance(now, dt_s)
        if not self.online:
            self._pending.clear()
            return []
        out, self._pending = self._pending, []
        if self._next_due is None:
            self._next_due = now + dt.timedelta(seconds=self.rng.uniform(0, self.interval_s))
        if now >= self._next_due:
            vals = self.values()
            if vals:
                ts = self._device_time(now) - dt.timedelta(
                    seconds=self.rng.uniform(0, self.jitter_s)
                )
                out.append(
                    Outgoing(
                        Channel.TELEMETRY,
                        contract.telemetry(ts, self._seq(), vals, ts_style=self.ts_style),
                    )
                )
            self._next_due = now + dt.timedelta(seconds=self.interval_s)
        return out

    def status(self, online: bool, now: dt.datetime) -> Outgoing:
        return Outgoing(
            Channel.STATUS, contract.status(online, self._device_time(now)), retain=True
        )

    # scenario actions ------------------------------------------------------------
    def go_offline(self, now: dt.datetime) -> None:
        self.online = False

    def come_online(self, now: dt.datetime) -> None:
        self.online = True


# --------------------------------------------------------------------------- elevator

FLOOR_HEIGHT_M = 3.0
DOOR_ZONE_M = 0.075  # ±75 mm of a landing counts as level (平层)


@dataclass
class ElevatorSim(DeviceSim):
    """A traction elevator answering random calls: travel, level, open, dwell, close.

    Position is metres above the lowest landing; floors are numbered from -basement to top.
    Passengers board and alight at landings, changing load and occupancy.
    """

    rated_mps: float = 1.75
    position_m: float = 0.0
    velocity: float = 0.0
    door: float = 0.0  # 0 closed .. 1 open
    door_cmd: Literal["open", "close"] = "close"
    dwell_s: float = 0.0
    passengers: int = 0
    targets: list[int] = field(default_factory=list)
    mode: int = 0
    trapped: bool = False
    forced_speed: float | None = None
    forced_door_open_running: bool = False
    _pending_trip: tuple[int, int] | None = None

    ACTIONS: ClassVar[tuple[str, ...]] = (
        *DeviceSim.ACTIONS,
        "trap",
        "release",
        "overspeed",
        "door_open_running",
        "ebike",
        "set_mode",
        "power_loss",
    )

    @property
    def floors(self) -> list[int]:
        """Landings from the lowest basement up; there is no floor 0 (B1 is -1, then 1)."""
        below = int(self.params.get("basement_floors", 0))
        return [*range(-below, 0), *range(1, int(self.params.get("floors", 10)) + 1)]

    def floor_at(self, position_m: float) -> int:
        floors = self.floors
        index = min(len(floors) - 1, max(0, round(position_m / FLOOR_HEIGHT_M)))
        return floors[index]

    def landing_m(self, floor: int) -> float:
        return self.floors.index(floor) * FLOOR_HEIGHT_M

    @property
    def in_door_zone(self) -> bool:
        return abs(self.position_m - self.landing_m(self.floor_at(self.position_m))) <= DOOR_ZONE_M

    def values(self) -> dict[str, float | bool]:
        speed = abs(self.velocity) if self.forced_speed is None else self.forced_speed
        direction = 0 if speed < 0.01 else (1 if self.velocity > 0 else -1)
        running = speed >= 0.01 or self.forced_door_open_running
        return {
            "floor": float(self.floor_at(self.position_m)),
            "speed_mps": round(speed, 3),
            "direction": float(direction),
            "door_open": self.door > 0.5 or self.forced_door_open_running,
            "in_door_zone": self.in_door_zone,
            "occupied": self.passengers > 0,
            "load_pct": float(min(100, self.passengers * 8)),
            "mode": float(self.mode),
            "running": running,
        }

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        if self.trapped or self.mode != 0:
            self.velocity = 0.0
            return
        # New calls arrive at random: about one trip every 40 s per car.
        if not self.targets and self._pending_trip is None and self.rng.random() < dt_s / 40:
            a, b = self.rng.sample(self.floors, 2)
            self._pending_trip = (a, b)
            self.targets.append(a)
        if self.door_cmd == "open" or self.door > 0:
            self._doors(dt_s)
            return
        if not self.targets:
            return
        target_m = self.landing_m(self.targets[0])
        gap = target_m - self.position_m
        if abs(gap) <= 0.01:
            self.position_m, self.velocity = target_m, 0.0
            self._arrive(self.targets.pop(0))
            return
        # Trapezoidal profile: accelerate at 0.8 m/s², brake in time to level.
        accel = 0.8
        brake_speed = math.sqrt(2 * accel * abs(gap))
        speed = min(self.rated_mps, abs(self.velocity) + accel * dt_s, brake_speed)
        step = math.copysign(min(speed * dt_s, abs(gap)), gap)
        self.position_m += step
        self.velocity = step / dt_s if dt_s > 0 else 0.0

    def _arrive(self, floor: int) -> None:
        self.door_cmd, self.dwell_s = "open", 4.0
        if self._pending_trip and floor == self._pending_trip[0]:
            self.passengers += self.rng.randint(1, 4)
            self.targets.append(self._pending_trip[1])
        elif self._pending_trip and floor == self._pending_trip[1]:
            self.passengers = 0
            self._pending_trip = None

    def _doors(self, dt_s: float) -> None:
        if self.door_cmd == "open":
            self.door = min(1.0, self.door + dt_s / 2.0)
            if self.door >= 1.0:
                self.dwell_s -= dt_s
                if self.dwell_s <= 0:
                    self.door_cmd = "close"
        else:
            self.door = max(0.0, self.door - dt_s / 2.0)

    # scenario actions ------------------------------------------------------------
    def trap(self, now: dt.datetime, with_event: bool = True) -> None:
        """Stop between floors with people inside and doors shut (困人)."""
        self.trapped = True
        self.velocity = 0.0
        self.door, self.door_cmd = 0.0, "close"
        self.passengers = max(self.passengers, 2)
        if self.in_door_zone:  # stuck half a metre below the landing
            self.position_m = max(0.0, self.position_m - 0.5) or 0.5
        if with_event:
            self.emit_event(
                now, "trapped", {"floor": self.floor_at(self.position_m), "door_open": False}
            )

    def release(self, now: dt.datetime) -> None:
        """Rescue: level to the nearest landing and open the doors."""
        self.trapped = False
        self.position_m = self.landing_m(self.floor_at(self.position_m))
        self.targets.clear()
        self._pending_trip = None
        self.passengers = 0  # everyone steps out at the landing
        self.door_cmd, self.dwell_s = "open", 10.0

    def overspeed(self, now: dt.datetime, seconds: float = 3.0) -> None:
        self.forced_speed = self.rated_mps * 1.3
        self.emit_event(now, "overspeed", {"speed_mps": round(self.forced_speed, 2)})

    def door_open_running(self, now: dt.datetime) -> None:
        self.forced_door_open_running = True
        self.emit_event(now, "door_open_running", {"floor": self.floor_at(self.position_m)})

    def ebike(self, now: dt.datetime) -> None:
        self.emit_event(
            now, "ebike_detected", {"floor": self.floor_at(self.position_m), "confidence": 0.93}
        )

    def set_mode(self, now: dt.datetime, mode: int = 1) -> None:
        self.mode = mode

    def power_loss(self, now: dt.datetime) -> None:
        self.emit_event(now, "power_loss")


# --------------------------------------------------------------------------- fire


@dataclass
class PressureSim(DeviceSim):
    """Hydrant or sprinkler pressure kept up by a jockey pump, with sensor noise.

    Pressure leaks slowly; when it falls to the cut-in the jockey pump runs it back up to
    the cut-out. ``start_leak`` adds a loss the pump cannot make good (a falling pressure).
    """

    pressure: float = 0.0
    jockey_on: bool = False
    leak_mpa_per_min: float = 0.0

    ACTIONS: ClassVar[tuple[str, ...]] = (*DeviceSim.ACTIONS, "start_leak", "set_pressure")

    def __post_init__(self) -> None:
        base = 0.30 if self.subtype == "hydrant_pressure" else 0.20
        self.cut_in = float(self.params.get("cut_in_mpa", base - 0.03))
        self.cut_out = float(self.params.get("cut_out_mpa", base + 0.03))
        self.pressure = self.pressure or base

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        self.pressure -= (0.002 + self.leak_mpa_per_min) * dt_s / 60
        if self.leak_mpa_per_min == 0:
            if self.pressure <= self.cut_in:
                self.jockey_on = True
            if self.jockey_on:
                self.pressure = min(self.cut_out, self.pressure + 0.002 * dt_s)
                if self.pressure >= self.cut_out:
                    self.jockey_on = False
        self.pressure = max(0.0, self.pressure)

    def values(self) -> dict[str, float | bool]:
        return {"pressure_mpa": round(max(0.0, self.pressure + self.rng.gauss(0, 0.002)), 4)}

    def start_leak(self, now: dt.datetime, mpa_per_min: float = 0.02) -> None:
        self.leak_mpa_per_min = mpa_per_min

    def set_pressure(self, now: dt.datetime, mpa: float = 0.3) -> None:
        self.pressure = mpa
        self.leak_mpa_per_min = 0.0


@dataclass
class TankSim(DeviceSim):
    level: float = 3.5
    ACTIONS: ClassVar[tuple[str, ...]] = (*DeviceSim.ACTIONS, "drain")
    drain_m_per_min: float = 0.0

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        hi = float(self.params.get("max_level_m", 4.0))
        self.level += (0.001 - self.drain_m_per_min) * dt_s / 60
        self.level = min(hi, max(0.0, self.level))

    def values(self) -> dict[str, float | bool]:
        return {"level_m": round(self.level + self.rng.gauss(0, 0.003), 3)}

    def drain(self, now: dt.datetime, m_per_min: float = 0.05) -> None:
        self.drain_m_per_min = m_per_min


@dataclass
class FirePumpSim(DeviceSim):
    running: bool = False
    fault: bool = False
    ACTIONS: ClassVar[tuple[str, ...]] = (*DeviceSim.ACTIONS, "start", "stop", "fail")

    def values(self) -> dict[str, float | bool]:
        return {"running": self.running, "fault": self.fault}

    def start(self, now: dt.datetime) -> None:
        self.running = True
        self.emit_event(now, "start")
        self._next_due = now  # report the change at once

    def stop(self, now: dt.datetime) -> None:
        self.running = False
        self._next_due = now

    def fail(self, now: dt.datetime) -> None:
        self.fault, self.running = True, False
        self.emit_event(now, "fault", {"cause": "motor overload"})
        self._next_due = now


@dataclass
class FireDoorSim(DeviceSim):
    open: bool = False
    ACTIONS: ClassVar[tuple[str, ...]] = (*DeviceSim.ACTIONS, "hold_open", "close")
    _passing_s: float = 0.0

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        # People pass through now and then; a normal door swings shut within seconds.
        if self._passing_s > 0:
            self._passing_s -= dt_s
            if self._passing_s <= 0:
                self.open = False
        elif not self.open and self.rng.random() < dt_s / 300:
            self.open, self._passing_s = True, 5.0

    def values(self) -> dict[str, float | bool]:
        return {"open": self.open}

    def hold_open(self, now: dt.datetime) -> None:
        self.open, self._passing_s = True, 0.0
        self._next_due = now

    def close(self, now: dt.datetime) -> None:
        self.open = False
        self._next_due = now


@dataclass
class ElectricalSim(DeviceSim):
    ACTIONS: ClassVar[tuple[str, ...]] = (*DeviceSim.ACTIONS, "overheat")
    extra_c: float = 0.0

    def values(self) -> dict[str, float | bool]:
        return {
            "residual_current_ma": round(max(0.0, self.rng.gauss(45, 8)), 1),
            "cable_temp_c": round(self.rng.gauss(35, 1.5) + self.extra_c, 1),
        }

    def overheat(self, now: dt.datetime, extra_c: float = 45.0) -> None:
        self.extra_c = extra_c


@dataclass
class DetectorSim(DeviceSim):
    """Smoke detectors and call points: no telemetry, only events (and status)."""

    ACTIONS: ClassVar[tuple[str, ...]] = (*DeviceSim.ACTIONS, "alarm", "reset")

    def alarm(self, now: dt.datetime) -> None:
        self.emit_event(now, "fire_alarm", {"obscuration_pct_per_m": 12.5})

    def reset(self, now: dt.datetime) -> None:
        self.emit_event(now, "reset")


@dataclass
class PanelSim(DeviceSim):
    """The fire alarm control panel: relays point events (alarm, disable, fault) by point."""

    ACTIONS: ClassVar[tuple[str, ...]] = (
        *DeviceSim.ACTIONS,
        "point_alarm",
        "disable_point",
        "enable_point",
        "point_fault",
        "reset",
    )

    def point_alarm(self, now: dt.datetime, point: str = "") -> None:
        self.emit_event(now, "fire_alarm", {"point": point})

    def disable_point(self, now: dt.datetime, point: str = "") -> None:
        self.emit_event(now, "disabled", {"point": point})

    def enable_point(self, now: dt.datetime, point: str = "") -> None:
        self.emit_event(now, "enabled", {"point": point})

    def point_fault(self, now: dt.datetime, point: str = "") -> None:
        self.emit_event(now, "fault", {"point": point})

    def reset(self, now: dt.datetime) -> None:
        self.emit_event(now, "reset")


# --------------------------------------------------------------------------- drainage


@dataclass
class SumpPitSim(DeviceSim):
    """A sump pit: inflow (more in rain) fills it, the pump empties it between two levels."""

    level: float = 0.3
    rain_lpm: float = 0.0  # extra inflow, litres per minute
    pump_on: bool = False
    pump_fault: bool = False

    ACTIONS: ClassVar[tuple[str, ...]] = (*DeviceSim.ACTIONS, "rain", "fail_pump", "repair_pump")

    def __post_init__(self) -> None:
        self.high = float(self.params.get("high_m", 1.2))
        self.depth = float(self.params.get("depth_m", 2.0))
        self.area_m2 = float(self.params.get("area_m2", 2.0))
        self.start_at, self.stop_at = self.high * 0.75, 0.3

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        inflow_lpm = 15.0 + self.rain_lpm
        pump_lpm = 600.0 if self.pump_on and not self.pump_fault else 0.0
        self.level += (inflow_lpm - pump_lpm) / 1000 / self.area_m2 * dt_s / 60
        self.level = min(self.depth, max(0.05, self.level))
        if not self.pump_fault:
            if self.level >= self.start_at:
                self.pump_on = True
            elif self.level <= self.stop_at:
                self.pump_on = False

    def values(self) -> dict[str, float | bool]:
        return {
            "level_m": round(self.level + self.rng.gauss(0, 0.005), 3),
            "pump_running": self.pump_on and not self.pump_fault,
            "pump_fault": self.pump_fault,
        }

    def rain(self, now: dt.datetime, lpm: float = 600.0) -> None:
        self.rain_lpm = lpm

    def fail_pump(self, now: dt.datetime) -> None:
        self.pump_fault, self.pump_on = True, False
        self.emit_event(now, "pump_fault", {"cause": "thermal trip"})

    def repair_pump(self, now: dt.datetime) -> None:
        self.pump_fault = False


@dataclass
class ManholeSim(DeviceSim):
    level: float = 0.2
    rain_lpm: float = 0.0
    ACTIONS: ClassVar[tuple[str, ...]] = (*DeviceSim.ACTIONS, "rain")

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        target = 0.2 + self.rain_lpm / 500
        self.level += (target - self.level) * min(1.0, dt_s / 120)

    def values(self) -> dict[str, float | bool]:
        return {"level_m": round(max(0.0, self.level + self.rng.gauss(0, 0.01)), 3)}

    def rain(self, now: dt.datetime, lpm: float = 600.0) -> None:
        self.rain_lpm = lpm


@dataclass
class ImmersionSim(DeviceSim):
    wet: bool = False
    ACTIONS: ClassVar[tuple[str, ...]] = (*DeviceSim.ACTIONS, "flood", "dry")

    def values(self) -> dict[str, float | bool]:
        return {"water_detected": self.wet}

    def flood(self, now: dt.datetime) -> None:
        self.wet = True
        self._next_due = now

    def dry(self, now: dt.datetime) -> None:
        self.wet = False
        self._next_due = now


@dataclass
class BackflowValveSim(DeviceSim):
    closed: bool = False
    fault: bool = False
    ACTIONS: ClassVar[tuple[str, ...]] = (
        *DeviceSim.ACTIONS, "close_valve", "open_valve", "fail_valve", "repair_valve",
    )  # fmt: skip

    def values(self) -> dict[str, float | bool]:
        return {"closed": self.closed, "fault": self.fault}

    def fail_valve(self, now: dt.datetime) -> None:
        self.fault = True
        self._next_due = now

    def repair_valve(self, now: dt.datetime) -> None:
        self.fault = False
        self._next_due = now

    def close_valve(self, now: dt.datetime) -> None:
        self.closed = True
        self._next_due = now

    def open_valve(self, now: dt.datetime) -> None:
        self.closed = False
        self._next_due = now


# --------------------------------------------------------------------------- water supply


def _towards(value: float, target: float, dt_s: float, tau_s: float) -> float:
    """First-order approach: ``value`` moves towards ``target`` with time constant ``tau_s``."""
    return value + (target - value) * min(1.0, dt_s / tau_s)


@dataclass
class BoosterPumpSim(DeviceSim):
    """A variable-speed booster set holding its outlet at the set pressure; without it
    (a fault, no power) the outlet falls to what the mains give."""

    fault: bool = False
    powered: bool = True
    pressure: float = 0.0
    ACTIONS: ClassVar[tuple[str, ...]] = (
        *DeviceSim.ACTIONS, "fail_pump", "repair_pump", "lose_power", "restore_power",
    )  # fmt: skip

    def __post_init__(self) -> None:
        self.set_mpa = float(self.params.get("set_mpa", 0.45))
        self.mains_mpa = float(self.params.get("mains_mpa", 0.08))
        self.pressure = self.pressure or self.set_mpa

    @property
    def running(self) -> bool:
        return self.powered and not self.fault

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        target = self.set_mpa if self.running else self.mains_mpa
        self.pressure = _towards(self.pressure, target, dt_s, 20.0)

    def values(self) -> dict[str, float | bool]:
        return {
            "running": self.running,
            "fault": self.fault,
            "pressure_mpa": round(max(0.0, self.pressure + self.rng.gauss(0, 0.005)), 3),
        }

    def fail_pump(self, now: dt.datetime) -> None:
        self.fault = True
        self.emit_event(now, "pump_fault", {"cause": "inverter fault"})
        self._next_due = now

    def repair_pump(self, now: dt.datetime) -> None:
        self.fault = False
        self._next_due = now

    def lose_power(self, now: dt.datetime) -> None:
        self.powered = False
        self.emit_event(now, "power_loss")
        self._next_due = now

    def restore_power(self, now: dt.datetime) -> None:
        self.powered = True
        self._next_due = now


@dataclass
class SupplyTankSim(DeviceSim):
    """A break tank filled from the mains by a float valve between two levels, drawn by
    the booster pumps; a stuck valve overflows it, a mains cut empties it."""

    level: float = 0.0
    inlet: Literal["float", "stuck_open", "cut"] = "float"
    hatch_open: bool = False
    _low_sent: bool = False
    _overflow_sent: bool = False
    ACTIONS: ClassVar[tuple[str, ...]] = (
        *DeviceSim.ACTIONS, "stick_inlet", "cut_mains", "restore_inlet", "open_hatch",
        "close_hatch",
    )  # fmt: skip

    def __post_init__(self) -> None:
        self.full_m = float(self.params.get("full_m", 2.0))
        self.overflow_m = float(self.params.get("overflow_m", self.full_m + 0.1))
        self.dry_m = float(self.params.get("dry_level_m", 0.2))
        self.draw_m_per_min = float(self.params.get("draw_m_per_min", 0.02))
        self.level = self.level or self.full_m - 0.1

    @property
    def overflowing(self) -> bool:
        return self.level >= self.overflow_m

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        fill = {"float": 0.0, "stuck_open": 0.06, "cut": 0.0}[self.inlet]
        if self.inlet == "float" and self.level < self.full_m - 0.2:
            fill = 0.05  # the float valve opens
        self.level += (fill - self.draw_m_per_min) * dt_s / 60
        self.level = max(0.0, min(self.overflow_m + 0.02, self.level))
        if self.level < self.dry_m and not self._low_sent:
            self._low_sent = True
            self.emit_event(now, "low_level", {"level_m": round(self.level, 3)})
        if self.overflowing and not self._overflow_sent:
            self._overflow_sent = True
            self.emit_event(now, "overflow")

    def values(self) -> dict[str, float | bool]:
        return {
            "level_m": round(max(0.0, self.level + self.rng.gauss(0, 0.003)), 3),
            "overflow": self.overflowing,
        }

    def stick_inlet(self, now: dt.datetime) -> None:
        self.inlet = "stuck_open"

    def cut_mains(self, now: dt.datetime, draw_m_per_min: float | None = None) -> None:
        """The mains stop (a burst main, works in the street); ``draw_m_per_min`` is the
        draw meanwhile (the morning peak empties a tank in minutes)."""
        self.inlet = "cut"
        if draw_m_per_min is not None:
            self.draw_m_per_min = draw_m_per_min

    def restore_inlet(self, now: dt.datetime) -> None:
        self.inlet = "float"
        self._low_sent = self._overflow_sent = False
        self.level = min(self.level, self.full_m)  # the overflow pipe drains the excess

    def open_hatch(self, now: dt.datetime) -> None:
        self.hatch_open = True
        self.emit_event(now, "hatch_open")

    def close_hatch(self, now: dt.datetime) -> None:
        self.hatch_open = False


@dataclass
class WaterQualitySim(DeviceSim):
    """An online probe at the tank outlet: residual chlorine and turbidity."""

    chlorine: float = 0.3
    turbidity: float = 0.3
    _chlorine_target: float = 0.3
    _turbidity_target: float = 0.3
    ACTIONS: ClassVar[tuple[str, ...]] = (
        *DeviceSim.ACTIONS, "lose_chlorine", "stir_sediment", "clean_tank",
    )  # fmt: skip

    def advance(self, now: dt.datetime, dt_s: float) -> None:
        self.chlorine = _towards(self.chlorine, self._chlorine_target, dt_s, 120.0)
        self.turbidity = _towards(self.turbidity, self._turbidity_target, dt_s, 60.0)

    def values(self) -> dict[str, float | bool]:
        return {
            "chlorine_mg_l": round(max(0.0, self.chlorine + self.rng.gauss(0, 0.005)), 3),
            "turbidity_ntu": round(max(0.0, self.turbidity + self.rng.gauss(0, 0.02)), 2),
        }

    def lose_chlorine(self, now: dt.datetime, mg_l: float = 0.01) -> None:
        """Water standing too long in the tank: the chlorine decays."""
        self._chlorine_target = mg_l

    def stir_sediment(self, now: dt.datetime, ntu: float = 2.5) -> None:
        self._turbidity_target = ntu

    def clean_tank(self, now: dt.datetime) -> None:
        self._chlorine_target, self._turbidity_target = 0.3, 0.3


# Which simulator plays which (kind, subtype), and how often it reports by default (s).
SIMULATORS: dict[tuple[str, str], tuple[type[DeviceSim], float]] = {
    ("elevator", "passenger"): (ElevatorSim, 2.0),
    ("elevator", "freight"): (ElevatorSim, 2.0),
    ("elevator", "escalator"): (ElevatorSim, 5.0),
    ("fire", "hydrant_pressure"): (PressureSim, 30.0),
    ("fire", "sprinkler_pressure"): (PressureSim, 30.0),
    ("fire", "water_tank"): (TankSim, 60.0),
    ("fire", "fire_pump"): (FirePumpSim, 30.0),
    ("fire", "fire_door"): (FireDoorSim, 30.0),
    ("fire", "electrical"): (ElectricalSim, 60.0),
    ("fire", "smoke_detector"): (DetectorSim, 300.0),
    ("fire", "manual_call_point"): (DetectorSim, 300.0),
    ("fire", "fire_panel"): (PanelSim, 300.0),
    ("drainage", "sump_pit"): (SumpPitSim, 10.0),
    ("drainage", "manhole"): (ManholeSim, 30.0),
    ("drainage", "immersion"): (ImmersionSim, 60.0),
    ("drainage", "backflow_valve"): (BackflowValveSim, 60.0),
    ("water_supply", "booster_pump"): (BoosterPumpSim, 10.0),
    ("water_supply", "tank"): (SupplyTankSim, 30.0),
    ("water_supply", "water_quality"): (WaterQualitySim, 60.0),
}


def make_sim(
    *,
    estate: str,
    code: str,
    kind: str,
    subtype: str,
    rng: random.Random,
    params: dict[str, Any] | None = None,
    interval_s: float | None = None,
    **kwargs: Any,
) -> DeviceSim:
    """The simulator for a registry device."""
    cls, default_interval = SIMULATORS[(kind, subtype)]
    return cls(
        estate=estate,
        code=code,
        kind=kind,
        subtype=subtype,
        rng=rng,
        interval_s=interval_s or default_interval,
        params=dict(params or {}),
        **kwargs,
    )
