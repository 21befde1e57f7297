"""Simulated devices behave like the real ones (time passed in, seeded)."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pytest

from estate import registry
from ingest import contract
from simulators import runner, scenarios
from simulators.devices import (
    ElevatorSim,
    PressureSim,
    SumpPitSim,
    make_sim,
)

T0 = dt.datetime(2026, 11, 22, 2, 0, tzinfo=dt.UTC)


def _elevator(seed: int = 1, floors: int = 18) -> ElevatorSim:
    sim = make_sim(
        estate="E",
        code="L1",
        kind="elevator",
        subtype="passenger",
        rng=random.Random(seed),
        params={"floors": floors, "basement_floors": 1},
        interval_s=1.0,
    )
    assert isinstance(sim, ElevatorSim)
    return sim


def _trace(sim: object, seconds: int, tick: float = 0.5) -> list[dict[str, float | bool]]:
    assert isinstance(sim, ElevatorSim | PressureSim | SumpPitSim)
    out = []
    for i in range(int(seconds / tick)):
        sim.step(T0 + dt.timedelta(seconds=i * tick), tick)
        out.append(sim.values())
    return out


def test_elevator_travels_levels_and_opens_only_at_rest_in_the_door_zone() -> None:
    trace = _trace(_elevator(), 1800)
    floors = {v["floor"] for v in trace}
    assert len(floors) > 8  # it goes places
    assert 0.0 not in floors  # B1 is -1, then 1
    assert min(floors) >= -1
    assert max(floors) <= 18
    assert max(float(v["speed_mps"]) for v in trace) <= 1.75
    for v in trace:
        if v["door_open"]:
            assert v["in_door_zone"]
            assert v["speed_mps"] == 0
    assert any(v["occupied"] for v in trace)
    assert any(not v["occupied"] for v in trace)


def test_trapped_car_stops_outside_the_door_zone_with_people_inside() -> None:
    sim = _elevator()
    _trace(sim, 120)
    sim.trap(T0, with_event=True)
    after = _trace(sim, 90)
    assert all(
        v["speed_mps"] == 0 and v["occupied"] and not v["door_open"] and not v["in_door_zone"]
        for v in after
    )
    sim.release(T0)
    rescued = _trace(sim, 20)
    assert rescued[-1]["in_door_zone"]
    assert any(v["door_open"] for v in rescued)


def test_trap_event_is_emitted_only_when_the_controller_reports_it() -> None:
    for with_event, n in ((True, 1), (False, 0)):
        sim = _elevator()
        sim.trap(T0, with_event=with_event)
        outs = sim.step(T0, 1.0)
        events = [o for o in outs if o.channel is contract.Channel.EVENT]
        assert len(events) == n


def test_hydrant_pressure_holds_with_jockey_pump_and_falls_with_a_leak() -> None:
    sim = make_sim(
        estate="E",
        code="HP",
        kind="fire",
        subtype="hydrant_pressure",
        rng=random.Random(3),
        interval_s=10,
    )
    steady = [float(v["pressure_mpa"]) for v in _trace(sim, 3600, tick=5)]
    assert min(steady) > 0.25
    assert max(steady) < 0.35
    assert isinstance(sim, PressureSim)
    sim.start_leak(T0, mpa_per_min=0.02)
    falling = [float(v["pressure_mpa"]) for v in _trace(sim, 900, tick=5)]
    assert falling[-1] < 0.05
    assert falling[0] > falling[len(falling) // 2] > falling[-1]


def test_sump_pit_cycles_its_pump_and_overflows_when_it_fails() -> None:
    sim = make_sim(
        estate="E",
        code="S",
        kind="drainage",
        subtype="sump_pit",
        rng=random.Random(4),
        params={"high_m": 1.2, "depth_m": 2.0},
    )
    assert isinstance(sim, SumpPitSim)
    sim.rain(T0, lpm=300)
    normal = _trace(sim, 3600, tick=2)
    assert any(v["pump_running"] for v in normal)
    assert max(float(v["level_m"]) for v in normal) < 1.2
    sim.fail_pump(T0)
    failed = _trace(sim, 1200, tick=2)
    assert not any(v["pump_running"] for v in failed)
    assert float(failed[-1]["level_m"]) > 1.6


def test_seq_counts_up_and_wraps() -> None:
    sim = _elevator()
    sim.seq = contract.SEQ_MAX
    seqs = []
    for i in range(5):
        for o in sim.step(T0 + dt.timedelta(seconds=2 * i), 2.0):
            seqs.append(o.payload["seq"])
    assert seqs[:3] == [contract.SEQ_MAX, 0, 1]


def test_clock_skew_and_jitter_shift_timestamps() -> None:
    sim = make_sim(
        estate="E",
        code="L1",
        kind="elevator",
        subtype="passenger",
        rng=random.Random(1),
        params={"floors": 5},
        interval_s=1.0,
        skew_s=-20.0,
        jitter_s=0.4,
        ts_style="epoch_ms",
    )
    lags = []
    for i in range(20):
        now = T0 + dt.timedelta(seconds=i)
        for o in sim.step(now, 1.0):
            lags.append(now.timestamp() * 1000 - o.payload["ts"])
    assert lags
    assert all(20_000 <= lag <= 20_400 for lag in lags)


def test_same_seed_same_run_different_seed_different_run() -> None:
    reg = registry.read(registry.demo_path())

    def run(seed: int) -> list[tuple[str, bytes, bool]]:
        pub = runner.RecordingPublisher()
        fleet = runner.build_fleet(reg, seed=seed, estates=["JXY"])
        runner.run(fleet, pub, start=T0, duration_s=120)
        return pub.sent

    assert run(1) == run(1)
    assert run(1) != run(2)


@pytest.mark.parametrize("name", sorted(scenarios.load()))
def test_scenario_actions_show_in_what_devices_send(name: str) -> None:
    s = scenarios.load()[name]
    reg = registry.read(registry.demo_path())
    fleet = runner.build_fleet(reg, seed=1, estates=[s.estate], devices=s.devices)
    assert sorted(sim.code for sim in fleet) == sorted(s.devices)
    pub = runner.RecordingPublisher()
    report = runner.run(fleet, pub, start=T0, duration_s=s.duration_s, tick_s=s.tick_s, scenario=s)
    assert report.total > 0
    for topic, payload, _ in pub.sent:
        t = contract.Topic.parse(topic)
        d = contract.decode(t, payload, received_at=T0 + dt.timedelta(seconds=s.duration_s))
        assert isinstance(d, contract.Decoded), d
    events = {
        (contract.Topic.parse(t).device, json.loads(p)["code"])
        for t, p, _ in pub.sent
        if t.endswith("/event")
    }
    offline = {
        contract.Topic.parse(t).device
        for t, p, _ in pub.sent
        if t.endswith("/status") and json.loads(p)["online"] is False
    }
    for step in s.steps:
        if step.action == "go_offline":
            assert step.device in offline
        code = EVENT_OF_ACTION.get(step.action)
        if code and step.args.get("with_event", True):
            assert (step.device, code) in events, (step, events)


EVENT_OF_ACTION = {
    "trap": "trapped",
    "overspeed": "overspeed",
    "door_open_running": "door_open_running",
    "ebike": "ebike_detected",
    "alarm": "fire_alarm",
    "point_alarm": "fire_alarm",
    "disable_point": "disabled",
    "start": "start",
    "fail_pump": "pump_fault",
}


def test_the_demo_loop_plays_its_steps_every_cycle_on_the_named_estate() -> None:
    reg = registry.read(registry.demo_path())
    fleet = runner.build_fleet(reg, seed=1, devices=["B1-L1"])  # HXY's and JXY's B1-L1
    loop = scenarios.Loop.model_validate(
        {"cycle_s": 100, "steps": [
            {"at_s": 10, "estate": "HXY", "device": "B1-L1", "action": "trap"},
            {"at_s": 60, "estate": "HXY", "device": "B1-L1", "action": "release"},
        ]}
    )  # fmt: skip
    pub = runner.RecordingPublisher()
    runner.run(fleet, pub, start=T0, duration_s=250, loop=loop)
    trapped = [
        (topic, json.loads(p)["ts"])
        for topic, p, _ in pub.sent
        if topic.endswith("/event") and json.loads(p)["code"] == "trapped"
    ]
    assert [t for t, _ in trapped] == ["estate/v1/HXY/elevator/B1-L1/event"] * 3  # 10, 110, 210
    seconds = [(dt.datetime.fromisoformat(ts) - T0).total_seconds() for _, ts in trapped]
    assert seconds == [10, 110, 210]


def test_the_shipped_demo_loop_names_real_devices_and_actions(tmp_path: Path) -> None:
    loop = scenarios.load_loop()
    assert loop.steps
    assert all(s.at_s < loop.cycle_s for s in loop.steps)
    with pytest.raises(ValueError, match="past the cycle"):
        scenarios.Loop.model_validate(
            {"cycle_s": 10, "steps": [{"at_s": 10, "estate": "HXY", "device": "B1-L1",
                                       "action": "trap"}]}
        )  # fmt: skip
    bad = tmp_path / "loop.yaml"
    bad.write_text("cycle_s: 60\nsteps: [{at_s: 1, estate: HXY, device: B1-L1, action: fly}]\n")
    with pytest.raises(ValueError, match="ElevatorSim has no action 'fly'"):
        scenarios.load_loop(bad)
    bad.write_text("cycle_s: 60\nsteps: [{at_s: 1, estate: HXY, device: NOPE, action: trap}]\n")
    with pytest.raises(ValueError, match="no device HXY/NOPE"):
        scenarios.load_loop(bad)
