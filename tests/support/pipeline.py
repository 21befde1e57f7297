"""The pipeline under test: waiting for a condition, publishing as the service account, a
worker on a thread, a scenario played through warn and judge."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from alerts.stage import AlertStage
from estate import registry
from estate.db import Conn
from estate.mqtt import close
from ingest.batch import Incoming, decode_batch
from ingest.contract import Bounds
from ingest.worker import Directory, Worker
from ingest.writer import Writer
from simulators import runner
from simulators.scenarios import Scenario
from tests.support.data import T0
from tests.support.stack import Stack


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
        event_every: int = 0,
    ) -> None:
        """Lift L1's messages 0…n-1 (seq i, 10 ms apart): telemetry, and with
        ``event_every`` k every k-th an event (``power_restored``) instead."""
        base = f"estate/v1/{estate}/elevator/L1"
        for i in range(n):
            ts = (start + dt.timedelta(milliseconds=10 * i)).isoformat()
            body: dict[str, object] = {"ts": ts, "seq": i}
            if event_every and i % event_every == 0:
                topic, body["code"] = f"{base}/event", "power_restored"
            else:
                topic, body["values"] = f"{base}/telemetry", {"floor": i % 10 + 1}
            self.send(topic, json.dumps(body).encode())
            if on is not None:
                on(i)
            if pace_s:
                time.sleep(pace_s)

    def close(self) -> None:
        close(self.client)


def forget_session(stack: Stack, client_id: str) -> None:
    """Delete a worker's persistent sessions (``client_id`` and its event lane's) so they
    stop queueing messages for a finished test."""
    for cid in (client_id, f"{client_id}-events"):
        _forget(stack, cid)


def _forget(stack: Stack, client_id: str) -> None:
    u = urlsplit(stack.mqtt_url)
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311
    )
    c.username_pw_set(u.username, unquote(u.password or ""))
    try:
        c.connect("127.0.0.1", u.port or 1883)
        c.loop_start()
        time.sleep(0.2)
        close(c)
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
