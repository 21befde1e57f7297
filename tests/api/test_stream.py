"""The live stream (SSE) through a real uvicorn server and the real broker: each caller
gets the alert and work-order changes of its scope and nothing else; a reconnect with
Last-Event-ID gets what it missed."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.client import HTTPResponse
from typing import Any

import psycopg
import pytest

import api.stream
from alerts import store
from alerts.judge import Op
from alerts.rules import Severity
from api.app import create_app
from api.auth import Role, create_key, create_user, disable_user, revoke_key
from estate import registry
from estate.db import Conn
from estate.mqtt import service_publisher
from tests.support.pipeline import wait_for
from tests.support.stack import Stack
from tests.support.web import serving

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def server(stack: Stack, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # keep-alive comments every 0.3 s: a closing client's blocked read returns at once
    monkeypatch.setattr(api.stream, "HEARTBEAT_S", 0.3)
    with psycopg.connect(database_url, autocommit=True) as c:
        registry.load(c, registry.read(registry.demo_path()))
    app = create_app(
        database_url, mqtt_url=stack.mqtt_url, clock=lambda: NOW, streams_per_principal=3
    )
    with serving(app) as base:
        yield base


class Sse:
    def __init__(self, base: str, key: str, last_event_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        req = urllib.request.Request(f"{base}/api/v1/stream", headers=headers)  # noqa: S310
        self.resp: HTTPResponse = urllib.request.urlopen(req, timeout=20)  # noqa: S310
        assert self.resp.headers["Content-Type"].startswith("text/event-stream")
        self.events: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        current: dict[str, Any] = {}
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "data" in current:
                        self.events.append(current)
                    current = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    current[name] = json.loads(value) if name == "data" else value
        except (OSError, ValueError, AttributeError):
            pass  # closed by close(): http.client drops its buffer under the reader

    def close(self) -> None:
        self.resp.close()


def raise_alerts(conn: Conn) -> list[store.AlertEvent]:
    devs = {(d.estate, d.code): d for d in store.devices(conn)}
    t = NOW.timestamp()
    ops = [
        Op("raise", (devs[("HXY", "B1-L1")].id, "elevator.overspeed"), "elevator.overspeed",
           Severity.CRITICAL, t),
        Op("raise", (devs[("JXY", "B1-L1")].id, "elevator.overspeed"), "elevator.overspeed",
           Severity.CRITICAL, t),
    ]  # fmt: skip
    return store.apply(conn, ops, {d.id: d for d in devs.values()})


def test_each_caller_streams_only_its_scope(stack: Stack, database_url: str, server: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        hx = create_key(conn, "hx", Role.OPERATOR, org_code="PF-HX")
        aj = create_key(conn, "aj", Role.OPERATOR, org_code="PF-AJ")
        fire = create_key(conn, "fire", Role.FIRE_INSPECTOR, area_code="SFX")
        changes = raise_alerts(conn)
    streams = {"hx": Sse(server, hx), "aj": Sse(server, aj), "fire": Sse(server, fire)}
    try:
        time.sleep(0.5)  # the streams are subscribed
        with service_publisher(stack.mqtt_url, "t-stream") as publish:
            for e in changes:
                publish(e.topic, json.dumps(e.payload()).encode())
            wait_for(lambda: len(streams["hx"].events) >= 1, 15, "the HXY alert")
            wait_for(lambda: len(streams["aj"].events) >= 1, 15, "the JXY alert")
            time.sleep(1.0)  # anything else would have arrived by now
    finally:
        for s in streams.values():
            s.close()
    got = {who: [(e["event"], e["data"]["estate"]) for e in s.events] for who, s in streams.items()}
    assert got == {"hx": [("alert", "HXY")], "aj": [("alert", "JXY")], "fire": []}
    first = streams["hx"].events[0]
    assert first["data"]["alert"] == "elevator.overspeed"

    # a reconnect after the first event id gets what came after it, within scope
    admin_key = ""
    with psycopg.connect(database_url, autocommit=True) as conn:
        admin_key = create_key(conn, "admin", Role.ADMIN)
    again = Sse(server, admin_key, last_event_id=str(int(first["id"]) - 1))
    try:
        wait_for(lambda: len(again.events) >= 2, 10, "the replay")
    finally:
        again.close()
    assert [e["data"]["estate"] for e in again.events] == ["HXY", "JXY"]


def test_the_stream_needs_credentials(server: str) -> None:
    req = urllib.request.Request(f"{server}/api/v1/stream")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)  # noqa: S310
    assert err.value.code == 401
    assert err.value.headers["Content-Type"] == "application/problem+json"
    err.value.close()


def test_one_client_closing_never_deafens_another(
    stack: Stack, database_url: str, server: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys = [create_key(conn, f"op{i}", Role.OPERATOR, org_code="PF-HX") for i in range(3)]
        changes = raise_alerts(conn)
    first, second, third = (Sse(server, k) for k in keys)
    try:
        time.sleep(0.5)
        first.close()  # its buffer is as empty as the others': equal, not the same
        third.close()
        time.sleep(0.8)  # the server notices (a keep-alive write fails) and drops them
        with service_publisher(stack.mqtt_url, "t-deaf") as publish:
            for e in changes:
                publish(e.topic, json.dumps(e.payload()).encode())
        wait_for(lambda: len(second.events) >= 1, 15, "the alert on the stream left open")
    finally:
        second.close()
    assert [e["data"]["estate"] for e in second.events] == ["HXY"]


def test_a_stream_ends_once_its_credential_is_revoked(
    stack: Stack, database_url: str, server: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = create_key(conn, "op", Role.OPERATOR, org_code="PF-HX")
        changes = raise_alerts(conn)
    s = Sse(server, key)
    try:
        time.sleep(0.5)
        with psycopg.connect(database_url, autocommit=True) as conn:
            assert revoke_key(conn, "op")
        with service_publisher(stack.mqtt_url, "t-revoked") as publish:
            publish(changes[0].topic, json.dumps(changes[0].payload()).encode())
        wait_for(lambda: any(e.get("event") == "end" for e in s.events), 15, "the end frame")
        s.thread.join(5)
        assert not s.thread.is_alive()  # the server closed the stream
    finally:
        s.close()
    assert [e.get("event") for e in s.events] == ["end"]  # and sent nothing it may not


def test_a_reader_that_falls_behind_is_told_to_reload() -> None:
    hub = api.stream.Hub(per_reader=3)
    with hub.reader(None) as slow, hub.reader(None) as fast:
        for i in range(5):
            hub.put("alert", {"id": i})
            if fast.items:
                fast.items.popleft()
        assert slow.missed
        assert [i.body["id"] for i in slow.items] == [2, 3, 4]
        assert not fast.missed
        assert hub.readers == 2
    assert hub.readers == 0


def test_one_principal_holds_a_bounded_number_of_streams(
    stack: Stack, database_url: str, server: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = create_key(conn, "wall", Role.OPERATOR, org_code="PF-HX")
        other = create_key(conn, "desk", Role.OPERATOR, org_code="PF-HX")
    screens = [Sse(server, key) for _ in range(3)]  # the limit in this server: 3
    try:
        req = urllib.request.Request(  # noqa: S310
            f"{server}/api/v1/stream", headers={"Authorization": f"Bearer {key}"}
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)  # noqa: S310
        assert err.value.code == 429
        assert err.value.headers["Retry-After"] == "5"
        assert err.value.headers["Content-Type"] == "application/problem+json"
        err.value.close()
        Sse(server, other).close()  # another principal is not affected
        screens.pop().close()

        def room_again() -> bool:  # once the server has noticed the closed one
            try:
                screens.append(Sse(server, key))
            except urllib.error.HTTPError as refused:
                refused.close()
                if refused.code != 429:  # anything but "still full" is a failure
                    raise
                return False
            return True

        wait_for(room_again, 15, "a stream slot to free up")
    finally:
        for s in screens:
            s.close()


def test_hub_counts_streams_per_principal() -> None:
    hub = api.stream.Hub(per_principal=2)
    with hub.reader(None, "key:1"), hub.reader(None, "key:1"):
        with pytest.raises(api.stream.TooManyStreams):
            hub.open(None, "key:1")
        with hub.reader(None, "key:2"):
            assert hub.streams_of("key:1") == 2
    assert hub.streams_of("key:1") == 0
    assert hub.readers == 0


class MovableClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.mark.parametrize("how", ["logout", "disable", "expiry"])
def test_a_login_stream_ends_within_one_event_of_logout_disable_or_expiry(
    stack: Stack, database_url: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(api.stream, "HEARTBEAT_S", 0.3)
    clock = MovableClock()
    with psycopg.connect(database_url, autocommit=True) as conn:
        registry.load(conn, registry.read(registry.demo_path()))
        create_user(conn, "li.op", Role.OPERATOR, "correct horse battery", org_code="PF-HX")
        changes = raise_alerts(conn)
    app = create_app(database_url, mqtt_url=stack.mqtt_url, clock=clock, token_ttl_s=900)
    with serving(app) as base:
        form = urllib.parse.urlencode({"username": "li.op", "password": "correct horse battery"})
        login = urllib.request.Request(f"{base}/api/v1/auth/token", data=form.encode())  # noqa: S310
        with urllib.request.urlopen(login, timeout=10) as r:  # noqa: S310
            token = json.loads(r.read())["access_token"]
        s = Sse(base, token)
        try:
            time.sleep(0.5)
            if how == "logout":
                req = urllib.request.Request(  # noqa: S310
                    f"{base}/api/v1/auth/logout", method="POST",
                    headers={"Authorization": f"Bearer {token}"},
                )  # fmt: skip
                urllib.request.urlopen(req, timeout=10).close()  # noqa: S310
            elif how == "disable":
                with psycopg.connect(database_url, autocommit=True) as conn:
                    assert disable_user(conn, "li.op", NOW)
            else:
                clock.now = NOW + dt.timedelta(seconds=901)
            with service_publisher(stack.mqtt_url, f"t-end-{how}") as publish:
                publish(changes[0].topic, json.dumps(changes[0].payload()).encode())
            wait_for(lambda: any(e.get("event") == "end" for e in s.events), 15, "the end")
            s.thread.join(5)
            assert not s.thread.is_alive()
        finally:
            s.close()
    assert [e.get("event") for e in s.events] == ["end"]
