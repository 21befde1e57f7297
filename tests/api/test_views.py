"""The console's lists and statistics against the real database: devices page by page
with search and filters, drainage events in rain, faults per lift, a fund account's journal."""

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
from fund import cases as fund_cases
from ingest import contract, rollup
from ingest.batch import Incoming, decode_batch
from ingest.contract import Bounds
from ingest.worker import Directory
from ingest.writer import Writer

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)  # 20:30 in Shanghai
WET = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)  # the one wet hour, in E1 only
REGISTRY = """
version: 1
areas:
  - {code: C, name: city, level: city}
  - {code: D1, name: d1, level: district, parent: C}
organisations:
  - {code: PF1, name: 一号物业, roles: [property_firm]}
  - {code: PF2, name: 二号物业, roles: [property_firm]}
  - {code: EM, name: 安达电梯, roles: [elevator_maintenance]}
estates:
  - {code: E1, name: 东苑, area: D1, property_firm: PF1, buildings: [
      {code: B1, name: 1号楼, floors: 5, devices: [
        {code: L1, kind: elevator, subtype: passenger, maintenance: EM, location: 1单元},
        {code: L2, kind: elevator, subtype: passenger, maintenance: EM, location: 2单元},
        {code: SP1, kind: drainage, subtype: sump_pit, location: 地下车库集水坑},
        {code: SP2, kind: drainage, subtype: sump_pit, location: 电梯井集水坑},
        {code: IM_1, kind: drainage, subtype: immersion, location: 配电房}]}]}
  - {code: E2, name: 西苑, area: D1, property_firm: PF2, owners_committee: true, buildings: [
      {code: B1, name: 1号楼, floors: 5, devices: [
        {code: SP1, kind: drainage, subtype: sump_pit, location: 地下车库集水坑},
        {code: IMX1, kind: drainage, subtype: immersion, location: 水泵房}]}]}
"""


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, autocommit=True) as c:
        registry.load(c, registry.parse(REGISTRY))
        yield c


@pytest.fixture
def client(database_url: str, conn: Conn) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, clock=lambda: NOW)) as c:
        yield c


def key(conn: Conn, role: Role, **bound: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(conn, role.value, role, **bound)}"}


def raise_alert(conn: Conn, estate: str, code: str, alert: str, at: dt.datetime) -> None:
    devs = {(d.estate, d.code): d for d in store.devices(conn)}
    op = Op("raise", (devs[(estate, code)].id, alert), alert, Severity.MAJOR, at.timestamp())
    store.apply(conn, [op], {d.id: d for d in devs.values()})


def pit_readings(conn: Conn, estate: str, code: str, wet_hours: set[dt.datetime]) -> None:
    """A reading every 2 min from 05:00 to 12:00 UTC through the real decode/write path;
    in a wet hour the pump runs 4 readings of 5, otherwise it never runs."""
    directory = Directory()
    directory.load(conn)
    start = dt.datetime(2026, 11, 20, 5, 0, tzinfo=dt.UTC)
    msgs = []
    for i in range(7 * 30):
        ts = start + dt.timedelta(minutes=2 * i)
        hour = ts.replace(minute=0)
        running = hour in wet_hours and i % 5 != 0
        body = contract.telemetry(
            ts, i, {"level_m": 0.9 if running else 0.4, "pump_running": running,
                    "pump_fault": False})  # fmt: skip
        topic = f"estate/v1/{estate}/drainage/{code}/telemetry"
        msgs.append(Incoming(topic, contract.dumps(body), 0, 1, 0, ts))
    Writer(conn).write(decode_batch(msgs, directory.lookup, bounds=Bounds()))


def test_devices_page_by_page_with_search_and_filters(client: TestClient, conn: Conn) -> None:
    admin = key(conn, Role.ADMIN)
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        url = "/api/v1/devices?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=admin).json()
        seen += [d["id"] for d in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7
    assert seen == sorted(set(seen))  # each once, in registry order

    def codes(query: str, h: dict[str, str] = admin) -> set[tuple[str, str]]:
        r = client.get(f"/api/v1/devices?{query}", headers=h)
        assert r.status_code == 200, r.text
        return {(d["estate_code"], d["code"]) for d in r.json()["items"]}

    assert codes("estate=E2") == {("E2", "SP1"), ("E2", "IMX1")}
    assert codes("kind=elevator") == {("E1", "L1"), ("E1", "L2")}
    assert codes("q=集水坑") == {("E1", "SP1"), ("E1", "SP2"), ("E2", "SP1")}  # the place
    assert codes("q=安达") == {("E1", "L1"), ("E1", "L2")}  # the company's name
    assert codes("q=西苑&kind=drainage") == {("E2", "SP1"), ("E2", "IMX1")}
    # LIKE's wildcards are literal: "IM_" finds IM_1, not IMX1
    assert codes("q=IM_") == {("E1", "IM_1")}
    assert codes("q=%25") == set()
    pit_readings(conn, "E1", "SP1", set())
    assert ("E1", "SP1") not in codes("health=never")
    assert ("E1", "SP2") in codes("health=never")  # never heard from
    raise_alert(conn, "E1", "L2", "elevator.door_open_running", NOW)
    assert codes("health=alerts") == {("E1", "L2")}
    # a property firm sees its own estate's devices, nothing of the other
    firm = key(conn, Role.OPERATOR, org_code="PF2")
    assert codes("", firm) == {("E2", "SP1"), ("E2", "IMX1")}
    assert codes("estate=E1", firm) == set()
    r = client.get("/api/v1/devices?kind=gas", headers=admin)
    assert r.status_code == 422


def test_drainage_events_in_rain_per_day_and_estate(client: TestClient, conn: Conn) -> None:
    pit_readings(conn, "E1", "SP1", {WET})
    pit_readings(conn, "E1", "SP2", set())
    pit_readings(conn, "E2", "SP1", set())
    rollup.roll_up(conn, NOW)
    raise_alert(conn, "E1", "SP1", "drainage.level_high", WET + dt.timedelta(minutes=20))
    # the hour after the wet one still counts: the storm's water is still coming in
    raise_alert(conn, "E1", "SP2", "drainage.pump_fault", WET + dt.timedelta(minutes=100))
    raise_alert(conn, "E1", "IM_1", "drainage.water_detected", WET - dt.timedelta(hours=3))
    # E2 was dry at the same hour: its alert is not "in rain"
    raise_alert(conn, "E2", "SP1", "drainage.level_high", WET + dt.timedelta(minutes=30))
    raise_alert(conn, "E1", "L1", "elevator.trapped", WET)  # not drainage

    r = client.get("/api/v1/views/drainage?days=7", headers=key(conn, Role.HOUSING_AUTHORITY))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["wet_duty"] == 0.2
    per_estate = {e["estate_code"]: e for e in body["estates"]}
    e1, e2 = per_estate["E1"], per_estate["E2"]
    assert (e1["events"], e1["events_in_rain"], e1["wet_hours"]) == (3, 2, 1)
    assert (e2["events"], e2["events_in_rain"], e2["wet_hours"]) == (1, 0, 0)
    assert e1["by_type"] == {
        "drainage.level_high": 1, "drainage.pump_fault": 1, "drainage.water_detected": 1
    }  # fmt: skip
    assert (e1["estate_name"], e1["sump_pits"], e1["peak_level_m"]) == ("东苑", 2, 0.9)
    assert [e["estate_code"] for e in body["estates"]] == ["E1", "E2"]  # most in rain first
    # every hour here is on 20 November in Shanghai (13:00-20:00)
    (day,) = body["days"]
    assert day["day"] == "2026-11-20"
    assert (day["events"], day["events_in_rain"], day["wet_hours"]) == (4, 2, 1)
    # 3 pits x 7 hours x 30 readings, of which one pit's wet hour ran 24
    assert day["pump_duty"] == pytest.approx(24 / 630, abs=0.001)
    # a stricter threshold: no hour is wet, nothing was in rain
    strict = client.get(
        "/api/v1/views/drainage?days=7&wet_duty=0.9", headers=key(conn, Role.ADMIN)
    ).json()
    assert {e["estate_code"]: e["events_in_rain"] for e in strict["estates"]} == {
        "E1": 0, "E2": 0
    }  # fmt: skip
    # the other firm's control room sees its own estate only
    firm = client.get("/api/v1/views/drainage", headers=key(conn, Role.OPERATOR, org_code="PF2"))
    assert [e["estate_code"] for e in firm.json()["estates"]] == ["E2"]


def test_faults_per_lift_in_the_elevator_view(client: TestClient, conn: Conn) -> None:
    for minutes, alert in ((0, "elevator.trapped"), (5, "elevator.door_open_running"),
                           (9, "elevator.overspeed")):  # fmt: skip
        raise_alert(conn, "E1", "L2", alert, WET + dt.timedelta(minutes=minutes))
    raise_alert(conn, "E1", "L1", "elevator.overspeed", WET)
    old = NOW - dt.timedelta(days=40)
    raise_alert(conn, "E1", "L1", "elevator.trapped", old)  # before the period
    body = client.get("/api/v1/views/elevators?days=30", headers=key(conn, Role.ADMIN)).json()
    lifts = [(x["device_code"], x["alerts"], x["trapped"]) for x in body["lifts"]]
    assert lifts == [("L2", 3, 1), ("L1", 1, 0)]
    top = body["lifts"][0]
    assert (top["estate_name"], top["device_location"], top["maintenance_name"]) == (
        "东苑", "2单元", "安达电梯"
    )  # fmt: skip


def test_a_fund_accounts_journal_with_balances_page_by_page(client: TestClient, conn: Conn) -> None:
    fund_cases.open_accounts(conn, NOW - dt.timedelta(days=30))
    mine = fund_cases.account_of(conn, "E1", "B1")
    other = fund_cases.account_of(conn, "E2", "B1")
    days = (10, 5, 1)
    for n, ago in enumerate(days):
        fund_cases.deposit(conn, mine, 100 * (n + 1), kind="deposit" if n < 2 else "interest",
                           key=f"j{n}", actor="t", now=NOW - dt.timedelta(days=ago))  # fmt: skip
    fund_cases.deposit(conn, other, 999, kind="deposit", key="o", actor="t", now=NOW)
    h = key(conn, Role.HOUSING_AUTHORITY)
    lines: list[dict[str, Any]] = []
    cursor = None
    for _ in range(5):
        url = f"/api/v1/fund/accounts/{mine}/journal?limit=2" + (
            f"&cursor={cursor}" if cursor else ""
        )
        r = client.get(url, headers=h)
        assert r.status_code == 200, r.text
        lines += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    # newest first, each with the balance after it; the other account's entry is not here
    assert [(x["kind"], x["amount_fen"], x["balance_fen"]) for x in lines] == [
        ("interest", 300, 600), ("deposit", 200, 300), ("deposit", 100, 100)
    ]  # fmt: skip
    assert [x["counterparty"] for x in lines] == [
        "external:bank", "external:owners", "external:owners"
    ]  # fmt: skip
    assert all(len(x["hash"]) == 64 for x in lines)
    # the days are Shanghai days: from 6 days ago, before yesterday
    since = (NOW - dt.timedelta(days=6)).astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    until = (NOW - dt.timedelta(days=1)).astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    r = client.get(f"/api/v1/fund/accounts/{mine}/journal?since={since}&until={until}", headers=h)
    assert [x["amount_fen"] for x in r.json()["items"]] == [200]
    # the other estate's committee may not read it; a stranger's account is not there
    committee = key(conn, Role.OWNERS_COMMITTEE, estate_code="E2")
    assert client.get(f"/api/v1/fund/accounts/{mine}/journal", headers=committee).status_code == 404
    assert (
        client.get(f"/api/v1/fund/accounts/{other}/journal", headers=committee).status_code == 200
    )
    owner = key(conn, Role.OWNER)
    assert client.get(f"/api/v1/fund/accounts/{mine}/journal", headers=owner).status_code == 403
