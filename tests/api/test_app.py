"""The API against the real database: health, problem details, keys, scopes, dead letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import ApiKeyError, Role, create_key, revoke_key
from estate import registry
from estate.db import Conn
from ingest import contract
from ingest.batch import Incoming, decode_batch
from ingest.contract import Bounds
from ingest.worker import Directory
from ingest.writer import Writer
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
REGISTRY = """
version: 1
areas:
  - {code: C, name: city, level: city}
  - {code: D1, name: d1, level: district, parent: C}
organisations:
  - {code: PF1, name: firm one, roles: [property_firm]}
  - {code: PF2, name: firm two, roles: [property_firm]}
  - {code: EM, name: lifts, roles: [elevator_maintenance]}
estates:
  - {code: E1, name: one, area: D1, property_firm: PF1, buildings: [
      {code: B1, name: b, floors: 5, devices: [{code: L1, kind: elevator, subtype: passenger}]}]}
  - {code: E2, name: two, area: C, property_firm: PF2, buildings: [
      {code: B1, name: b, floors: 5, devices: [{code: L1, kind: elevator, subtype: passenger}]}]}
"""


def dead_letter(conn: Conn, estate: str, device: str, seq: int = 1) -> None:
    """Send one message for a device through the real decode/write path."""
    directory = Directory()
    directory.load(conn)
    body = contract.telemetry(NOW, seq, {"floor": 2.0})
    msg = Incoming(
        f"estate/v1/{estate}/elevator/{device}/telemetry", contract.dumps(body), 0, 1, 0, NOW
    )
    Writer(conn).write(decode_batch([msg], directory.lookup, bounds=Bounds()))


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, autocommit=True) as c:
        registry.load(c, registry.parse(REGISTRY))
        yield c


@pytest.fixture
def client(database_url: str, conn: Conn) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, clock=lambda: NOW)) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(r: Any, status: int, says: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance"} <= body.keys()
    assert says in body["detail"], body
    return body


def test_health_and_readiness(client: TestClient, stack: Stack) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    # a database without the schema is not ready, and says what to run
    with psycopg.connect(stack.url_for("postgres"), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS api_unmigrated")
        c.execute("CREATE DATABASE api_unmigrated")
    try:
        with TestClient(create_app(stack.url_for("api_unmigrated"))) as bare:
            assert_problem(bare.get("/readyz"), 503, "run `estate db upgrade`")
    finally:
        with psycopg.connect(stack.url_for("postgres"), autocommit=True) as c:
            c.execute("DROP DATABASE api_unmigrated WITH (FORCE)")


def test_errors_are_problem_documents(client: TestClient, conn: Conn) -> None:
    r = client.get("/api/v1/dead-letters")
    assert_problem(r, 401, "send an API key")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_problem(client.get("/api/v1/dead-letters", headers=auth("se_1_x")), 401, "unknown")
    key = create_key(conn, "root", Role.ADMIN)
    assert_problem(client.get("/nowhere", headers=auth(key)), 404, "Not Found")
    bad = client.get("/api/v1/dead-letters?limit=0&reason=nonsense", headers=auth(key))
    body = assert_problem(bad, 422, "limit")
    assert {e["where"] for e in body["errors"]} == {"query.limit", "query.reason"}
    spec = client.get("/openapi.json").json()
    assert "/api/v1/dead-letters" in spec["paths"]


def test_keys_are_checked_and_revocable(client: TestClient, conn: Conn) -> None:
    with pytest.raises(ApiKeyError, match="needs --org"):
        create_key(conn, "op", Role.OPERATOR)
    with pytest.raises(ApiKeyError, match="is not a property_firm"):
        create_key(conn, "op", Role.OPERATOR, org_code="EM")
    with pytest.raises(ApiKeyError, match="needs --area"):
        create_key(conn, "fi", Role.FIRE_INSPECTOR)
    key = create_key(conn, "root", Role.ADMIN)
    with pytest.raises(ApiKeyError, match="exists already"):
        create_key(conn, "root", Role.ADMIN)
    assert client.get("/api/v1/dead-letters", headers={"X-API-Key": key}).status_code == 200
    wrong = key[:-3] + ("aaa" if not key.endswith("aaa") else "bbb")
    assert client.get("/api/v1/dead-letters", headers=auth(wrong)).status_code == 401
    assert revoke_key(conn, "root")
    assert_problem(client.get("/api/v1/dead-letters", headers=auth(key)), 401, "revoked")


def test_dead_letters_are_scoped_to_the_callers_estates(client: TestClient, conn: Conn) -> None:
    dead_letter(conn, "E1", "NOPE")
    dead_letter(conn, "E2", "NOPE")
    dead_letter(conn, "XX", "L1")  # an estate not in the registry: only admin sees it
    keys = {
        "admin": create_key(conn, "a", Role.ADMIN),
        "pf1": create_key(conn, "o1", Role.OPERATOR, org_code="PF1"),
        "pf2": create_key(conn, "o2", Role.MANAGER, org_code="PF2"),
        "fire": create_key(conn, "f", Role.FIRE_INSPECTOR, area_code="C"),
        "lift": create_key(conn, "m", Role.MAINTENANCE, org_code="EM"),
    }

    def seen(who: str) -> list[str | None]:
        r = client.get("/api/v1/dead-letters", headers=auth(keys[who]))
        assert r.status_code == 200, r.text
        return sorted(i["estate_code"] or "-" for i in r.json()["items"])

    assert seen("admin") == ["E1", "E2", "XX"]
    assert seen("pf1") == ["E1"]
    assert seen("pf2") == ["E2"]
    for who in ("fire", "lift"):
        r = client.get("/api/v1/dead-letters", headers=auth(keys[who]))
        assert_problem(r, 403, "may not do this")
    r = client.get("/api/v1/dead-letters/summary", headers=auth(keys["pf1"]))
    assert r.json() == [{"reason": "unknown_device", "waiting": 1}]
    # filtering by another firm's estate finds nothing, not an error that leaks its existence
    r = client.get("/api/v1/dead-letters?estate=E2", headers=auth(keys["pf1"]))
    assert r.json()["items"] == []
    one = client.get("/api/v1/dead-letters?estate=E1", headers=auth(keys["admin"])).json()
    item = one["items"][0]
    assert item["reason"] == "unknown_device"
    assert "NOPE" in item["detail"]
    assert '"floor":2.0' in item["payload_text"]


def test_pagination_walks_every_item_once(client: TestClient, conn: Conn) -> None:
    for seq in range(5):
        dead_letter(conn, "E1", "NOPE", seq)
    key = create_key(conn, "a", Role.ADMIN)
    ids: list[int] = []
    cursor = None
    for _ in range(4):
        url = "/api/v1/dead-letters?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth(key)).json()
        ids += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(ids) == 5
    assert ids == sorted(set(ids), reverse=True)


def test_replay_after_the_registry_is_fixed(client: TestClient, conn: Conn) -> None:
    dead_letter(conn, "E1", "L2")
    dead_letter(conn, "E2", "L2")
    fixed = REGISTRY.replace(
        "{code: L1, kind: elevator, subtype: passenger}]}]}",
        "{code: L1, kind: elevator, subtype: passenger},"
        " {code: L2, kind: elevator, subtype: passenger}]}]}",
    )
    registry.load(conn, registry.parse(fixed))
    operator = create_key(conn, "o1", Role.OPERATOR, org_code="PF1")
    manager = create_key(conn, "m1", Role.MANAGER, org_code="PF1")
    r = client.post("/api/v1/dead-letters/replay", json={}, headers=auth(operator))
    assert_problem(r, 403, "allowed: admin, manager")
    r = client.post(
        "/api/v1/dead-letters/replay", json={"reason": "unknown_device"}, headers=auth(manager)
    )
    assert r.json() == {"stored": 1, "still_failing": 0}  # E1's only: E2 is not PF1's
    again = client.post("/api/v1/dead-letters/replay", json={}, headers=auth(manager))
    assert again.json() == {"stored": 0, "still_failing": 0}
    stored = conn.execute(
        "SELECT d.estate_code FROM telemetry t JOIN devices d ON d.id = t.device_id"
    ).fetchall()
    assert stored == [("E1",)]
    waiting = conn.execute(
        "SELECT estate_code FROM dead_letters WHERE replayed_at IS NULL"
    ).fetchall()
    assert waiting == [("E2",)]
