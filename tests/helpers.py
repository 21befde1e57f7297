"""Helpers shared by the integration tests: a small registry, waiting, publishing as the
service account, a worker on a thread, and running the `estate` command."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import psycopg
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion

from alerts import store
from alerts.judge import Op
from alerts.rules import Severity
from alerts.stage import AlertStage
from alerts.supervise import Supervisor
from estate import registry
from estate.db import Conn
from fund import cases as fund_cases
from ingest.batch import Incoming, decode_batch
from ingest.contract import Bounds
from ingest.worker import Directory, Worker
from ingest.writer import Writer
from oversight import notices
from simulators import runner
from simulators.scenarios import Scenario

if TYPE_CHECKING:
    from tests.conftest import Stack

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # simulated time starts here

REGISTRY = """
version: 1
areas: [{{code: C, name: c, level: city}}]
organisations:
  - {{code: EM, name: em, roles: [elevator_maintenance]}}
estates:
{estates}
"""
ESTATE = """
  - code: {code}
    name: e
    area: C
    buildings:
      - code: B1
        name: b
        floors: 10
        devices:
          - {{code: L1, kind: elevator, subtype: passenger, maintenance: EM}}
          - {{code: HP, kind: fire, subtype: hydrant_pressure}}
    devices:
      - {{code: SUMP, kind: drainage, subtype: sump_pit}}
"""


def load_registry(url: str, *codes: str, extra_device: str = "") -> None:
    text = REGISTRY.format(estates="".join(ESTATE.format(code=c) for c in codes))
    if extra_device:
        text += f"      - {{code: {extra_device}, kind: drainage, subtype: manhole}}\n"
    with psycopg.connect(url) as conn:
        registry.load(conn, registry.parse(text))


def count(url: str, sql: str, *params: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return int(row[0])


def wait_for(pred: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except psycopg.OperationalError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Feeder:
    """Publishes numbered messages as the service account and makes sure each is accepted
    (a publication not acknowledged in time is sent again: ingest must dedupe it)."""

    def __init__(self, stack: Stack) -> None:
        u = urlsplit(stack.mqtt_url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv311,
            client_id=f"feeder-{uuid.uuid4().hex[:8]}",
        )
        self.client.username_pw_set(u.username, unquote(u.password or ""))
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", u.port or 1883)
        self.client.loop_start()
        self.resent = 0

    def send(self, topic: str, payload: bytes) -> None:
        for _ in range(120):
            info = self.client.publish(topic, payload, qos=1)
            try:
                info.wait_for_publish(timeout=1.0)
                if info.is_published():
                    return
            except (RuntimeError, ValueError):
                pass  # not connected (the broker is restarting): send it again
            self.resent += 1
            time.sleep(0.25)
        raise AssertionError(f"could not publish to {topic}")

    def numbered(
        self,
        estate: str,
        n: int,
        *,
        start: dt.datetime,
        pace_s: float = 0.0,
        on: Callable[[int], None] | None = None,
    ) -> None:
        topic = f"estate/v1/{estate}/elevator/L1/telemetry"
        for i in range(n):
            ts = start + dt.timedelta(milliseconds=10 * i)
            body = {"ts": ts.isoformat(), "seq": i, "values": {"floor": i % 10 + 1}}
            self.send(topic, json.dumps(body).encode())
            if on is not None:
                on(i)
            if pace_s:
                time.sleep(pace_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def forget_session(stack: Stack, client_id: str) -> None:
    """Delete a persistent session so it stops queueing messages for a finished test."""
    u = urlsplit(stack.mqtt_url)
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311
    )
    c.username_pw_set(u.username, unquote(u.password or ""))
    try:
        c.connect("127.0.0.1", u.port or 1883)
        c.loop_start()
        time.sleep(0.2)
        c.disconnect()
        c.loop_stop()
    except OSError:
        pass


class Running:
    """A worker on a thread, stopped (and its errors surfaced) at the end."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.stop = threading.Event()
        self.error: BaseException | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(30), "worker did not start"

    def _run(self, ready: threading.Event) -> None:
        try:
            self.worker.run(self.stop, ready)
        except BaseException as err:
            self.error = err
            ready.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


ESTATE_CMD = [sys.executable, "-m", "cli"]


def estate_env(
    var_dir: Path, pg_port: int, mqtt_port: int, mqtt_device_port: int
) -> dict[str, str]:
    """The environment for running `estate` against these private servers."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "MQTT_URL"}}
    env.update(
        ESTATE_VAR_DIR=str(var_dir),
        ESTATE_PG_PORT=str(pg_port),
        ESTATE_MQTT_PORT=str(mqtt_port),
        ESTATE_MQTT_DEVICE_PORT=str(mqtt_device_port),
    )
    return env


def run_estate(
    args: list[str], env: dict[str, str], *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ESTATE_CMD, *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# ---------------------------------------------------------------- simulated time


def _time_of(payload: bytes, previous: dt.datetime) -> dt.datetime:
    """A message's time: its own timestamp, or (a status, a Last Will) the one before."""
    body = json.loads(payload)
    first = body[0] if isinstance(body, list) and body else body
    ts = first.get("ts") if isinstance(first, dict) else None
    return dt.datetime.fromisoformat(ts) if isinstance(ts, str) else previous


def play(
    conn: Conn,
    s: Scenario,
    *,
    start: dt.datetime = T0,
    on_tick: Callable[[dt.datetime], None] | None = None,
    checkpoint_s: float = 3600,
) -> None:
    """Simulate the scenario, then feed what the devices sent through ingest and the alert
    stage, one tick at a time, in simulated time; ``on_tick(now)`` runs after each tick
    (the supervisor, a person acting on an order)."""
    reg = registry.read(registry.demo_path())
    fleet = runner.build_fleet(reg, seed=1, estates=[s.estate], devices=s.devices)
    pub = runner.RecordingPublisher()
    runner.run(fleet, pub, start=start, duration_s=s.duration_s, tick_s=s.tick_s, scenario=s)
    directory = Directory()
    directory.load(conn)
    writer = Writer(conn)
    stage = AlertStage(checkpoint_s=checkpoint_s)
    stage.start(conn, owns=lambda e: e == s.estate, publish=None, now=start)
    t = start
    pending: list[Incoming] = []
    end_of_tick = start + dt.timedelta(seconds=s.tick_s)

    def flush(now: dt.datetime) -> None:
        rows = decode_batch(pending, directory.lookup, bounds=Bounds())
        assert not rows.dead, rows.dead[:3]
        writer.write(rows)
        stage.batch(conn, rows, now)
        stage.tick(conn, now)
        pending.clear()
        if on_tick is not None:
            on_tick(now)

    for topic, payload, _ in pub.sent:
        t = _time_of(payload, t)
        while t >= end_of_tick:
            flush(end_of_tick)
            end_of_tick += dt.timedelta(seconds=s.tick_s)
        pending.append(Incoming(topic, payload, 0, 1, 0, t))
    # time goes on to the end of the scenario, whether devices speak or not
    while end_of_tick <= start + dt.timedelta(seconds=s.duration_s):
        flush(end_of_tick)
        end_of_tick += dt.timedelta(seconds=s.tick_s)


# ---------------------------------------------------------------- a county with things in it


@dataclass
class World:
    ids: dict[str, int]


def county_world(conn: Conn, t0: dt.datetime, now: dt.datetime) -> World:
    """The demo county with alerts, work orders (every deadline breached), notices and dead
    letters in 华祥苑 (HXY, inside most scopes) and 城关新村 (CGXC, outside them)."""
    registry.load(conn, registry.read(registry.demo_path()))
    devs = {(d.estate, d.code): d for d in store.devices(conn)}
    t = t0.timestamp()

    def op(estate: str, code: str, rule: str, **kw: Any) -> Op:
        return Op("raise", (devs[(estate, code)].id, rule), rule, Severity.CRITICAL, t, **kw)

    fire = {"confirmation": "to_be_confirmed"}
    store.apply(
        conn,
        [
            op("HXY", "B1-L1", "elevator.overspeed"),
            op("HXY", "B1-SD1", "fire.alarm", **fire),
            op("CGXC", "B1-SD1", "fire.alarm", **fire),
        ],
        {d.id: d for d in devs.values()},
    )
    sup = Supervisor()
    for later in (0, 600, 7200, 86400 * 2):  # every deadline breached: the chains told
        sup.round(conn, t0 + dt.timedelta(seconds=later))
    for estate, area in (("HXY", "SFX-CG-CGJD"), ("CGXC", "SFX-CG-BHJD")):
        notices.issue(
            conn, authority="fire", area_code=area, estate=estate, recipient_org=None,
            device=None, problem="p", basis="", deadline=now.date(), actor="t", now=t0,
        )  # fmt: skip
        # a silence matching no device (it mutes nothing), for the silence routes
        conn.execute(
            "INSERT INTO silences (estate_code, device_code, starts_at, ends_at, author, reason)"
            " VALUES (%s, 'NONE', %s, %s, 't', 'world')",
            (estate, t0, now + dt.timedelta(days=1)),
        )
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, payload, reason, detail, estate_code)"
            " VALUES (%s, %s, 'x', 'not_json', 'd', %s)",
            (t0, f"estate/v1/{estate}/fire/X/telemetry", estate),
        )

    # the fund: an account each, a case inside (eligible) and one outside (refused)
    fund_cases.open_accounts(conn, t0)
    for estate in ("HXY", "CGXC"):
        account = fund_cases.account_of(conn, estate, "B1")
        fund_cases.deposit(conn, account, 1_000_000, kind="deposit", key=f"world-{estate}",
                           actor="t", now=t0)  # fmt: skip
    lift_alert = conn.execute(
        "SELECT id FROM alerts WHERE estate_code = 'HXY' AND kind = 'elevator'"
    ).fetchone()
    assert lift_alert is not None
    fund_cases.open_case(conn, item="elevator_danger", alert_id=int(lift_alert[0]), actor="t",
                         now=t0)  # fmt: skip
    out_alert = conn.execute("SELECT id FROM alerts WHERE estate_code = 'CGXC'").fetchone()
    assert out_alert is not None
    with contextlib.suppress(fund_cases.CaseError):  # fire.alarm is not eligible: refused
        fund_cases.open_case(conn, item="fire_system_failure", alert_id=int(out_alert[0]),
                             actor="t", now=t0)  # fmt: skip

    def one(q: str, *a: object) -> int:
        row = conn.execute(q, a).fetchone()
        assert row is not None, q
        return int(row[0])

    ids = {
        "alert": one("SELECT id FROM alerts WHERE estate_code = 'HXY' AND kind = 'elevator'"),
        "alert_out": one("SELECT id FROM alerts WHERE estate_code = 'CGXC'"),
        "fire_alert": one("SELECT id FROM alerts WHERE estate_code = 'HXY' AND kind = 'fire'"),
        "lift_order": one("SELECT id FROM work_orders WHERE estate_code = 'HXY'"
                          " AND category = 'elevator'"),
        "fire_order": one("SELECT id FROM work_orders WHERE estate_code = 'HXY'"
                          " AND category = 'fire'"),
        "order_out": one("SELECT id FROM work_orders WHERE estate_code = 'CGXC'"),
        "notice": one("SELECT id FROM notices WHERE estate_code = 'HXY'"),
        "notice_out": one("SELECT id FROM notices WHERE estate_code = 'CGXC'"),
        "dead": one("SELECT id FROM dead_letters WHERE estate_code = 'HXY'"),
        "dead_out": one("SELECT id FROM dead_letters WHERE estate_code = 'CGXC'"),
        "fund_case": one("SELECT id FROM fund_cases WHERE estate_code = 'HXY'"),
        "fund_case_out": one("SELECT id FROM fund_cases WHERE estate_code = 'CGXC'"),
        "silence": one("SELECT id FROM silences WHERE estate_code = 'HXY'"),
        "silence_out": one("SELECT id FROM silences WHERE estate_code = 'CGXC'"),
        "account": one("SELECT id FROM fund_accounts WHERE estate_code = 'HXY'"
                       " AND building_code = 'B1'"),
        "account_out": one("SELECT id FROM fund_accounts WHERE estate_code = 'CGXC'"
                           " AND building_code = 'B1'"),
    }  # fmt: skip
    return World(ids)


# ---------------------------------------------------------------- servers and scratch databases


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` under a real uvicorn server on a free port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):  # noqa: S310
                return True
        except OSError:
            return False

    wait_for(up, 20, "the API server")
    try:
        yield base
    finally:
        srv.should_exit = True
        t.join(10)


def copy_template(admin: psycopg.Connection[tuple[Any, ...]], name: str, template: str) -> None:
    """CREATE DATABASE from the migrated template, waiting out a session that is still
    going away from it (a terminated background worker can take a moment)."""
    for attempt in range(50):
        try:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
            return
        except psycopg.errors.ObjectInUse:
            if attempt == 49:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def scratch_database(stack: Stack, prefix: str) -> Iterator[str]:
    """A migrated database of its own (for module-scoped fixtures); dropped afterwards."""
    from tests.conftest import TEMPLATE  # noqa: PLC0415 (conftest imports this module)

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_url = stack.url_for("postgres")
    with psycopg.connect(admin_url, autocommit=True) as c:
        copy_template(c, name, TEMPLATE)
    try:
        yield stack.url_for(name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")
