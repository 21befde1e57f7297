"""The fund through the API: a repair case from an elevator's work order to the public
disclosure, each step by the role that owns it; idempotent settlement."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role, create_key
from estate.db import Conn
from tests.support.data import county_world

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=3)
KEYS: dict[str, tuple[Role, dict[str, str]]] = {
    "op": (Role.OPERATOR, {"org_code": "PF-HX"}),
    "street": (Role.STREET_OFFICE, {"area_code": "SFX-CG-CGJD"}),
    "housing": (Role.HOUSING_AUTHORITY, {}),
    "lifts": (Role.MAINTENANCE, {"org_code": "EM-TS"}),
}


@pytest.fixture
def world(conn: Conn) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    w = county_world(conn, T0, NOW)
    keys = {
        who: {"Authorization": f"Bearer {create_key(conn, who, r, **b)}"}
        for who, (r, b) in KEYS.items()
    }
    return w.ids, keys


@pytest.fixture
def client(database_url: str, world: Any) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, clock=lambda: NOW)) as c:
        yield c


def test_a_repair_case_through_the_api_to_the_public_disclosure(
    client: TestClient, world: tuple[dict[str, int], dict[str, dict[str, str]]]
) -> None:
    ids, k = world
    r = client.post("/api/v1/fund/cases", json={"item": "elevator_danger",
                                                "order_id": ids["lift_order"]},
                    headers=k["op"])  # fmt: skip
    assert r.status_code == 422  # its alert has a case already: one case per failure
    assert f"case {ids['fund_case']} is open for this failure already" in r.json()["detail"]
    case = ids["fund_case"]
    url = f"/api/v1/fund/cases/{case}"
    assert client.post(f"{url}/estimate", json={"estimate_fen": 80_000},
                       headers=k["lifts"]).status_code == 404  # not theirs to see  # fmt: skip
    r = client.post(f"{url}/estimate", json={"estimate_fen": 80_000}, headers=k["op"])
    assert r.json()["state"] == "estimated"
    # 5 % of the 1,000,000 fen fund is 50,000: the standing authorisation cannot cover it
    r = client.post(f"{url}/approve", json={"by": "standing"}, headers=k["op"])
    assert r.status_code == 409
    assert "would pass 5% of the fund" in r.json()["detail"]
    assert client.post(f"{url}/approve", json={"by": "authority"},
                       headers=k["op"]).status_code == 403  # fmt: skip
    r = client.post(f"{url}/approve", json={"by": "authority"}, headers=k["street"])
    assert r.json()["approval"] == "street_office:street"
    client.post(f"{url}/repaired", json={"note": "brake replaced"}, headers=k["op"])
    bad = client.post(f"{url}/settle", json={"cost_fen": 1, "invoice_ref": "<b>call 123</b>"},
                      headers={**k["housing"], "Idempotency-Key": "bad-ref"})  # fmt: skip
    assert bad.status_code == 422  # published to owners: an invoice number and nothing else
    settle = {"cost_fen": 76_543, "invoice_ref": "INV-7"}
    no_key = client.post(f"{url}/settle", json=settle, headers=k["housing"])
    assert no_key.status_code == 422  # money never moves without an idempotency key
    h = {**k["housing"], "Idempotency-Key": "settle-7"}
    first = client.post(f"{url}/settle", json=settle, headers=h)
    again = client.post(f"{url}/settle", json=settle, headers=h)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["journal_id"] == again.json()["journal_id"]
    other = client.post(f"{url}/settle", json={**settle, "cost_fen": 1}, headers=h)
    assert other.status_code == 422  # the same key with another body: refused
    assert "another cost or invoice" in other.json()["detail"]
    other = client.post(f"{url}/settle", json=settle, headers={**h, "Idempotency-Key": "x"})
    assert other.status_code == 409
    assert "paid twice" in other.json()["detail"]

    public = client.get("/api/v1/public/estates/HXY/disclosure")  # no credentials
    assert public.status_code == 200
    (shown,) = public.json()
    assert (shown["case_id"], shown["cost_fen"], shown["invoice_ref"]) == (case, 76_543, "INV-7")
    assert shown["approval"] == "street_office"  # the kind of authority, not the login name
    assert 'street"' not in public.text
    assert sum(s["share_fen"] for s in shown["shares"]) == 76_543
    assert len(shown["shares"]) > 50  # every owner of building 1
    report = client.get("/api/v1/public/estates/HXY/fund-report?year=2026").json()
    b1 = next(r for r in report if r["building"] == "B1")
    assert (b1["deposits_fen"], b1["repairs_fen"], b1["closing_fen"]) == (
        1_000_000, 76_543, 1_000_000 - 76_543,
    )  # fmt: skip
    assert client.get("/api/v1/public/estates/NOPE/disclosure").status_code == 404
    detail = client.get(url, headers=k["housing"]).json()
    assert [e["change"] for e in detail["events"]] == [
        "opened", "estimated", "standing_refused", "approved", "repaired", "settled",
    ]  # fmt: skip
    assert detail["evidence"]["alert"]["type"] == "elevator.overspeed"


def test_deposits_need_a_key_and_the_right_role(
    client: TestClient, world: tuple[dict[str, int], dict[str, dict[str, str]]]
) -> None:
    ids, k = world
    url = f"/api/v1/fund/accounts/{ids['account']}/deposits"
    body = {"amount_fen": 500, "kind": "interest"}
    assert (
        client.post(url, json=body, headers={**k["op"], "Idempotency-Key": "a"}).status_code == 403
    )
    h = {**k["housing"], "Idempotency-Key": "int-1"}
    first = client.post(url, json=body, headers=h).json()
    again = client.post(url, json=body, headers=h).json()
    assert first == again  # the same key: one entry, the same answer
    assert first["balance_fen"] == 1_000_500
    reused = client.post(url, json={**body, "amount_fen": 9}, headers=h)
    assert reused.status_code == 422  # a key bound to its request: refused, not replayed
    assert "used for another request" in reused.json()["detail"]
