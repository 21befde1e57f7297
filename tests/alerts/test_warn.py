"""The warning engine, rule type by rule type, with time passed in (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import rules
from alerts.rules import RulesError, Severity
from alerts.warn import Change, DeviceInfo, Event, Reading, Status, Warner

LIFT = DeviceInfo(1, "E1", "B1", "L1", "elevator", "passenger")
HYDRANT = DeviceInfo(2, "E1", "B1", "HP", "fire", "hydrant_pressure")
SUMP = DeviceInfo(3, "E1", None, "SUMP1", "drainage", "sump_pit", {"high_m": 1.0})
PANEL = DeviceInfo(4, "E1", None, "FP", "fire", "fire_panel")
DEVICES = (LIFT, HYDRANT, SUMP, PANEL)

Values = dict[str, float | bool]
# (time, what, argument): "reading" (device, values), "event" (device, code),
# "status" (device, online) or "tick" (None)
Step = tuple[float, str, Any]


@dataclass
class Case:
    """A script of observations and ticks; ``expect`` lists (time, kind, alert, severity)."""

    name: str
    steps: list[Step]
    expect: list[tuple[float, str, str, str]]
    # the alert types compared; by default all but device.offline (which silence raises
    # in any long script)
    watch: tuple[str, ...] | None = None
    book: str | None = None
    devices: tuple[DeviceInfo, ...] = DEVICES
    changes: list[Change] = field(default_factory=list)

    def run(self) -> list[tuple[float, str, str, str]]:
        book = rules.parse(self.book) if self.book else rules.load()
        w = Warner(book, self.devices)
        for t, what, arg in self.steps:
            if what == "tick":
                got = w.tick(t)
            elif what == "status":
                got = w.observe([], [], [Status(arg[0], t, arg[1])], now=t)
            elif what == "event":
                got = w.observe([], [Event(arg[0], t, arg[1])], [], now=t)
            elif what == "late reading":  # observed at t, taken at arg[0] (slower path)
                got = w.observe([Reading(arg[1], arg[0], arg[2])], [], [], now=t)
            else:
                got = w.observe([Reading(arg[0], t, arg[1])], [], [], now=t)
            self.changes += got
        return [
            (c.at, c.kind, c.alert, str(c.severity))
            for c in self.changes
            if (c.alert in self.watch if self.watch else c.alert != "device.offline")
        ]


def lift(**v: float | bool) -> tuple[int, Values]:
    base: Values = {
        "occupied": False,
        "running": False,
        "door_open": True,
        "mode": 0.0,
        "speed_mps": 0.0,
    }
    return (LIFT.id, {**base, **v})


CASES = [
    Case(
        "threshold: for duration, severity rises and falls, hysteresis clears",
        [
            (0, "reading", (2, {"pressure_mpa": 0.30})),
            (10, "reading", (2, {"pressure_mpa": 0.065})),  # below 0.07: pending
            (30, "reading", (2, {"pressure_mpa": 0.065})),  # 20 s: not yet (for_s 30)
            (40, "reading", (2, {"pressure_mpa": 0.065})),  # 30 s: raised, warning
            (50, "reading", (2, {"pressure_mpa": 0.04})),  # below 0.05: critical
            (60, "reading", (2, {"pressure_mpa": 0.055})),  # above 0.05, within 0.01
            (70, "reading", (2, {"pressure_mpa": 0.065})),  # past hysteresis: warning
            (80, "reading", (2, {"pressure_mpa": 0.075})),  # within hysteresis: holds
            (90, "reading", (2, {"pressure_mpa": 0.09})),  # clear
        ],
        [
            (40, "raise", "fire.pressure_low", "warning"),
            (50, "severity", "fire.pressure_low", "critical"),
            (70, "severity", "fire.pressure_low", "warning"),
            (90, "clear", "fire.pressure_low", "warning"),
        ],
        watch=("fire.pressure_low",),  # the sudden drop also trips pressure_falling
    ),
    Case(
        "threshold: a dip shorter than for_s raises nothing",
        [
            (0, "reading", (2, {"pressure_mpa": 0.06})),
            (20, "reading", (2, {"pressure_mpa": 0.30})),
            (40, "reading", (2, {"pressure_mpa": 0.06})),
            (60, "reading", (2, {"pressure_mpa": 0.30})),
            (200, "tick", None),
        ],
        [],
    ),
    Case(
        "threshold: device parameter sets the level; held through a tick",
        [
            (0, "reading", (3, {"level_m": 1.05})),  # this pit's high_m is 1.0
            (10, "tick", None),  # for_s 10 elapsed with no new reading
            (20, "reading", (3, {"level_m": 1.7})),  # default high_high 1.6: critical
        ],
        [
            (10, "raise", "drainage.level_high", "warning"),
            (20, "severity", "drainage.level_high", "critical"),
        ],
    ),
    Case(
        "condition: trapped after 60 s occupied, closed, at rest",
        [
            (0, "reading", lift(occupied=True, door_open=False)),
            (30, "reading", lift(occupied=True, door_open=False)),
            (61, "reading", lift(occupied=True, door_open=False)),
            (70, "reading", lift(occupied=True, door_open=True)),
        ],
        [
            (61, "raise", "elevator.trapped", "critical"),
            (70, "clear", "elevator.trapped", "critical"),
        ],
    ),
    Case(
        "condition: inspection mode (a maintainer in the car) is not trapped",
        [
            (0, "reading", lift(occupied=True, door_open=False, mode=1.0)),
            (100, "reading", lift(occupied=True, door_open=False, mode=1.0)),
            (200, "tick", None),
        ],
        [(0, "raise", "elevator.maintenance_mode", "info")],
    ),
    Case(
        "condition: door open while running",
        [
            (0, "reading", lift(running=True, speed_mps=1.0, door_open=False)),
            (1, "reading", lift(running=True, speed_mps=1.0, door_open=True)),
            (2, "reading", lift(running=False, speed_mps=0.0, door_open=True)),
        ],
        [
            (1, "raise", "elevator.door_open_running", "critical"),
            (2, "clear", "elevator.door_open_running", "critical"),
        ],
    ),
    Case(
        "rate: pressure falling 0.02 MPa/min raises pressure_falling",
        [(t, "reading", (2, {"pressure_mpa": 0.35 - 0.02 * t / 60})) for t in range(0, 300, 10)],
        [(50, "raise", "fire.pressure_falling", "warning")],
    ),
    Case(
        "rate: a steady pressure with noise raises nothing",
        [
            (t, "reading", (2, {"pressure_mpa": 0.35 + (0.004 if t % 20 else -0.004)}))
            for t in range(0, 600, 10)
        ],
        [],
    ),
    Case(
        "rate: a slow rise far from the limit predicts nothing yet",
        # 1 mm/s from 0.2 m: high-high (1.6 m) is over 1,200 s away, beyond the 900 s horizon
        [(t, "reading", (3, {"level_m": 0.2 + 0.001 * t})) for t in range(0, 120, 10)],
        [],
    ),
    Case(
        "rate: fast rise predicts overflow, and it clears when the level falls",
        [
            *[(t, "reading", (3, {"level_m": 0.2 + 0.002 * t})) for t in range(0, 60, 10)],
            *[(t, "reading", (3, {"level_m": 0.3 - 0.002 * (t - 60)})) for t in range(60, 400, 10)],
        ],
        [
            (50, "raise", "drainage.overflow_predicted", "major"),
            (70, "clear", "drainage.overflow_predicted", "major"),  # the fit turns
        ],
    ),
    Case(
        "event: raised at once, repeats count, auto-clears",
        [
            (0, "event", (1, "stopped_outside_door_zone")),
            (5, "event", (1, "stopped_outside_door_zone")),
            (300, "tick", None),
            (606, "tick", None),
        ],
        [
            (0, "raise", "elevator.stopped_outside_door_zone", "major"),
            (5, "repeat", "elevator.stopped_outside_door_zone", "major"),
            (606, "clear", "elevator.stopped_outside_door_zone", "major"),
        ],
    ),
    Case(
        "event: clear code clears; a point re-enabled within for_s never raises",
        [
            (0, "event", (4, "disabled")),
            (100, "event", (4, "enabled")),
            (4000, "tick", None),
            (5000, "event", (4, "disabled")),
            (8601, "tick", None),
            (8700, "event", (4, "enabled")),
        ],
        [
            (8601, "raise", "fire.point_disabled", "warning"),
            (8700, "clear", "fire.point_disabled", "warning"),
        ],
    ),
    Case(
        "count: three faults within an hour are one alert, cleared as the window slides",
        [
            (0, "event", (1, "door_lock_fault")),
            (600, "event", (1, "door_lock_fault")),
            (1200, "event", (1, "door_lock_fault")),
            (1800, "event", (1, "door_lock_fault")),
            (4300, "tick", None),  # 0 and 600 have left the hour: 2 of 3
        ],
        [
            (0, "raise", "elevator.safety_circuit", "major"),
            (600, "repeat", "elevator.safety_circuit", "major"),
            (1200, "raise", "elevator.faults_repeated", "major"),
            (1200, "repeat", "elevator.safety_circuit", "major"),
            (1800, "repeat", "elevator.faults_repeated", "major"),
            (1800, "repeat", "elevator.safety_circuit", "major"),
            (4300, "clear", "elevator.faults_repeated", "major"),
            (4300, "clear", "elevator.safety_circuit", "major"),  # auto_clear_s 1800
        ],
    ),
    Case(
        "absence: Last Will raises offline at once, any message clears it",
        [
            (0, "reading", lift()),
            (10, "status", (1, False)),
            (20, "reading", lift()),
        ],
        [
            (10, "raise", "device.offline", "major"),
            (20, "clear", "device.offline", "major"),
        ],
        watch=("device.offline", "elevator.trapped"),
    ),
    Case(
        "absence: stale values raise nothing while offline",
        [
            (0, "reading", (2, {"pressure_mpa": 0.06})),
            (10, "status", (2, False)),
            (500, "tick", None),  # the low pressure's 30 s would be up: the value is stale
        ],
        [(10, "raise", "device.offline", "major")],
        watch=("device.offline", "fire.pressure_low"),
    ),
    Case(
        "absence: a lift that goes silent with someone shut inside raises trapped",
        [
            (0, "reading", lift(occupied=True, door_open=False)),
            (10, "status", (1, False)),  # the power cut: the monitor's Last Will
            (500, "tick", None),  # 60 s up: a life-safety rule does not wait for news
        ],
        [(10, "raise", "device.offline", "major"), (500, "raise", "elevator.trapped", "critical")],
        watch=("device.offline", "elevator.trapped"),
    ),
    Case(
        "event when: a power cut with someone in the car is a possible entrapment",
        [
            (0, "reading", lift(occupied=False)),
            (5, "event", (1, "power_loss")),  # nobody inside: the power-loss warning only
            (6, "event", (1, "power_restored")),
            (10, "reading", lift(occupied=True)),
            (20, "event", (1, "power_loss")),
        ],
        [(20, "raise", "elevator.power_loss_occupied", "critical")],
        watch=("elevator.power_loss_occupied",),
    ),
    Case(
        "event when, device-time order: the reading before a power cut that shows someone"
        " inside arrives after the event (events take a faster path): raised then",
        [
            (0, "reading", lift(occupied=False)),
            (10, "event", (1, "power_loss")),  # not known to hold yet: waits for readings
            (11, "late reading", (9, *lift(occupied=True))),
        ],
        [(10, "raise", "elevator.power_loss_occupied", "critical")],
        watch=("elevator.power_loss_occupied",),
    ),
    Case(
        "event when: a reading past the event's time ends the wait; older news then is"
        " not read as the state at the event",
        [
            (0, "reading", lift(occupied=False)),
            (10, "event", (1, "power_loss")),
            (12, "reading", lift(occupied=False)),
            (13, "late reading", (9, *lift(occupied=True))),
            (14, "late reading", (11, *lift(occupied=True))),
        ],
        [],
        watch=("elevator.power_loss_occupied",),
    ),
    Case(
        "event when: readings that never come end the wait after PARK_S",
        [
            (0, "reading", lift(occupied=False)),
            (10, "event", (1, "power_loss")),
            (45, "tick", None),
            (46, "late reading", (9, *lift(occupied=True))),
        ],
        [],
        watch=("elevator.power_loss_occupied",),
    ),
    Case(
        "event when: a late reading that still shows nobody inside raises nothing",
        [
            (0, "reading", lift(occupied=False)),
            (10, "event", (1, "power_loss")),
            (11, "late reading", (8, *lift(occupied=False))),
            (12, "late reading", (9, *lift(occupied=False, door_open=False))),
        ],
        [],
        watch=("elevator.power_loss_occupied",),
    ),
    Case(
        "absence: silence_s without anything",
        [(0, "reading", lift()), (299, "tick", None), (300, "tick", None)],
        [(300, "raise", "device.offline", "major")],
        watch=("device.offline", "elevator.trapped"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rule_types(case: Case) -> None:
    got = case.run()
    assert sorted(got, key=lambda x: (x[0], x[2])) == sorted(
        case.expect, key=lambda x: (x[0], x[2])
    )


def test_redelivered_or_late_readings_do_not_move_the_state() -> None:
    w = Warner(rules.load(), DEVICES)
    low = Reading(2, 100, {"pressure_mpa": 0.06})
    assert w.observe([low], [], [], now=100) == []
    # the same reading again, and an older one, change nothing (no second pending start)
    assert w.observe([low, Reading(2, 50, {"pressure_mpa": 0.3})], [], [], now=101) == []
    raised = w.observe([Reading(2, 130, {"pressure_mpa": 0.06})], [], [], now=130)
    assert [c.kind for c in raised] == ["raise"]


def test_a_restart_resumes_a_running_for_duration() -> None:
    w = Warner(rules.load(), DEVICES)
    dev, values = lift(occupied=True, door_open=False)
    w.observe([Reading(dev, 0, values)], [], [], now=0)
    saved = w.snapshot(w.touched)
    # a new engine (the worker restarted) restored from the checkpoint
    w2 = Warner(rules.load(), DEVICES)
    w2.restore({int(k): v for k, v in saved.items()})
    got = w2.observe([Reading(dev, 61, values)], [], [], now=61)
    assert [(c.kind, c.alert) for c in got] == [("raise", "elevator.trapped")]
    # without the checkpoint the duration would start over and nothing would be raised
    w3 = Warner(rules.load(), DEVICES)
    assert w3.observe([Reading(dev, 61, values)], [], [], now=61) == []


def test_overrides_per_estate_and_device() -> None:
    text = (
        rules.shipped_path()
        .read_text(encoding="utf-8")
        .replace(
            "overrides: []",
            "overrides:\n"
            "  - {rule: fire.hydrant_pressure_low, estate: E1, set: {for_s: 0}}\n"
            "  - {rule: fire.hydrant_pressure_low, estate: E1, device: HP2, enabled: false}\n",
        )
    )
    book = rules.parse(text)
    hp2 = DeviceInfo(5, "E1", "B1", "HP2", "fire", "hydrant_pressure")
    w = Warner(book, (HYDRANT, hp2))
    got = w.observe(
        [Reading(2, 0, {"pressure_mpa": 0.06}), Reading(5, 0, {"pressure_mpa": 0.06})],
        [],
        [],
        now=0,
    )
    assert [(c.device_id, c.alert) for c in got] == [(2, "fire.pressure_low")]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("metric: pressure_mpa\n    levels:", "has no metric 'pressure_mp'"),
        ("codes: [overspeed]", "has no event code 'overspeeed'"),
        ("subtypes: [hydrant_pressure]", "has no subtype 'hydrant'"),
        ("silence_s: 300", "silence_s (rule elevator.offline): Input should be greater than 0"),
    ],
    ids=["unknown metric", "unknown event code", "unknown subtype", "bad number"],
)
def test_bad_rules_are_refused_with_the_place(change: str, says: str) -> None:
    broken = {
        "metric: pressure_mpa\n    levels:": "metric: pressure_mp\n    levels:",
        "codes: [overspeed]": "codes: [overspeeed]",
        "subtypes: [hydrant_pressure]": "subtypes: [hydrant]",
        "silence_s: 300": "silence_s: -1",
    }[change]
    text = rules.shipped_path().read_text(encoding="utf-8").replace(change, broken, 1)
    with pytest.raises(RulesError) as info:
        rules.parse(text, source="rules.yaml")
    assert says in str(info.value)
    assert "rules.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (
            "      alerts: [elevator.door_open_running, elevator.stopped_outside_door_zone,",
            "      alerts: [elevator.trapped, elevator.stopped_outside_door_zone,",
            "inhibit maintenance_mode would mute the life-safety alert(s) ['elevator.trapped']",
        ),
        (
            "    codes: [trapped]\n",
            "    codes: [trapped]\n    auto_clear_s: 1800\n",
            "auto_clear_s on the life-safety alert elevator.trapped would close it",
        ),
        (
            "overrides: []",
            "overrides: [{rule: fire.alarm, estate: HXY, enabled: false}]",
            "a life-safety rule cannot be disabled",
        ),
        (
            "  - alerts: [fire.alarm]\n",
            "  - alerts: [fire.alarm, fire.nothing]\n",
            "life_safety: no rule raises ['fire.nothing']",
        ),
    ],
    ids=["inhibit names one", "auto-clear", "disabled per estate", "unknown alert"],
)
def test_rules_that_would_mute_or_close_a_life_safety_alert_are_refused(
    old: str, new: str, says: str
) -> None:
    text = rules.shipped_path().read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(RulesError) as info:
        rules.parse(text.replace(old, new, 1), source="rules.yaml")
    assert says in str(info.value)


def test_every_rule_domain_md_names_is_shipped() -> None:
    alerts = {r.alert for r in rules.load().rules}
    assert {
        "elevator.trapped",
        "elevator.overspeed",
        "elevator.overtravel",
        "elevator.door_open_running",
        "elevator.stopped_outside_door_zone",
        "elevator.safety_circuit",
        "elevator.ebike",
        "elevator.power_loss",
        "elevator.faults_repeated",
        "device.offline",
        "fire.alarm",
        "fire.fault",
        "fire.point_disabled",
        "fire.pressure_low",
        "fire.pressure_high",
        "fire.pressure_falling",
        "fire.tank_low",
        "fire.pump_fault",
        "fire.door_open",
        "fire.electrical",
        "fire.electrical_temperature",
        "drainage.level_high",
        "drainage.overflow_predicted",
        "drainage.pump_fault",
        "drainage.water_detected",
        "drainage.power_loss",
    } <= alerts
    assert Severity.parse("critical") > Severity.parse("warning")


BOOLS = ("occupied", "running", "door_open")
BOOK = rules.load()


@st.composite
def streams(draw: st.DrawFn) -> list[Reading]:
    """Readings from two lifts and a sump pit: random subsets of metrics, time moving
    forward or standing still (a batch is sorted by time, so a reading older than the
    previous batch is judged differently by design: the late-reading test covers that)."""
    out: list[Reading] = []
    t = 0.0
    for _ in range(draw(st.integers(1, 60))):
        t += draw(st.sampled_from([0.0, 5.0, 20.0, 40.0, 70.0]))
        dev = draw(st.sampled_from([LIFT.id, 9, SUMP.id]))
        if dev == SUMP.id:
            values: dict[str, float | bool] = {
                "level_m": draw(st.sampled_from([0.5, 1.02, 1.1, 1.7]))
            }
        else:
            names = draw(st.sets(st.sampled_from([*BOOLS, "mode", "speed_mps"]), min_size=1))
            values = {}
            for n in names:
                if n in BOOLS:
                    values[n] = draw(st.booleans())
                elif n == "mode":
                    values[n] = draw(st.sampled_from([0.0, 1.0, 3.0]))
                else:
                    values[n] = draw(st.sampled_from([0.0, 0.5, 1.5]))
        out.append(Reading(dev, t, values))
    return out


@given(streams(), st.integers(1, 7))
@settings(max_examples=300, deadline=None)
def test_a_batch_gives_what_reading_by_reading_gives(stream: list[Reading], cut: int) -> None:
    """The vectorised pass over a batch must agree with the sequential state machine fed
    one reading at a time (threshold and condition rules; rate rules fit once per batch
    by design, so they are left out)."""
    lift2 = DeviceInfo(9, "E1", "B1", "L2", "elevator", "passenger")
    devices = (LIFT, lift2, SUMP)
    holds = {r.id for r in BOOK.rules if r.type in ("threshold", "condition")}

    def run(batches: list[list[Reading]]) -> list[tuple[float, str, str, int, int]]:
        w = Warner(BOOK, devices)
        got = []
        for b in batches:
            got += w.observe(b, [], [], now=max(r.ts for r in b))
        return sorted(
            (c.at, c.kind, c.rule_id, c.device_id, int(c.severity))
            for c in got
            if c.rule_id in holds
        )

    one_by_one = run([[r] for r in stream])
    chunks = [stream[i : i + cut] for i in range(0, len(stream), cut)]
    assert run(chunks) == one_by_one
    assert run([stream]) == one_by_one
