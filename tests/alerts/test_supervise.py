"""The supervision service against the real broker and TimescaleDB: a trapped event
published by a device becomes a work order within seconds, the maintenance company's
topic carries it, and the worker does not mistake the service's output for device data."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts import store
from alerts.judge import Op
from alerts.notify import MqttSender, Notifier
from alerts.rules import Severity
from alerts.stage import AlertStage
from alerts.supervise import SupervisorService
from cli.dispatch import supervisor
from estate import registry
from estate.db import Conn
from estate.mqtt import service_publisher
from ingest.worker import IngestConfig, Worker
from oversight import notices
from tests.support.data import count, load_registry
from tests.support.pipeline import Feeder, Running, forget_session, wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_a_trapped_event_is_dispatched_and_notified_over_mqtt(
    stack: Stack,
    database_url: str,
    estate_code: str,
    feeder: Feeder,
    running: Callable[[Worker], Running],
) -> None:
    url, estate = database_url, estate_code
    load_registry(url, estate)
    u = urlsplit(stack.mqtt_url)
    got: list[tuple[str, dict[str, object]]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sup-{uuid.uuid4().hex[:8]}")
    sub.username_pw_set(u.username, unquote(u.password or ""))
    sub.on_message = lambda _c, _u, m: got.append((m.topic, json.loads(m.payload)))
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect("127.0.0.1", u.port or 1883)
    sub.subscribe([("estate/v1/orgs/EM/notifications", 1), (f"estate/v1/{estate}/workorders/#", 1)])
    sub.loop_start()
    stop = threading.Event()
    try:
        assert subscribed.wait(10)
        cfg = IngestConfig(client_prefix=f"sup-{estate}", catch_all=f"estate/v1/{estate}/#")
        running(Worker(database_url=url, mqtt_url=stack.mqtt_url, config=cfg, stage=AlertStage()))
        with service_publisher(stack.mqtt_url, f"t-{estate}") as publish:
            sender = MqttSender(publish)
            service = SupervisorService(
                url, Notifier({"mqtt": sender, "stream": sender}), every_s=0.2
            )
            t = threading.Thread(target=service.run, args=(stop,), daemon=True)
            t.start()
            now = dt.datetime.now(dt.UTC).isoformat()
            event = {"ts": now, "seq": 1, "code": "trapped", "detail": {"floor": 7}}
            feeder.send(f"estate/v1/{estate}/elevator/L1/event", json.dumps(event).encode())
            wait_for(lambda: count(url, "SELECT count(*) FROM work_orders") == 1, 30, "an order")
            wait_for(
                lambda: any(tp.startswith("estate/v1/orgs/") for tp, _ in got), 30, "the notice"
            )
            wait_for(
                lambda: count(url, "SELECT count(*) FROM notifications WHERE state <> 'sent'") == 0,
                30,
                "every notification delivered",
            )
            stop.set()
            t.join(10)
    finally:
        stop.set()
        sub.loop_stop()
        sub.disconnect()
        forget_session(stack, f"sup-{estate}-0of1")
    told = [body for tp, body in got if tp == "estate/v1/orgs/EM/notifications"]
    assert [(b["event"], b["assignee"], b["alert"]) for b in told] == [
        ("workorder.dispatched", "EM", "elevator.trapped")
    ]
    live = [body["event"] for tp, body in got if "/workorders/" in tp]
    assert live == ["workorder.created", "workorder.dispatched"]
    # the worker saw its own estate's workorders topic and did not dead-letter it
    assert count(url, "SELECT count(*) FROM dead_letters") == 0


def test_a_new_incident_wakes_the_supervisor_at_once(
    stack: Stack,
    database_url: str,
    estate_code: str,
    feeder: Feeder,
    running: Callable[[Worker], Running],
) -> None:
    """Rounds an hour apart: the trapped passenger's order comes from the NOTIFY the
    alert store sends at commit, not from the clock."""
    url, estate = database_url, estate_code
    load_registry(url, estate)
    stop, ready = threading.Event(), threading.Event()
    try:
        cfg = IngestConfig(client_prefix=f"wake-{estate}", catch_all=f"estate/v1/{estate}/#")
        running(Worker(database_url=url, mqtt_url=stack.mqtt_url, config=cfg, stage=AlertStage()))
        with service_publisher(stack.mqtt_url, f"w-{estate}") as publish:
            sender = MqttSender(publish)
            service = SupervisorService(
                url, Notifier({"mqtt": sender, "stream": sender}), every_s=3600
            )
            t = threading.Thread(target=service.run, args=(stop, ready), daemon=True)
            t.start()
            assert ready.wait(30)  # the first round is done: the next is an hour away
            now = dt.datetime.now(dt.UTC).isoformat()
            event = {"ts": now, "seq": 1, "code": "trapped"}
            feeder.send(f"estate/v1/{estate}/elevator/L1/event", json.dumps(event).encode())
            wait_for(lambda: count(url, "SELECT count(*) FROM work_orders") == 1, 20, "an order")
            assert service.rounds >= 2
            stop.set()
            t.join(10)
            assert not t.is_alive()  # a stop is heard while waiting
    finally:
        stop.set()
        forget_session(stack, f"wake-{estate}-0of1")


def test_the_supervise_command_escalates_overdue_notice_problems(
    stack: Stack, database_url: str, conn: Conn
) -> None:
    """`estate supervise` runs oversight's round too: a notice problem past its deadline
    goes to 挂牌督办 and the street office and the housing authority are told over MQTT."""
    registry.load(conn, registry.read(registry.demo_path()))
    now = dt.datetime.now(dt.UTC)
    notices.issue(
        conn, authority="fire", area_code="SFX", estate="HXY", recipient_org=None,
        problems=[notices.ProblemIn(problem="防火门常开", deadline=now.date(), device="B1-FD",
                                    measures="更换闭门器", responsible_person="王建国")],
        actor="t", now=now - dt.timedelta(days=3),
    )  # fmt: skip
    conn.execute("UPDATE notice_problems SET deadline = %s", (now.date() - dt.timedelta(days=1),))
    stop = threading.Event()
    with service_publisher(stack.mqtt_url, f"n-{uuid.uuid4().hex[:8]}") as publish:
        service = supervisor(database_url, publish)
        t = threading.Thread(target=service.run, args=(stop,), daemon=True)
        t.start()
        try:
            wait_for(
                lambda: count(database_url, "SELECT count(*) FROM notifications"
                              " WHERE event = 'notice.supervised' AND state = 'sent'") == 3,
                30, "the escalation delivered",
            )  # fmt: skip
        finally:
            stop.set()
            t.join(10)
    told = {
        str(o)
        for (o,) in conn.execute(
            "SELECT org_code FROM notifications WHERE event = 'notice.supervised'"
        )
    }
    assert told == {"SO-CG", "HA-SFX", "PF-HX"}
    (at,) = conn.execute("SELECT supervised_at FROM notice_problems").fetchone() or (None,)
    assert at is not None


def test_a_failing_extra_round_never_stops_dispatch(database_url: str, conn: Conn) -> None:
    """Another package's round (notices, the fund) that raises is logged; the supervisor
    goes on dispatching: a trapped passenger still gets an order."""
    registry.load(conn, registry.read(registry.demo_path()))
    calls: list[dt.datetime] = []

    def broken(_c: Conn, now: dt.datetime) -> None:
        calls.append(now)
        raise RuntimeError("a bug in another package's round")

    stop = threading.Event()
    service = SupervisorService(database_url, Notifier({}), every_s=0.1, extra_rounds=(broken,))
    t = threading.Thread(target=service.run, args=(stop,), daemon=True)
    t.start()
    try:
        devs = {(d.estate, d.code): d for d in store.devices(conn)}
        d = devs[("HXY", "B1-L1")]
        now = dt.datetime.now(dt.UTC)
        store.apply(conn, [Op("raise", (d.id, "elevator.trapped_event"), "elevator.trapped",
                              Severity.CRITICAL, now.timestamp())], {d.id: d})  # fmt: skip
        wait_for(lambda: count(database_url, "SELECT count(*) FROM work_orders") == 1, 30,
                 "the trapped passenger's order")  # fmt: skip
        # the broken round ran before and after the order, and the service is still alive
        wait_for(lambda: len(calls) >= 3, 30, "more rounds after the failures")
        assert t.is_alive()
    finally:
        stop.set()
        t.join(10)
