"""/api/v1/work-orders, the responsibility list, gaps, overdue items and the ledger:
each role sees and does only what is its own (checked inside and outside its scope)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator

import openpyxl
import pytest
from fastapi.testclient import TestClient

from alerts.supervise import Supervisor
from api.app import create_app
from api.auth import Role, create_key
from estate import registry
from estate.db import Conn
from simulators.scenarios import Scenario
from tests.support.data import T0
from tests.support.pipeline import play

pytestmark = pytest.mark.integration
NOW = T0 + dt.timedelta(seconds=120)

KEYS: dict[str, tuple[Role, dict[str, str]]] = {
    "admin": (Role.ADMIN, {}),
    "housing": (Role.HOUSING_AUTHORITY, {}),
    "operator HX": (Role.OPERATOR, {"org_code": "PF-HX"}),
    "manager HX": (Role.MANAGER, {"org_code": "PF-HX"}),
    "operator AJ": (Role.OPERATOR, {"org_code": "PF-AJ"}),
    "lifts TS": (Role.MAINTENANCE, {"org_code": "EM-TS"}),
    "lifts XY": (Role.MAINTENANCE, {"org_code": "EM-XY"}),
    "market county": (Role.MARKET_INSPECTOR, {"area_code": "SFX"}),
    "fire county": (Role.FIRE_INSPECTOR, {"area_code": "SFX"}),
    "street CG": (Role.STREET_OFFICE, {"area_code": "SFX-CG-CGJD"}),
    "street BH": (Role.STREET_OFFICE, {"area_code": "SFX-CG-BHJD"}),
    "owner": (Role.OWNER, {}),
}


@pytest.fixture
def county(conn: Conn) -> Conn:
    """The demo county with one trapped-passenger order on HXY/B1-L1 (EM-TS, PF-HX)."""
    registry.load(conn, registry.read(registry.demo_path()))
    sup = Supervisor()
    s = Scenario.model_validate(
        {
            "name": "t", "title": "t", "estate": "HXY", "devices": ["B1-L1"], "duration_s": 60,
            "steps": [{"at_s": 20, "device": "B1-L1", "action": "trap"}],
        }
    )  # fmt: skip

    def tick(now: dt.datetime) -> None:
        sup.round(conn, now)

    play(conn, s, on_tick=tick)
    return conn


@pytest.fixture
def client(database_url: str, county: Conn) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, clock=lambda: NOW)) as c:
        yield c


@pytest.fixture
def keys(county: Conn) -> dict[str, dict[str, str]]:
    out = {}
    for who, (role, bound) in KEYS.items():
        key = create_key(county, who.replace(" ", "-"), role, **bound)
        out[who] = {"Authorization": f"Bearer {key}"}
    return out


def the_order(conn: Conn) -> int:
    row = conn.execute("SELECT id FROM work_orders").fetchone()
    assert row is not None
    return int(row[0])


# before any escalation: the firm, the maintenance company, admin and housing see it
SEES_NOW = {"admin", "housing", "operator HX", "manager HX", "lifts TS"}


@pytest.mark.parametrize("who", list(KEYS))
def test_who_sees_the_order_before_and_after_escalation(
    client: TestClient, county: Conn, keys: dict[str, dict[str, str]], who: str
) -> None:
    order = the_order(county)
    h = keys[who]
    listed = client.get("/api/v1/work-orders", headers=h)
    assert listed.status_code == 200, listed.text
    seen = order in [o["id"] for o in listed.json()["items"]]
    one = client.get(f"/api/v1/work-orders/{order}", headers=h)
    assert seen == (who in SEES_NOW)
    assert one.status_code == (200 if who in SEES_NOW else 404)
    # nobody acknowledges: three breaches walk the chain firm → street office → market
    sup = Supervisor()
    for minutes in (6, 31, 121):
        sup.round(county, T0 + dt.timedelta(minutes=minutes))
    chain_now = SEES_NOW | {"market county", "street CG"}
    listed = client.get("/api/v1/work-orders", headers=h).json()["items"]
    assert (order in [o["id"] for o in listed]) == (who in chain_now)


def test_detail_has_events_breaches_and_the_delivery_log(
    client: TestClient, county: Conn, keys: dict[str, dict[str, str]]
) -> None:
    order = the_order(county)
    Supervisor().round(county, T0 + dt.timedelta(minutes=6))
    d = client.get(f"/api/v1/work-orders/{order}", headers=keys["manager HX"]).json()
    assert [e["change"] for e in d["events"]] == ["created", "dispatched", "breach"]
    assert d["breaches"][0]["deadline"] == "acknowledge"
    assert d["breaches"][0]["escalated_to"] == "PF-HX"
    assert {(x["org_code"], x["event"], x["state"]) for x in d["deliveries"]} == {
        ("EM-TS", "workorder.dispatched", "pending"),
        ("PF-HX", "workorder.informed", "pending"),  # the lift's user, told at once
        ("PF-HX", "workorder.escalated", "pending"),
        ("EM-TS", "workorder.breach", "pending"),
    }


def test_steps_only_by_those_allowed(
    client: TestClient, county: Conn, keys: dict[str, dict[str, str]]
) -> None:
    order = the_order(county)
    url = f"/api/v1/work-orders/{order}"
    assert client.post(f"{url}/acknowledge", headers=keys["lifts XY"]).status_code == 404
    assert client.post(f"{url}/acknowledge", headers=keys["operator AJ"]).status_code == 404
    assert client.post(f"{url}/acknowledge", headers=keys["housing"]).status_code == 403
    assert client.post(f"{url}/cancel", headers=keys["lifts TS"]).status_code == 403
    r = client.post(f"{url}/acknowledge", headers=keys["lifts TS"])
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "acknowledged"
    again = client.post(f"{url}/acknowledge", headers=keys["lifts TS"])
    assert again.status_code == 409
    assert "is acknowledged: cannot acknowledge it" in again.json()["detail"]
    assert client.post(f"{url}/arrive", headers=keys["operator HX"]).json()["state"] == "on_site"
    no_reason = client.post(f"{url}/cancel", headers=keys["manager HX"], json={})
    assert no_reason.status_code == 409
    assert "needs a reason" in no_reason.json()["detail"]
    # a trapped passenger's order is not cancelled while the alarm is open: it is resolved
    r = client.post(f"{url}/cancel", headers=keys["manager HX"], json={"note": "duplicate"})
    assert r.status_code == 409
    assert "open life-safety alert" in r.json()["detail"]
    r = client.post(f"{url}/resolve", headers=keys["manager HX"])
    assert r.json()["state"] in ("resolved", "verifying"), r.text
    actors = [
        a for (a,) in county.execute(
            "SELECT actor FROM work_order_events WHERE order_id = %s ORDER BY id", (order,)
        )
    ]  # fmt: skip
    assert actors == [
        "dispatch", "dispatch", "key:lifts-TS", "key:operator-HX", "key:manager-HX",
        "supervise",  # the look-back starts once the resolved alarm has closed
    ]  # fmt: skip


def test_the_list_is_edited_with_versions_and_history(
    client: TestClient, county: Conn, keys: dict[str, dict[str, str]]
) -> None:
    cur = client.get("/api/v1/responsibility", headers=keys["owner"]).json()
    assert cur["version"] == 0
    body = {"based_on": 0, "comment": "1 h on site outside the districts", "list": cur["list"]}
    body["list"]["rows"][0]["deadlines"]["arrive_s"] = 3600
    denied = client.put("/api/v1/responsibility", json=body, headers=keys["operator HX"])
    assert denied.status_code == 403
    r = client.put("/api/v1/responsibility", json=body, headers=keys["housing"])
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    assert r.json()["author"] == "key:housing"
    stale = client.put("/api/v1/responsibility", json=body, headers=keys["admin"])
    assert stale.status_code == 409
    assert "at version 1, not 0" in stale.json()["detail"]
    bad = {**body, "based_on": 1}
    bad["list"] = {"version": 1, "rows": [{"kind": "elevator", "responsible": "x"}]}
    invalid = client.put("/api/v1/responsibility", json=bad, headers=keys["admin"])
    assert invalid.status_code == 422
    assert "dispatching row needs responsible, deadlines and escalation" in invalid.text
    history = client.get("/api/v1/responsibility/versions", headers=keys["admin"]).json()
    assert [v["version"] for v in history] == [1]
    assert history[0]["list"]["rows"][0]["deadlines"]["arrive_s"] == 3600


def test_gaps_and_overdue_items_in_scope(
    client: TestClient, county: Conn, keys: dict[str, dict[str, str]]
) -> None:
    Supervisor().overdue(county, dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    for who, expect in {
        "market county": 1, "lifts TS": 1, "lifts XY": 0, "operator HX": 1, "operator AJ": 0,
        "fire county": 0, "owner": 0,
    }.items():  # fmt: skip
        r = client.get("/api/v1/supervision/items", headers=keys[who])
        assert r.status_code == 200
        assert len(r.json()["items"]) == expect, who
    assert client.get("/api/v1/dispatch/gaps", headers=keys["lifts TS"]).status_code == 403
    assert client.get("/api/v1/dispatch/gaps", headers=keys["admin"]).json()["items"] == []


def test_ledger_exports_in_scope(
    client: TestClient, county: Conn, keys: dict[str, dict[str, str]]
) -> None:
    q = {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
    market = client.get("/api/v1/ledger", params=q, headers=keys["market county"]).json()
    assert [(x["device"], x["unit"]) for x in market] == [("B1-L1", "EM-TS")]
    assert client.get("/api/v1/ledger", params=q, headers=keys["fire county"]).json() == []
    assert client.get("/api/v1/ledger", params=q, headers=keys["owner"]).status_code == 403
    csv = client.get("/api/v1/ledger", params={**q, "format": "csv"}, headers=keys["admin"])
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.content.decode("utf-8-sig").splitlines()[1].split(",")[3] == "B1-L1"
    xlsx = client.get("/api/v1/ledger", params={**q, "format": "xlsx"}, headers=keys["admin"])
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    rows = list(book["orders"].iter_rows(values_only=True))
    assert rows[1][3] == "B1-L1"
    backwards = client.get(
        "/api/v1/ledger", params={"start": q["end"], "end": q["start"]}, headers=keys["admin"]
    )
    assert backwards.status_code == 422
    assert backwards.json()["type"].endswith("bad-period")
