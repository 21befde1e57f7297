"""Judgment: dedup, fire confirmation, inhibition, silences, flapping (no I/O)."""

from __future__ import annotations

from alerts import rules
from alerts.judge import Judge, Op, Silence
from alerts.rules import Severity
from alerts.warn import Change, DeviceInfo, Event

SD1 = DeviceInfo(1, "E1", "B1", "SD1", "fire", "smoke_detector")
SD2 = DeviceInfo(2, "E1", "B1", "SD2", "fire", "smoke_detector")
SD3 = DeviceInfo(3, "E1", "B2", "SD3", "fire", "smoke_detector")
DOOR = DeviceInfo(4, "E1", "B1", "FD", "fire", "fire_door")
PUMP = DeviceInfo(5, "E1", None, "PUMP1", "fire", "fire_pump")
B1_PUMP = DeviceInfo(8, "E1", "B1", "PUMP-B1", "fire", "fire_pump")
SUMP = DeviceInfo(9, "E1", None, "SUMP", "drainage", "sump_pit")
VALVE = DeviceInfo(10, "E1", None, "BFV", "drainage", "backflow_valve")
VALVE2 = DeviceInfo(11, "E2", None, "BFV", "drainage", "backflow_valve")
LIFT = DeviceInfo(6, "E1", "B1", "L1", "elevator", "passenger")
OTHER = DeviceInfo(7, "E2", "B1", "SD1", "fire", "smoke_detector")
DEVICES = (SD1, SD2, SD3, DOOR, PUMP, LIFT, OTHER, B1_PUMP, SUMP, VALVE, VALVE2)


def raise_(dev: DeviceInfo, rule: str, alert: str, at: float, sev: str = "critical") -> Change:
    return Change("raise", rule, alert, dev.id, Severity.parse(sev), at, {})


def clear(dev: DeviceInfo, rule: str, alert: str, at: float) -> Change:
    return Change("clear", rule, alert, dev.id, Severity.CRITICAL, at, {})


def alarm(dev: DeviceInfo, at: float) -> Change:
    return raise_(dev, "fire.alarm", "fire.alarm", at)


def judge() -> Judge:
    return Judge(rules.load(), DEVICES)


def kinds(ops: list[Op]) -> list[tuple[str, int, str | None]]:
    return [(o.kind, o.key[0], o.confirmation or o.muted_by) for o in ops]


def test_one_detector_is_to_be_confirmed_a_second_confirms_both() -> None:
    j = judge()
    assert kinds(j.judge([alarm(SD1, 0)], [], now=0)) == [("raise", 1, "to_be_confirmed")]
    ops = j.judge([alarm(SD2, 40)], [], now=40)
    assert ("raise", 2, "confirmed") in kinds(ops)
    assert ("confirm", 1, "confirmed") in kinds(ops)


def test_detectors_in_other_buildings_or_estates_or_too_late_do_not_confirm() -> None:
    j = judge()
    j.judge([alarm(SD1, 0)], [], now=0)
    assert kinds(j.judge([alarm(SD3, 10)], [], now=10)) == [("raise", 3, "to_be_confirmed")]
    assert kinds(j.judge([alarm(OTHER, 20)], [], now=20)) == [("raise", 7, "to_be_confirmed")]
    late = judge()
    late.judge([alarm(SD1, 0)], [], now=0)
    assert kinds(late.judge([alarm(SD2, 500)], [], now=500)) == [("raise", 2, "to_be_confirmed")]


def test_a_pump_start_confirms_only_in_the_same_building() -> None:
    # GB 25201: linked signals confirm within the same building or fire zone; an estate's
    # shared pump started for a routine test does not turn B1's alarm into a fire
    j = judge()
    j.judge([alarm(SD1, 0)], [], now=0)
    assert kinds(j.judge([], [Event(PUMP.id, 30, "start")], now=30)) == []
    assert j.open[(SD1.id, "fire.alarm")].confirmation == "to_be_confirmed"
    ops = j.judge([], [Event(B1_PUMP.id, 40, "start")], now=40)
    assert kinds(ops) == [("confirm", 1, "confirmed")]


def test_a_device_in_work_or_disabled_confirms_nothing() -> None:
    j = judge()
    j.silences = [Silence(3, "E1", "B1", "PUMP-B1", None, 0, 1000)]  # the pump is tested
    j.judge([alarm(SD1, 0)], [], now=0)
    assert kinds(j.judge([], [Event(B1_PUMP.id, 30, "start")], now=30)) == []
    # a detector left disabled (屏蔽) at the panel does not confirm a neighbour either
    j.judge([raise_(SD2, "fire.point_disabled", "fire.point_disabled", 35, "warning")], [], now=35)
    ops = j.judge([alarm(SD2, 40)], [], now=40)
    assert ("raise", 2, "to_be_confirmed") in kinds(ops)
    assert j.open[(SD1.id, "fire.alarm")].confirmation == "to_be_confirmed"


def test_a_repeat_is_not_a_second_alert() -> None:
    j = judge()
    j.judge([alarm(SD1, 0)], [], now=0)
    ops = j.judge([alarm(SD1, 5)], [], now=5)
    assert [o.kind for o in ops] == ["repeat"]


def test_a_confirmed_fire_mutes_the_fire_door_of_its_building_until_it_clears() -> None:
    j = judge()
    door = raise_(DOOR, "fire.door_open", "fire.door_open", 0, "warning")
    assert kinds(j.judge([door], [], now=0)) == [("raise", 4, None)]
    j.judge([alarm(SD1, 10)], [], now=10)  # to be confirmed: the door is still news
    assert j.open[(DOOR.id, "fire.door_open")].muted_by is None
    ops = j.judge([alarm(SD2, 20)], [], now=20)
    assert ("mute", 4, "inhibit:confirmed_fire") in kinds(ops)
    j.judge([clear(SD1, "fire.alarm", "fire.alarm", 100)], [], now=100)
    ops = j.judge([clear(SD2, "fire.alarm", "fire.alarm", 110)], [], now=110)
    assert ("unmute", 4, None) in kinds(ops)


def test_an_offline_device_mutes_its_other_alerts_but_never_a_life_safety_one() -> None:
    j = judge()
    j.judge([raise_(LIFT, "elevator.offline", "device.offline", 0, "major")], [], now=0)
    ebike = raise_(LIFT, "elevator.ebike", "elevator.ebike", 4, "warning")
    assert kinds(j.judge([ebike], [], now=4)) == [("raise", 6, "inhibit:offline_device")]
    # a power cut is when people get trapped: the trapped alarm is never muted
    ops = j.judge([raise_(LIFT, "elevator.trapped_derived", "elevator.trapped", 5)], [], now=5)
    assert kinds(ops) == [("raise", 6, None)]
    assert ops[0].life_safety


def test_no_silence_mutes_a_life_safety_alert() -> None:
    j = judge()
    j.silences = [Silence(9, "E1", "B1", None, None, 0, 1000)]  # the whole building
    ops = j.judge(
        [
            raise_(LIFT, "elevator.ebike", "elevator.ebike", 5, "warning"),
            raise_(LIFT, "elevator.trapped_event", "elevator.trapped", 6),
            alarm(SD1, 7),
        ],
        [],
        now=7,
    )
    assert kinds(ops) == [
        ("raise", 6, "silence:9"), ("raise", 6, None), ("raise", 1, "to_be_confirmed"),
    ]  # fmt: skip
    assert kinds(j.remute(500)) == []


def test_the_trapped_event_and_the_trapped_pattern_are_one_alert() -> None:
    j = judge()
    first = j.judge([raise_(LIFT, "elevator.trapped_event", "elevator.trapped", 10)], [], now=10)
    second = j.judge([raise_(LIFT, "elevator.trapped_derived", "elevator.trapped", 70)], [], now=70)
    assert [o.kind for o in first] == ["raise"]
    assert [(o.kind, o.rule, o.rules) for o in second] == [
        ("repeat", "elevator.trapped_derived",
         ("elevator.trapped_derived", "elevator.trapped_event")),
    ]  # fmt: skip
    assert list(j.open) == [(LIFT.id, "elevator.trapped")]
    # the telemetry pattern ends (the car moves): the controller's alarm still stands
    ops = j.judge([clear(LIFT, "elevator.trapped_derived", "elevator.trapped", 200)], [], now=200)
    assert [(o.kind, o.rules) for o in ops] == [("rules", ("elevator.trapped_event",))]
    assert (LIFT.id, "elevator.trapped") in j.open


def test_a_life_safety_alert_is_held_not_cleared_by_the_clock_or_an_undecided_reset() -> None:
    j = judge()
    j.judge([raise_(LIFT, "elevator.trapped_event", "elevator.trapped", 10)], [], now=10)
    auto = Change(
        "clear", "elevator.trapped_event", "elevator.trapped", LIFT.id, Severity.CRITICAL,
        1810, {"auto_clear": True},
    )  # fmt: skip
    assert [o.kind for o in j.judge([auto], [], now=1810)] == ["hold"]
    assert (LIFT.id, "elevator.trapped") in j.open  # still on the board
    # a fire alarm reset before the control room decided it stays too
    j.judge([alarm(SD1, 0)], [], now=0)
    ops = j.judge([clear(SD1, "fire.alarm", "fire.alarm", 60)], [], now=60)
    assert [o.kind for o in ops] == ["hold"]
    # once confirmed, the reset after the fire is a real end
    j.judge([alarm(SD2, 70)], [], now=70)
    ops = j.judge([clear(SD2, "fire.alarm", "fire.alarm", 90)], [], now=90)
    assert [o.kind for o in ops] == ["clear"]


def test_a_silence_mutes_matching_alerts_in_its_window_only() -> None:
    j = judge()
    j.silences = [Silence(9, "E1", "B1", None, "fire.door_open", 100, 200)]
    door = raise_(DOOR, "fire.door_open", "fire.door_open", 50, "warning")
    assert kinds(j.judge([door], [], now=50)) == [("raise", 4, None)]
    assert kinds(j.remute(150)) == [("mute", 4, "silence:9")]
    assert kinds(j.remute(250)) == [("unmute", 4, None)]


def test_flapping_is_flagged() -> None:
    j = judge()
    flags = []
    for i in range(5):
        t = i * 100.0
        ops = j.judge([raise_(LIFT, "elevator.ebike", "elevator.ebike", t, "warning")], [], now=t)
        flags.append(ops[0].flapping)
        j.judge([clear(LIFT, "elevator.ebike", "elevator.ebike", t + 50)], [], now=t + 50)
    assert flags == [False, False, False, True, True]


def test_a_backflow_valve_open_while_the_water_is_high_is_an_alert() -> None:
    j = judge()
    latest: dict[int, dict[str, object]] = {
        VALVE.id: {"closed": False},
        VALVE2.id: {"closed": False},
    }
    assert j.judge([], [], now=0, latest=latest) == []  # no water: an open valve is normal
    high = raise_(SUMP, "drainage.level_high", "drainage.level_high", 10, "warning")
    ops = j.judge([high], [], now=10, latest=latest)
    assert [(o.kind, o.key) for o in ops] == [
        ("raise", (SUMP.id, "drainage.level_high")),
        ("raise", (VALVE.id, "drainage.backflow_open")),  # not the other estate's valve
    ]
    latest[VALVE.id] = {"closed": True}  # shut: the alert ends
    ops = j.judge([], [], now=20, latest=latest)
    assert [(o.kind, o.key) for o in ops] == [("clear", (VALVE.id, "drainage.backflow_open"))]
    latest[VALVE.id] = {"closed": False}
    j.judge([], [], now=30, latest=latest)
    low = clear(SUMP, "drainage.level_high", "drainage.level_high", 40)
    ops = j.judge([low], [], now=40, latest=latest)  # the water went down
    assert ("clear", (VALVE.id, "drainage.backflow_open")) in [(o.kind, o.key) for o in ops]
