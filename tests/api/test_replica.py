"""Reads off the primary: the API served from a real PostgreSQL streaming replica
(``pg_basebackup -R``, started by ``estate.services.PrivateReplica``), writes and logins
from the primary, read-your-writes by WAL position, the lag in ``/readyz`` and
``/metrics``, and reads falling back to the primary when the replica is away."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role, create_key, create_user
from api.deps import AFTER_LSN_HEADER, LSN_HEADER
from estate.services import PrivateReplica
from tests.api.test_matrix import LIST, READ_ONLY
from tests.support.data import World, county_world
from tests.support.stack import Stack, free_port, scratch_database

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=3)
PASSWORD = "replica test password 7"


@dataclass
class Pair:
    primary: str
    replica: str
    world: World
    admin: dict[str, str]
    server: PrivateReplica


def _on(url: str, port: int) -> str:
    head, tail = url.rsplit("@", 1)
    host_port, db = tail.split("/", 1)
    return f"{head}@{host_port.rsplit(':', 1)[0]}:{port}/{db}"


def caught_up(pair: Pair, timeout: float = 30) -> None:
    """Wait until the replica has replayed everything the primary has written."""
    with psycopg.connect(pair.primary, autocommit=True) as p:
        (lsn,) = p.execute("SELECT pg_current_wal_lsn()::text").fetchone() or ("0/0",)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(pair.replica, autocommit=True) as r:
                row = r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
                if (row.fetchone() or (False,))[0]:
                    return
        except psycopg.OperationalError:
            pass  # the database is not there yet
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pair(stack: Stack) -> Iterator[Pair]:
    settings = stack.settings.model_copy(update={"pg_replica_port": free_port()})
    server = PrivateReplica(settings, stack.services.runner)
    with scratch_database(stack, "replica") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            world = county_world(conn, T0, NOW)
            key = create_key(conn, f"admin-{uuid.uuid4().hex[:6]}", Role.ADMIN)
            create_user(conn, "reader", Role.HOUSING_AUTHORITY, PASSWORD)
        server.start()
        try:
            p = Pair(url, _on(url, server.port), world, {"Authorization": f"Bearer {key}"},
                     server)  # fmt: skip
            caught_up(p)
            yield p
        finally:
            server.stop()


def _balance(client: TestClient, pair: Pair, **headers: str) -> int:
    r = client.get("/api/v1/fund/accounts", headers={**pair.admin, **headers})
    assert r.status_code == 200, r.text
    (acc,) = [a for a in r.json()["items"] if a["id"] == pair.world.ids["account"]]
    return int(acc["balance_fen"])


def test_reads_come_from_the_replica_and_a_write_is_read_back(pair: Pair) -> None:
    with psycopg.connect(pair.replica, autocommit=True) as r:
        assert r.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        with TestClient(create_app(pair.primary, read_url=pair.replica, clock=lambda: NOW)) as c:
            ready = c.get("/readyz").json()
            assert ready["replica"]["state"] == "streaming", ready
            before = _balance(c, pair)
            # replay paused: what the replica answers is visibly older than the primary
            r.execute("SELECT pg_wal_replay_pause()")
            try:
                url = f"/api/v1/fund/accounts/{pair.world.ids['account']}/deposits"
                w = c.post(url, json={"amount_fen": 700},
                           headers={**pair.admin, "Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
                assert w.status_code == 201, w.text
                assert w.json()["balance_fen"] == before + 700  # the write's own answer
                lsn = w.headers[LSN_HEADER]
                assert _balance(c, pair) == before  # served by the paused replica
                # read your writes: with the write's position, the primary answers
                assert _balance(c, pair, **{AFTER_LSN_HEADER: lsn}) == before + 700
                bad = c.get("/api/v1/fund/accounts",
                            headers={**pair.admin, AFTER_LSN_HEADER: "x; DROP"})  # fmt: skip
                assert bad.status_code == 400
                # a login the replica has not seen yet is known at once (asked of the primary)
                form = {"username": "reader", "password": PASSWORD}
                token = c.post("/api/v1/auth/token", data=form).json()["access_token"]
                me = c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
                assert me.status_code == 200, me.text
                lag = c.get("/readyz").json()["replica"]
                assert lag["lag_bytes"] > 0, lag
                assert "estate_api_replica_lag_bytes" in c.get("/metrics").text
            finally:
                r.execute("SELECT pg_wal_replay_resume()")
            caught_up(pair)
            assert _balance(c, pair) == before + 700
            assert c.get("/readyz").json()["replica"]["lag_bytes"] == 0


def test_every_read_route_is_served_by_the_replica(pair: Pair) -> None:
    """A read route that wrote would fail on a standby (read-only): each answers 200."""
    with TestClient(create_app(pair.primary, read_url=pair.replica, clock=lambda: NOW)) as c:
        urls = [u for u, _ in READ_ONLY.values()] + [row[0] for row in LIST.values()]
        for url in urls:
            r = c.get(url, headers=pair.admin)
            assert r.status_code == 200, (url, r.text)


def test_reads_fall_back_to_the_primary_when_the_replica_is_away(pair: Pair) -> None:
    with TestClient(create_app(pair.primary, read_url=pair.replica, clock=lambda: NOW)) as c:
        before = _balance(c, pair)
        pair.server.stop()
        try:
            assert _balance(c, pair) == before  # from the primary now
            ready = c.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["replica"]["state"] == "unavailable"
            assert "estate_api_replica_up 0.0" in c.get("/metrics").text
        finally:
            pair.server.start()
        caught_up(pair)
