"""/api/v1/alerts and /incidents: each role sees its own, verdicts on fire alarms."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts import store
from alerts.judge import Op
from alerts.rules import Severity
from api.app import create_app
from api.auth import Role, create_key
from estate import registry
from estate.db import Conn

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
REGISTRY = """
version: 1
areas:
  - {code: C, name: city, level: city}
  - {code: D1, name: d1, level: district, parent: C}
  - {code: D2, name: d2, level: district, parent: C}
organisations:
  - {code: PF1, name: firm one, roles: [property_firm]}
  - {code: PF2, name: firm two, roles: [property_firm]}
  - {code: EM1, name: lifts one, roles: [elevator_maintenance]}
  - {code: EM2, name: lifts two, roles: [elevator_maintenance]}
estates:
  - {code: E1, name: one, area: D1, property_firm: PF1, buildings: [
      {code: B1, name: b, floors: 5, devices: [
        {code: L1, kind: elevator, subtype: passenger, maintenance: EM1},
        {code: SD1, kind: fire, subtype: smoke_detector}]}]}
  - {code: E2, name: two, area: D2, property_firm: PF2, buildings: [
      {code: B1, name: b, floors: 5, devices: [
        {code: L1, kind: elevator, subtype: passenger, maintenance: EM2}]}]}
"""


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, autocommit=True) as c:
        registry.load(c, registry.parse(REGISTRY))
        devs = {(d.estate, d.code): d for d in store.devices(c)}
        by_id = {d.id: d for d in devs.values()}
        t = NOW.timestamp()

        def op(estate: str, code: str, rule: str, alert: str, **kw: Any) -> Op:
            return Op("raise", (devs[(estate, code)].id, rule), alert, Severity.CRITICAL, t, **kw)

        store.apply(
            c,
            [
                op("E1", "L1", "elevator.overspeed", "elevator.overspeed"),
                op("E1", "SD1", "fire.alarm", "fire.alarm", confirmation="to_be_confirmed"),
                op("E2", "L1", "elevator.overspeed", "elevator.overspeed"),
            ],
            by_id,
        )
        yield c


@pytest.fixture
def client(database_url: str, conn: Conn) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, clock=lambda: NOW)) as c:
        yield c


KEYS: dict[str, tuple[Role, dict[str, str]]] = {
    "admin": (Role.ADMIN, {}),
    "operator E1": (Role.OPERATOR, {"org_code": "PF1"}),
    "manager E2": (Role.MANAGER, {"org_code": "PF2"}),
    "lifts EM1": (Role.MAINTENANCE, {"org_code": "EM1"}),
    "fire D1": (Role.FIRE_INSPECTOR, {"area_code": "D1"}),
    "market C": (Role.MARKET_INSPECTOR, {"area_code": "C"}),
    "street D2": (Role.STREET_OFFICE, {"area_code": "D2"}),
    "housing": (Role.HOUSING_AUTHORITY, {}),
    "owner": (Role.OWNER, {}),
}
SEES = {  # (estate, device) of the alerts each key sees
    "admin": {("E1", "L1"), ("E1", "SD1"), ("E2", "L1")},
    "operator E1": {("E1", "L1"), ("E1", "SD1")},
    "manager E2": {("E2", "L1")},
    "lifts EM1": {("E1", "L1")},
    "fire D1": {("E1", "SD1")},
    "market C": {("E1", "L1"), ("E2", "L1")},
    "street D2": {("E2", "L1")},
    "housing": {("E1", "L1"), ("E1", "SD1"), ("E2", "L1")},
    "owner": set(),
}


@pytest.mark.parametrize("who", list(KEYS))
def test_each_role_sees_its_own_alerts_and_incidents(
    client: TestClient, conn: Conn, who: str
) -> None:
    role, bound = KEYS[who]
    key = create_key(conn, who.replace(" ", "-"), role, **bound)
    h = {"Authorization": f"Bearer {key}"}
    r = client.get("/api/v1/alerts", headers=h)
    assert r.status_code == 200, r.text
    seen = {(a["estate_code"], a["device_code"]) for a in r.json()["items"]}
    assert seen == SEES[who]
    incidents = client.get("/api/v1/incidents", headers=h).json()["items"]
    assert {(i["estate_code"], i["category"]) for i in incidents} == {
        (e, "fire" if d.startswith("SD") else "elevator") for e, d in SEES[who]
    }
    all_ids = [a[0] for a in conn.execute("SELECT id, estate_code, device_code FROM alerts")]
    for alert_id in all_ids:
        got = client.get(f"/api/v1/alerts/{alert_id}", headers=h)
        assert got.status_code in (200, 404)
    visible = sum(client.get(f"/api/v1/alerts/{i}", headers=h).status_code == 200 for i in all_ids)
    assert visible == len(SEES[who])


def test_fire_alarm_verdicts(client: TestClient, conn: Conn) -> None:
    fire_id = conn.execute("SELECT id FROM alerts WHERE alert_type = 'fire.alarm'").fetchone()
    lift_id = conn.execute(
        "SELECT id FROM alerts WHERE alert_type = 'elevator.overspeed' AND estate_code = 'E1'"
    ).fetchone()
    assert fire_id is not None
    assert lift_id is not None
    op1 = {"Authorization": f"Bearer {create_key(conn, 'op1', Role.OPERATOR, org_code='PF1')}"}
    op2 = {"Authorization": f"Bearer {create_key(conn, 'op2', Role.OPERATOR, org_code='PF2')}"}
    fire = {"Authorization": f"Bearer {create_key(conn, 'fi', Role.FIRE_INSPECTOR, area_code='C')}"}
    url = f"/api/v1/alerts/{fire_id[0]}"
    assert client.post(f"{url}/confirm", headers=op2).status_code == 404  # not theirs
    assert client.post(f"{url}/confirm", headers=fire).status_code == 403  # inspectors read
    r = client.post(f"/api/v1/alerts/{lift_id[0]}/confirm", headers=op1)
    assert r.status_code == 409
    assert "is not a fire alarm" in r.json()["detail"]
    bad = client.post(f"{url}/false-alarm", json={"cause": ""}, headers=op1)
    assert bad.status_code == 422
    assert (
        client.post(f"{url}/false-alarm", json={"cause": "steam"}, headers=op1).status_code == 204
    )
    detail = client.get(url, headers=op1).json()
    assert (detail["confirmation"], detail["false_alarm_cause"], detail["state"]) == (
        "false_alarm",
        "steam",
        "cleared",
    )
    assert detail["changes"][-1]["actor"] == "key:op1"
    assert (
        client.get("/api/v1/alerts?state=open", headers=op1).json()["items"][0]["id"] != fire_id[0]
    )
