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
LIFT = DeviceInfo(6, "E1", "B1", "L1", "elevator", "passenger")
OTHER = DeviceInfo(7, "E2", "B1", "SD1", "fire", "smoke_detector")
DEVICES = (SD1, SD2, SD3, DOOR, PUMP, LIFT, OTHER)


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


def test_a_pump_start_in_the_estate_confirms() -> None:
    j = judge()
    j.judge([alarm(SD1, 0)], [], now=0)
    ops = j.judge([], [Event(PUMP.id, 30, "start")], now=30)
    assert kinds(ops) == [("confirm", 1, "confirmed")]


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


def test_an_offline_device_mutes_its_other_alerts() -> None:
    j = judge()
    j.judge([raise_(LIFT, "elevator.offline", "device.offline", 0, "major")], [], now=0)
    ops = j.judge([raise_(LIFT, "elevator.trapped_derived", "elevator.trapped", 5)], [], now=5)
    assert kinds(ops) == [("raise", 6, "inhibit:offline_device")]


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
