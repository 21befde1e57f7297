"""Helpers shared by the integration tests: a small registry, waiting, publishing as the
service account, a worker on a thread, and running the `estate` command."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from estate import registry
from ingest.worker import Worker

if TYPE_CHECKING:
    from tests.conftest import Stack

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


ESTATE_CMD = [sys.executable, "-m", "estate.cli"]


def estate_env(var_dir: Path, pg_port: int, mqtt_port: int) -> dict[str, str]:
    """The environment for running `estate` against these private servers."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "MQTT_URL"}}
    env.update(
        ESTATE_VAR_DIR=str(var_dir), ESTATE_PG_PORT=str(pg_port), ESTATE_MQTT_PORT=str(mqtt_port)
    )
    return env


def run_estate(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ESTATE_CMD, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
