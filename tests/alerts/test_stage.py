"""Alerts in the ingest worker, against the real broker and TimescaleDB: stored with
evidence, grouped into incidents, published over MQTT, resumed after a restart."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts import rules, store
from alerts.judge import Op
from alerts.rules import Severity
from alerts.stage import AlertStage, batch_inputs
from alerts.warn import DeviceInfo
from estate import registry
from estate.db import Conn
from estate.mqtt import close
from ingest.batch import DeviceRef, Incoming, Rows, decode_batch
from ingest.contract import Bounds
from ingest.worker import IngestConfig, Worker
from tests.support.cli import estate_env, run_estate
from tests.support.data import count, load_registry
from tests.support.pipeline import Feeder, Running, forget_session, wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


class Listener:
    """Collects what the service publishes under estate/v1/{estate}/alerts/#."""

    def __init__(self, stack: Stack, estate: str) -> None:
        u = urlsplit(stack.mqtt_url)
        self.got: list[dict[str, Any]] = []
        self.ready = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"listen-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        c.username_pw_set(u.username, unquote(u.password or ""))
        c.on_message = lambda _c, _u, m: self.got.append(json.loads(m.payload))
        c.on_subscribe = lambda *_a: self.ready.set()
        c.connect("127.0.0.1", u.port or 1883)
        c.subscribe(f"estate/v1/{estate}/alerts/#", qos=1)
        c.loop_start()
        assert self.ready.wait(10)
        self.client = c

    def close(self) -> None:
        close(self.client)


@pytest.fixture
def site(stack: Stack, database_url: str, estate_code: str) -> Iterator[tuple[str, str]]:
    load_registry(database_url, estate_code)
    yield database_url, estate_code
    forget_session(stack, f"alerts-{estate_code}-0of1")


def worker(stack: Stack, url: str, estate: str) -> Worker:
    cfg = IngestConfig(client_prefix=f"alerts-{estate}", catch_all=f"estate/v1/{estate}/#")
    return Worker(
        database_url=url,
        mqtt_url=stack.mqtt_url,
        config=cfg,
        stage=AlertStage(checkpoint_s=0.2),
    )


def publish(feeder: Feeder, estate: str, channel: str, device: str, body: dict[str, Any]) -> None:
    feeder.send(f"estate/v1/{estate}/elevator/{device}/{channel}", json.dumps(body).encode())


NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def test_a_trapped_event_is_stored_grouped_and_published(
    stack: Stack,
    site: tuple[str, str],
    feeder: Feeder,
    running: Callable[[Worker], Running],
) -> None:
    url, estate = site
    listener = Listener(stack, estate)
    try:
        running(worker(stack, url, estate))
        event = {"ts": NOW.isoformat(), "seq": 1, "code": "trapped", "detail": {"floor": 7}}
        publish(feeder, estate, "event", "L1", event)
        opened = (
            "SELECT count(*) FROM alerts WHERE alert_type = 'elevator.trapped' AND state = 'open'"
        )
        wait_for(lambda: count(url, opened) == 1, what="the trapped alert")
        wait_for(lambda: len(listener.got) >= 1, what="the alert on MQTT")
    finally:
        listener.close()
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT a.severity, a.occurrences, a.evidence, a.device_code, i.category,"
            " i.building_code, i.state FROM alerts a JOIN incidents i ON i.id = a.incident_id"
        ).fetchone()
    assert row is not None
    severity, occurrences, evidence, device, category, building, state = row
    assert (severity, occurrences, device) == ("critical", 1, "L1")
    assert evidence["event"]["code"] == "trapped"
    assert (category, building, state) == ("elevator", "B1", "open")
    msg = listener.got[0]
    assert (msg["alert"], msg["change"], msg["device"], msg["severity"]) == (
        "elevator.trapped",
        "raise",
        "L1",
        "critical",
    )


def test_a_restart_in_the_middle_of_a_for_duration_still_raises_on_time(
    stack: Stack,
    site: tuple[str, str],
    feeder: Feeder,
    running: Callable[[Worker], Running],
) -> None:
    url, estate = site
    # the test's own clock: the module's NOW is as old as the session, and a device stamp
    # 60 s older than the wall clock would let the worker's tick raise before the restart
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    trapped = {"occupied": True, "running": False, "door_open": False, "mode": 0}
    first = running(worker(stack, url, estate))
    publish(feeder, estate, "telemetry", "L1", {"ts": now.isoformat(), "seq": 1, "values": trapped})
    saved = (
        "SELECT count(*) FROM alert_engine_state s JOIN devices d ON d.id = s.device_id"
        " WHERE d.code = 'L1'"
        " AND s.state->'rules'->'elevator.trapped_derived'->>'since' IS NOT NULL"
    )
    wait_for(lambda: count(url, saved) == 1, what="the running `for` in the checkpoint")
    first.close()  # the worker stops (SIGTERM does the same) 30 s into nothing
    assert count(url, "SELECT count(*) FROM alerts") == 0
    running(worker(stack, url, estate))
    later = now + dt.timedelta(seconds=61)
    publish(
        feeder, estate, "telemetry", "L1", {"ts": later.isoformat(), "seq": 2, "values": trapped}
    )
    raised = (
        "SELECT count(*) FROM alerts a JOIN alert_changes c ON c.alert_id = a.id"
        " WHERE a.rule_id = 'elevator.trapped_derived' AND c.change = 'raise' AND c.at = %s"
        " AND a.first_seen = %s"
    )
    # raised at the second reading, 61 s after the first: the 60 s were not started over;
    # its first evidence (deadlines count from it) is the first reading
    wait_for(lambda: count(url, raised, later, now) == 1, what="trapped raised at t+61")


def test_incidents_group_a_building_and_resolve_when_all_clear(
    conn: Conn, database_url: str, estate_code: str
) -> None:
    load_registry(database_url, estate_code)
    devs = {d.code: d for d in store.devices(conn)}
    lift, hp = devs["L1"], devs["HP"]
    by_id: dict[int, DeviceInfo] = {d.id: d for d in devs.values()}

    alert_of = {
        "elevator.ebike": "elevator.ebike",
        "elevator.overspeed": "elevator.overspeed",
        "fire.hydrant_pressure_low": "fire.pressure_low",
    }

    def op(kind: str, dev: DeviceInfo, rule: str, sev: str, at: float) -> Op:
        return Op(kind, (dev.id, rule), alert_of[rule], Severity.parse(sev), at)  # type: ignore[arg-type]

    t = NOW.timestamp()
    store.apply(conn, [op("raise", lift, "elevator.ebike", "warning", t)], by_id)
    store.apply(
        conn,
        [op("raise", lift, "elevator.overspeed", "critical", t + 1)],
        by_id,
    )
    store.apply(
        conn,
        [op("raise", hp, "fire.hydrant_pressure_low", "warning", t + 2)],
        by_id,
    )
    incidents = conn.execute(
        "SELECT category, severity, state FROM incidents ORDER BY category"
    ).fetchall()
    assert incidents == [("elevator", "critical", "open"), ("fire", "warning", "open")]
    store.apply(
        conn,
        [op("clear", lift, "elevator.overspeed", "critical", t + 3)],
        by_id,
    )
    assert conn.execute(
        "SELECT severity FROM incidents WHERE category = 'elevator'"
    ).fetchone() == ("warning",)
    store.apply(conn, [op("clear", lift, "elevator.ebike", "warning", t + 4)], by_id)
    assert conn.execute("SELECT state FROM incidents WHERE category = 'elevator'").fetchone() == (
        "resolved",
    )
    changes = conn.execute("SELECT change FROM alert_changes ORDER BY id").fetchall()
    assert [c for (c,) in changes] == ["raise", "raise", "raise", "clear", "clear"]


def test_rules_reload_without_restart_and_a_bad_file_keeps_the_old(
    conn: Conn,
    database_url: str,
    estate_code: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    load_registry(database_url, estate_code)
    path = tmp_path / "rules.yaml"
    text = rules.shipped_path().read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    stage = AlertStage(rules_path=path, checkpoint_s=0)
    stage.start(conn, owns=lambda e: e == estate_code, publish=None, now=NOW)
    assert stage.warner.book.rules[0].enabled

    def rewrite(new: str, bump: float) -> None:
        path.write_text(new, encoding="utf-8")
        os.utime(path, (bump, bump))
        stage.tick(conn, NOW)

    rewrite(text.replace("silence_s: 300", "silence_s: 120"), 1_000)
    offline = next(r for r in stage.warner.book.rules if r.id == "elevator.offline")
    assert offline.silence_s == 120  # type: ignore[union-attr]
    with caplog.at_level("ERROR", logger="estate.alerts"):
        rewrite(text.replace("silence_s: 300", "silence_s: -5"), 2_000)
    assert "old ones stay in force" in caplog.text
    offline = next(r for r in stage.warner.book.rules if r.id == "elevator.offline")
    assert offline.silence_s == 120  # type: ignore[union-attr]


def test_the_control_room_confirms_or_calls_a_false_alarm(
    conn: Conn, database_url: str, estate_code: str
) -> None:
    load_registry(database_url, estate_code)
    devs = {d.code: d for d in store.devices(conn)}
    lift, hp = devs["L1"], devs["HP"]
    by_id = {d.id: d for d in devs.values()}
    t = NOW.timestamp()
    # HP is not a detector, but the store only cares that the alert carries a confirmation
    fire = Op(
        "raise",
        (hp.id, "fire.alarm"),
        "fire.alarm",
        Severity.CRITICAL,
        t,
        confirmation="to_be_confirmed",
    )
    ebike = Op("raise", (lift.id, "elevator.ebike"), "elevator.ebike", Severity.WARNING, t)
    fire_id, ebike_id = (e.alert_id for e in store.apply(conn, [fire, ebike], by_id))
    with pytest.raises(store.AlertActionError, match="is not a fire alarm"):
        store.confirm_fire(conn, ebike_id, actor="li", now=NOW, false_alarm_cause=None)
    with pytest.raises(store.AlertActionError, match="is not one of cooking, steam"):
        store.confirm_fire(conn, fire_id, actor="li", now=NOW, false_alarm_cause=" ")
    store.confirm_fire(conn, fire_id, actor="li", now=NOW, false_alarm_cause="cooking")
    row = conn.execute(
        "SELECT confirmation, false_alarm_cause, state FROM alerts WHERE id = %s", (fire_id,)
    ).fetchone()
    assert row == ("false_alarm", "cooking", "cleared")
    last = conn.execute(
        "SELECT change, actor, detail->>'cause' FROM alert_changes WHERE alert_id = %s"
        " ORDER BY id DESC LIMIT 1",
        (fire_id,),
    ).fetchone()
    assert last == ("false_alarm", "li", "cooking")
    with pytest.raises(store.AlertActionError, match="is cleared"):
        store.confirm_fire(conn, fire_id, actor="li", now=NOW, false_alarm_cause=None)


def test_alert_changes_reach_an_in_process_listener(
    conn: Conn, database_url: str, estate_code: str
) -> None:
    load_registry(database_url, estate_code)
    heard: list[store.AlertEvent] = []
    stage = AlertStage(on_event=heard.append)
    stage.start(conn, owns=lambda e: e == estate_code, publish=None, now=NOW)
    lift = next(d for d in store.devices(conn) if d.code == "L1")
    rows = Rows()
    rows.events.append((NOW, lift.id, 1, "ebike_detected", {}))
    stage.batch(conn, rows, NOW)
    assert [(e.alert, e.change, e.device) for e in heard] == [("elevator.ebike", "raise", "L1")]


def test_a_long_scenario_simulated_as_fast_as_possible_is_stored_and_raises(
    stack: Stack, database_url: str, running: Callable[[Worker], Running]
) -> None:
    """What the demo banner suggests: `estate simulate --scenario NAME --speed 0` beside a
    running worker. A 900 s scenario replayed in a second must not put its timestamps in
    the future (they would be dead letters), and its alert must come."""
    with psycopg.connect(database_url) as c:
        registry.load(c, registry.read(registry.demo_path()))
    prefix = f"alerts-fast-{uuid.uuid4().hex[:6]}"
    cfg = IngestConfig(client_prefix=prefix, catch_all="estate/v1/BSY/#")
    running(
        Worker(database_url=database_url, mqtt_url=stack.mqtt_url, config=cfg, stage=AlertStage())
    )
    s = stack.settings
    try:
        done = run_estate(
            ["simulate", "--scenario", "fire_door_held_open", "--speed", "0"],
            estate_env(s.var_dir, s.pg_port, s.mqtt_port, s.mqtt_device_port),
        )
        assert done.returncode == 0, done.stderr
        door = (
            "SELECT count(*) FROM alerts WHERE alert_type = 'fire.door_open'"
            " AND device_code = 'T1-FD'"
        )
        wait_for(lambda: count(database_url, door) == 1, what="the fire door alert")
        assert count(database_url, "SELECT count(*) FROM dead_letters") == 0
    finally:
        forget_session(stack, f"{prefix}-0of1")


def test_muting_never_resolves_an_incident_whose_alert_is_open(
    conn: Conn, database_url: str, estate_code: str
) -> None:
    load_registry(database_url, estate_code)
    devs = {d.code: d for d in store.devices(conn)}
    lift = devs["L1"]
    by_id: dict[int, DeviceInfo] = {d.id: d for d in devs.values()}
    t = NOW.timestamp()
    key = (lift.id, "elevator.ebike")

    def op(kind: str, at: float, **kw: Any) -> Op:
        return Op(kind, key, "elevator.ebike", Severity.WARNING, at, **kw)  # type: ignore[arg-type]

    (raised,) = store.apply(conn, [op("raise", t)], by_id)
    store.apply(conn, [op("mute", t + 10, muted_by="silence:1")], by_id)
    state = "SELECT state FROM incidents WHERE id = %s"
    assert conn.execute(state, (raised.incident_id,)).fetchone() == ("open",)
    store.apply(conn, [op("unmute", t + 20)], by_id)  # the silence ended: it is still there
    assert conn.execute(state, (raised.incident_id,)).fetchone() == ("open",)
    store.apply(conn, [op("clear", t + 30)], by_id)
    assert conn.execute(state, (raised.incident_id,)).fetchone() == ("resolved",)


def test_the_engine_reads_only_the_columns_of_a_reading() -> None:
    """A metric ingest kept in ``extra`` (unknown, or another kind's with the other type)
    is not a reading for the rules; a reading without extras is passed as decoded."""
    now = dt.datetime.now(dt.UTC)
    lift = DeviceRef(1, "E1", "L1", "elevator")
    topic = "estate/v1/E1/elevator/L1/telemetry"
    msgs = [
        Incoming(topic, json.dumps({"ts": now.isoformat(), "seq": s, "values": v}).encode(),
                 1, 1, 1, now)
        for s, v in ((1, {"floor": 3, "humidity": 40}), (2, {"floor": 4, "closed": True}),
                     (3, {"floor": 5, "load_pct": 20}))
    ]  # fmt: skip
    rows = decode_batch(msgs, lambda _e, _c: lift, bounds=Bounds())
    readings, _, _ = batch_inputs(rows, now.timestamp())
    assert [r.values for r in readings] == [
        {"floor": 3},
        {"floor": 4, "closed": True},
        {"floor": 5, "load_pct": 20},
    ]
    assert readings[2].values is rows.telemetry_values[2]


def test_the_registry_is_read_outside_the_tick_and_applied_by_it(
    database_url: str, conn: Conn, estate_code: str
) -> None:
    """``prepare`` reads the devices (the worker runs it outside the stage's lock, so an
    event is never judged after a city's registry read); ``tick`` applies what it read,
    and an unchanged registry leaves the engine's view (and its caches) as they were."""
    load_registry(database_url, estate_code)
    stage = AlertStage(checkpoint_s=0, refresh_s=0)
    stage.start(conn, owns=lambda e: e == estate_code, publish=None, now=NOW)
    view = stage.warner.devices
    lift = next(d for d in view.values() if d.kind == "elevator")
    stage.prepare(conn, NOW)
    stage.tick(conn, NOW)
    assert stage.warner.devices is view  # nothing changed: not rebuilt

    conn.execute("UPDATE devices SET active = false WHERE id = %s", (lift.id,))
    stage.prepare(conn, NOW)
    assert lift.id in stage.warner.devices  # read, not applied yet
    stage.tick(conn, NOW)
    assert lift.id not in stage.warner.devices
    assert lift.id not in stage.judge.devices
