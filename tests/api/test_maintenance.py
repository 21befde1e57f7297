"""Lift maintenance and inspection records through the API: the checklist per lift type,
a visit recorded from the phone, every refusal, inspections, photos, append-only records,
and overdue items that follow from the records (the registry's dates only the start)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.supervise import Supervisor
from api.app import create_app
from api.auth import Role
from estate import registry
from estate.db import Conn
from oversight import maintenance
from tests.support.api import demo_keys

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
KEYS: dict[str, tuple[Role, dict[str, str]]] = {
    "lifts TS": (Role.MAINTENANCE, {"org_code": "EM-TS"}),
    "lifts XY": (Role.MAINTENANCE, {"org_code": "EM-XY"}),
    "op HX": (Role.OPERATOR, {"org_code": "PF-HX"}),
    "op AJ": (Role.OPERATOR, {"org_code": "PF-AJ"}),
    "market": (Role.MARKET_INSPECTOR, {"area_code": "SFX"}),
    "market BH": (Role.MARKET_INSPECTOR, {"area_code": "SFX-CG-BHJD"}),
    "fire": (Role.FIRE_INSPECTOR, {"area_code": "SFX"}),
    "admin": (Role.ADMIN, {}),
}
LIFT = "/api/v1/devices/HXY/B3-L2"  # 通顺 (EM-TS) maintains it; registry: 2026-10-20


@pytest.fixture
def keys(conn: Conn) -> dict[str, dict[str, str]]:
    return demo_keys(conn, KEYS)


@pytest.fixture
def client(database_url: str, keys: dict[str, dict[str, str]]) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, clock=lambda: NOW)) as c:
        yield c


def visit(**change: object) -> dict[str, object]:
    items = {i.code: "ok" for i in maintenance.checklist_for("elevator", "passenger").items}
    body: dict[str, object] = {
        "technician": "张师傅", "technician_cert": "T1-2019-0001",
        "started_at": "2026-12-04T08:40:00+08:00", "ended_at": "2026-12-04T09:35:00+08:00",
        "items": items, "findings": "",
    }  # fmt: skip
    body.update(change)
    return body


def overdue(conn: Conn, now: dt.datetime) -> set[tuple[str, str]]:
    Supervisor().overdue(conn, now)
    return {
        (str(d), str(i))
        for d, i in conn.execute(
            "SELECT device_code, item FROM supervision_items WHERE closed_at IS NULL"
        )
    }


def test_a_visit_recorded_on_the_phone_moves_the_due_date(
    client: TestClient, keys: dict[str, dict[str, str]], conn: Conn
) -> None:
    cl = client.get(f"{LIFT}/maintenance/checklist", headers=keys["lifts TS"]).json()
    assert (cl["id"], len(cl["items"]), cl["interval_days"]) == (
        "tsg_t5002_a_half_monthly", 31, 15,
    )  # fmt: skip
    assert cl["items"][0]["zh"].startswith("机房")
    assert ("B3-L2", "maintenance_overdue") in overdue(conn, NOW)  # the registry: 20 Oct
    r = client.post(f"{LIFT}/maintenance", json=visit(), headers=keys["lifts TS"])
    assert r.status_code == 201, r.text
    v = r.json()
    assert (v["maintenance_code"], v["technician"], v["checklist"]) == (
        "EM-TS", "张师傅", "tsg_t5002_a_half_monthly",
    )  # fmt: skip
    records = client.get(f"{LIFT}/maintenance", headers=keys["op HX"]).json()
    assert records["last_maintenance"] == "2026-12-04"
    assert records["maintenance_due"] == "2026-12-19"
    assert [x["id"] for x in records["visits"]] == [v["id"]]
    # the overdue item closes on the next round; the device shows the recorded date
    assert ("B3-L2", "maintenance_overdue") not in overdue(conn, NOW)
    device = client.get(LIFT, headers=keys["op HX"]).json()
    assert device["last_maintenance"] == "2026-12-04"
    # 16 days later it is due again
    later = NOW + dt.timedelta(days=16)
    assert ("B3-L2", "maintenance_overdue") in overdue(conn, later)
    # a photo of the visit, seen by whoever sees the lift
    png = b"\x89PNG\r\n\x1a\n" + b"\x01" * 32
    url = f"{LIFT}/maintenance/{v['id']}/photos"
    photo = client.post(url, params={"filename": "轿顶.png"}, content=png,
                        headers=keys["lifts TS"])  # fmt: skip
    assert photo.status_code == 201, photo.text
    got = client.get(f"{url}/{photo.json()['id']}", headers=keys["market"])
    assert got.content == png
    assert client.post(url, params={"filename": "x.png"}, content=png,
                       headers=keys["lifts XY"]).status_code in (403, 404)  # fmt: skip
    # records are append-only, in the database itself
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("UPDATE maintenance_records SET technician = 'x'")


@pytest.mark.parametrize(
    ("who", "change", "status", "says"),
    [
        ("lifts XY", {}, 404, "no device"),  # another company's lift: not even visible
        ("op HX", {}, 403, "may not do this"),
        ("lifts TS", {"items": {"A01": "ok"}}, 422, "missing: A02"),
        ("lifts TS", {"items": {"Z99": "ok"}}, 422, "not on tsg_t5002_a_half_monthly: Z99"),
        ("lifts TS", {"findings": "", "items": "fault"}, 422, "describe them in the findings"),
        ("lifts TS", {"ended_at": "2026-12-04T08:00:00+08:00"}, 422, "ends after it starts"),
        ("lifts TS", {"started_at": "2026-12-04T10:00:00+08:00",
                      "ended_at": "2026-12-04T11:00:00+08:00"}, 422, "in the future"),
        ("lifts TS", {"started_at": "2026-12-03T08:00:00+08:00"}, 422, "at most 12 hours"),
        ("lifts TS", {"technician": ""}, 422, "technician"),
        ("lifts TS", {"items": {"A01": "perfect"}}, 422, "items"),
    ],
)  # fmt: skip
def test_a_visit_is_refused_with_the_reason(
    client: TestClient, keys: dict[str, dict[str, str]], who: str, change: dict[str, object],
    *, status: int, says: str,
) -> None:  # fmt: skip
    if change.get("items") == "fault":
        items = dict(visit()["items"])  # type: ignore[call-overload]
        items["A23"] = "fault"
        change = {**change, "items": items}
    r = client.post(f"{LIFT}/maintenance", json=visit(**change), headers=keys[who])
    assert r.status_code == status, r.text
    assert says in r.json()["detail"]


def test_inspections_are_recorded_by_market_supervision(
    client: TestClient, keys: dict[str, dict[str, str]], conn: Conn
) -> None:
    conn.execute("UPDATE devices SET inspection_due = '2026-11-30' WHERE code = 'B3-L2'")
    assert ("B3-L2", "inspection_overdue") in overdue(conn, NOW)
    body = {"inspected_on": "2026-12-03", "result": "pass", "next_due": "2027-12-02",
            "report_no": "SFX-DT-2026-1203", "certificate_no": "TSG-SFX-2026-88",
            "inspector": "示范县特种设备检验所"}  # fmt: skip
    for who, status in (("lifts TS", 403), ("op HX", 403), ("fire", 403), ("market BH", 404)):
        assert client.post(f"{LIFT}/inspections", json=body, headers=keys[who]).status_code == (
            status
        ), who
    failed = client.post(f"{LIFT}/inspections", json={**body, "result": "fail"},
                         headers=keys["market"])  # fmt: skip
    assert (failed.status_code, "says what failed" in failed.json()["detail"]) == (422, True)
    no_mark = client.post(f"{LIFT}/inspections", json={**body, "certificate_no": None},
                          headers=keys["market"])  # fmt: skip
    assert (no_mark.status_code, "inspection mark" in no_mark.json()["detail"]) == (422, True)
    early = client.post(f"{LIFT}/inspections", json={**body, "next_due": "2026-12-01"},
                        headers=keys["market"])  # fmt: skip
    assert early.status_code == 422
    r = client.post(f"{LIFT}/inspections", json=body, headers=keys["market"])
    assert r.status_code == 201, r.text
    records = client.get(f"{LIFT}/maintenance", headers=keys["lifts TS"]).json()
    assert records["inspection_due"] == "2027-12-02"
    assert [(x["report_no"], x["certificate_no"]) for x in records["inspections"]] == [
        ("SFX-DT-2026-1203", "TSG-SFX-2026-88")
    ]
    assert ("B3-L2", "inspection_overdue") not in overdue(conn, NOW)
    # who sees the records: who sees the lift
    for who, sees in (("op HX", True), ("op AJ", False), ("fire", False), ("market", True)):
        got = client.get(f"{LIFT}/maintenance", headers=keys[who]).status_code
        assert (got == 200) == sees, who
    fire = client.get("/api/v1/devices/HXY/B1-HP/maintenance/checklist", headers=keys["admin"])
    assert (fire.status_code, fire.json()["type"].rsplit("/", 1)[1]) == (422, "no-checklist")


def test_the_demo_history_leaves_only_a_few_lifts_overdue(conn: Conn) -> None:
    registry.load(conn, registry.read(registry.demo_path()))
    lifts = conn.execute("SELECT count(*) FROM devices WHERE kind = 'elevator'").fetchone()
    assert lifts == (17,)
    assert len({d for d, i in overdue(conn, NOW) if i == "maintenance_overdue"}) > 10
    assert maintenance.seed_demo(conn, NOW) == 17
    assert maintenance.seed_demo(conn, NOW) == 0  # once
    late = {d for d, i in overdue(conn, NOW) if i == "maintenance_overdue"}
    assert len(late) == 2


def test_the_registry_carries_96333_codes_and_registration_numbers(conn: Conn) -> None:
    reg = registry.read(registry.demo_path())
    registry.load(conn, reg)
    codes = conn.execute(
        "SELECT count(DISTINCT emergency_code), count(registration_no) FROM devices"
        " WHERE kind = 'elevator'"
    ).fetchone()
    assert codes == (17, 17)
    text = registry.demo_path().read_text(encoding="utf-8").replace("'31002'", "'31001'")
    with pytest.raises(registry.RegistryError, match="emergency code '31001' is used 2 times"):
        registry.parse(text, source="demo.yaml")
    fire = (
        registry.demo_path()
        .read_text(encoding="utf-8")
        .replace("code: FP, subtype", "code: FP, emergency_code: '99999', subtype", 1)
    )
    with pytest.raises(registry.RegistryError, match="are for lifts"):
        registry.parse(fire, source="demo.yaml")
