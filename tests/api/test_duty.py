"""The fire control room's roster and shift log (GB 25201 §4.2: 24 hours, two certified
people per shift) and the estate's public noticeboard, through the API per role."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role
from estate.db import Conn
from oversight import maintenance
from tests.support.api import demo_keys

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)
KEYS: dict[str, tuple[Role, dict[str, str]]] = {
    "op HX": (Role.OPERATOR, {"org_code": "PF-HX"}),
    "op AJ": (Role.OPERATOR, {"org_code": "PF-AJ"}),
    "fire": (Role.FIRE_INSPECTOR, {"area_code": "SFX"}),
    "fire BH": (Role.FIRE_INSPECTOR, {"area_code": "SFX-CG-BHJD"}),
    "market": (Role.MARKET_INSPECTOR, {"area_code": "SFX"}),
    "lifts TS": (Role.MAINTENANCE, {"org_code": "EM-TS"}),
}
TWO = [{"name": "王芳", "cert_no": "XF-2021-001"}, {"name": "刘强", "cert_no": "XF-2022-017"}]


@pytest.fixture
def keys(conn: Conn) -> dict[str, dict[str, str]]:
    return demo_keys(conn, KEYS)


@pytest.fixture
def client(database_url: str, keys: dict[str, dict[str, str]]) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, clock=lambda: NOW)) as c:
        yield c


def shift(start: str, end: str, staff: list[dict[str, str]] = TWO) -> dict[str, object]:
    return {"starts_at": start, "ends_at": end, "staff": staff}


def test_the_roster_covers_24_hours_with_two_certified_people(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    url = "/api/v1/estates/HXY/duty/shifts"
    day = shift("2026-12-04T08:00:00+08:00", "2026-12-04T20:00:00+08:00")
    r = client.post(url, json=day, headers=keys["op HX"])
    assert r.status_code == 201, r.text
    assert [s["name"] for s in r.json()["staff"]] == ["王芳", "刘强"]
    for body, says in (
        (shift("2026-12-04T20:00:00+08:00", "2026-12-05T08:00:00+08:00", TWO[:1]), "at least 2"),
        (shift("2026-12-04T20:00:00+08:00", "2026-12-05T08:00:00+08:00",
               [TWO[0], {**TWO[0], "cert_no": "XF-9"}]), "at least 2"),
        (shift("2026-12-04T20:00:00+08:00", "2026-12-05T08:00:00+08:00",
               [TWO[0], {"name": "赵六", "cert_no": " "}]), "no certificate number for 赵六"),
        (shift("2026-12-04T19:00:00+08:00", "2026-12-05T08:00:00+08:00"), "overlaps"),
        (shift("2026-12-04T20:00:00+08:00", "2026-12-05T21:00:00+08:00"), "at most 24 hours"),
    ):  # fmt: skip
        got = client.post(url, json=body, headers=keys["op HX"])
        assert (got.status_code, says in got.json()["detail"]) == (422, True), got.text
    for who, status in (("op AJ", 404), ("fire", 403), ("lifts TS", 403)):
        assert client.post(url, json=day, headers=keys[who]).status_code == status, who
    night = shift("2026-12-04T20:00:00+08:00", "2026-12-05T06:00:00+08:00")
    assert client.post(url, json=night, headers=keys["op HX"]).status_code == 201
    # the fire inspector sees the two hours nobody covers
    q = {"start": "2026-12-04T08:00:00+08:00", "end": "2026-12-05T08:00:00+08:00"}
    roster = client.get(url, params=q, headers=keys["fire"]).json()
    assert len(roster["shifts"]) == 2
    assert [(g["start"], g["hours"]) for g in roster["gaps"]] == [("2026-12-04T22:00:00Z", 2.0)]
    assert client.get(url, params=q, headers=keys["fire BH"]).status_code == 404
    assert client.get(url, params=q, headers=keys["market"]).status_code == 403


def test_the_shift_log(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    url = "/api/v1/estates/HXY/duty/log"
    entry = {
        "at": "2026-12-04T08:05:00+08:00",
        "kind": "handover",
        "text": "交接班：主机正常，无火警",
    }
    assert client.post(url, json=entry, headers=keys["op HX"]).status_code == 201
    future = client.post(url, json={**entry, "at": "2026-12-04T12:00:00+08:00"},
                         headers=keys["op HX"])  # fmt: skip
    assert (future.status_code, "future" in future.json()["detail"]) == (422, True)
    assert (
        client.post(url, json={**entry, "kind": "gossip"}, headers=keys["op HX"]).status_code == 422
    )
    assert client.post(url, json=entry, headers=keys["fire"]).status_code == 403
    log = client.get(url, headers=keys["fire"]).json()
    assert [(x["kind"], x["author"]) for x in log] == [("handover", "key:op-HX")]


def test_the_noticeboard_shows_owners_who_keeps_their_lifts(
    client: TestClient, keys: dict[str, dict[str, str]], conn: Conn
) -> None:
    maintenance.seed_demo(conn, NOW)
    put = "/api/v1/estates/HXY/noticeboard/spending"
    body = {"year": 2026, "kind": "elevator", "org_code": "EM-TS", "amount_fen": 12_600_000,
            "note": "2026 年度电梯维保合同"}  # fmt: skip
    assert client.put(put, json=body, headers=keys["op HX"]).status_code == 204
    assert client.put(put, json=body, headers=keys["op AJ"]).status_code == 404
    assert (
        client.put(put, json={**body, "amount_fen": -1}, headers=keys["op HX"]).status_code == 422
    )
    assert client.put(put, json={**body, "year": 2027}, headers=keys["op HX"]).status_code == 422
    board = client.get("/api/v1/public/estates/HXY/noticeboard")  # no login: owners read it
    assert board.status_code == 200, board.text
    b = board.json()
    assert b["property_firm"]["name"] == "华祥物业服务有限公司"
    lifts_by = {c["code"]: c for c in b["companies"] if c["kind"] == "elevator"}
    assert lifts_by["EM-TS"]["phone"] == "0000-3000001"
    assert all(x["emergency_code"] and x["registration_no"] for x in b["lifts"])
    assert all(x["last_maintenance"] for x in b["lifts"])
    assert b["lift_spending_fen"] == 12_600_000
    assert client.get("/api/v1/public/estates/NOPE/noticeboard").status_code == 404
    old = client.get("/api/v1/public/estates/HXY/noticeboard", params={"year": 2025}).json()
    assert old["spending"] == []
