"""Rectification notices through the API: issued, rectified, rejected, closed, looked back
at, reopened; who may do what; overdue; and the problem ledger across estates."""

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

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
KEYS: dict[str, tuple[Role, dict[str, str]]] = {
    "fire": (Role.FIRE_INSPECTOR, {"area_code": "SFX"}),
    "fire BH": (Role.FIRE_INSPECTOR, {"area_code": "SFX-CG-BHJD"}),
    "market": (Role.MARKET_INSPECTOR, {"area_code": "SFX"}),
    "op HX": (Role.OPERATOR, {"org_code": "PF-HX"}),
    "op AJ": (Role.OPERATOR, {"org_code": "PF-AJ"}),
    "lifts TS": (Role.MAINTENANCE, {"org_code": "EM-TS"}),
    "lifts XY": (Role.MAINTENANCE, {"org_code": "EM-XY"}),
    "street CG": (Role.STREET_OFFICE, {"area_code": "SFX-CG-CGJD"}),
    "admin": (Role.ADMIN, {}),
    "owner": (Role.OWNER, {}),
}


class Clock:
    now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(conn: Conn) -> dict[str, dict[str, str]]:
    registry.load(conn, registry.read(registry.demo_path()))
    return {
        who: {"Authorization": f"Bearer {create_key(conn, who.replace(' ', '-'), r, **b)}"}
        for who, (r, b) in KEYS.items()
    }


@pytest.fixture
def client(
    database_url: str, keys: dict[str, dict[str, str]], clock: Clock
) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, clock=clock)) as c:
        yield c


FIRE_DOOR = {
    "estate": "HXY",
    "device": "B1-FD",
    "problem": "地下室防火门常开 / basement fire door held open",
    "basis": "GB 25201",
    "deadline": "2026-11-27",
}


def test_a_notice_from_issue_to_look_back(
    client: TestClient, keys: dict[str, dict[str, str]], clock: Clock
) -> None:
    r = client.post("/api/v1/notices", json=FIRE_DOOR, headers=keys["fire"])
    assert r.status_code == 201, r.text
    n = r.json()
    assert n["number"] == "消-SFX-2026-0001"
    assert (n["state"], n["authority"], n["overdue"]) == ("issued", "fire", False)
    url = f"/api/v1/notices/{n['id']}"
    # who sees it: the issuer's authority, the estate's firm, its street office, admin
    for who, sees in {
        "fire": True, "market": False, "op HX": True, "op AJ": False, "lifts TS": False,
        "street CG": True, "admin": True, "owner": False, "fire BH": False,
    }.items():  # fmt: skip
        assert (client.get(url, headers=keys[who]).status_code == 200) == sees, who
    assert client.post(f"{url}/rectify", headers=keys["fire"]).status_code == 403
    empty = client.post(f"{url}/rectify", json={"note": " "}, headers=keys["op HX"])
    assert empty.status_code == 409
    assert "needs a note" in empty.json()["detail"]
    done = {"note": "闭门器已更换 / door closer replaced"}
    r = client.post(f"{url}/rectify", json=done, headers=keys["op HX"])
    assert r.json()["state"] == "rectified"
    assert client.post(f"{url}/close", headers=keys["market"]).status_code == 404  # not theirs
    assert client.post(f"{url}/close", headers=keys["op HX"]).status_code == 403
    back = client.post(f"{url}/reject", json={"note": "still open at 18:00"}, headers=keys["fire"])
    assert back.json()["state"] == "issued"
    client.post(f"{url}/rectify", json=done, headers=keys["op HX"])
    closed = client.post(f"{url}/close", headers=keys["fire"]).json()
    assert closed["state"] == "closed"
    assert closed["look_back_on"] == "2026-12-20"
    clock.now = dt.datetime(2026, 12, 20, 10, 0, tzinfo=dt.UTC)
    no_date = client.post(f"{url}/relapsed", json={"note": "open again"}, headers=keys["fire"])
    assert no_date.status_code == 409
    again = client.post(
        f"{url}/relapsed",
        json={"note": "held open again", "new_deadline": "2026-12-23"},
        headers=keys["fire"],
    ).json()
    assert (again["state"], again["reopen_count"], again["deadline"]) == (
        "reopened",
        1,
        "2026-12-23",
    )
    clock.now = dt.datetime(2026, 12, 24, 10, 0, tzinfo=dt.UTC)
    overdue = client.get("/api/v1/notices?overdue=true", headers=keys["fire"]).json()["items"]
    assert [x["id"] for x in overdue] == [n["id"]]
    client.post(f"{url}/rectify", json=done, headers=keys["op HX"])
    client.post(f"{url}/close", headers=keys["fire"])
    assert client.post(f"{url}/holds", headers=keys["fire"]).json()["state"] == "closed"
    twice = client.post(f"{url}/holds", headers=keys["fire"])
    assert twice.status_code == 409
    changes = [e["change"] for e in client.get(url, headers=keys["admin"]).json()["events"]]
    assert changes == [
        "issued", "rectified", "rejected", "rectified", "closed", "relapsed", "rectified",
        "closed", "holds",
    ]  # fmt: skip


def test_who_may_issue_and_to_whom(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    assert client.post("/api/v1/notices", json=FIRE_DOOR, headers=keys["op HX"]).status_code == 403
    outside = client.post("/api/v1/notices", json=FIRE_DOOR, headers=keys["fire BH"])
    assert outside.status_code == 404  # HXY is not in 滨河街道
    past = client.post("/api/v1/notices", json={**FIRE_DOOR, "deadline": "2026-11-01"},
                       headers=keys["fire"])  # fmt: skip
    assert past.status_code == 422
    assert "already past" in past.json()["detail"]
    lift = {
        "estate": "HXY", "device": "B3-L2", "recipient_org": "EM-TS", "deadline": "2026-11-25",
        "problem": "半月维保超期 / half-monthly maintenance overdue", "basis": "TSG T5002",
    }  # fmt: skip
    n = client.post("/api/v1/notices", json=lift, headers=keys["market"]).json()
    assert n["number"] == "特-SFX-2026-0001"
    url = f"/api/v1/notices/{n['id']}"
    assert client.get(url, headers=keys["lifts XY"]).status_code == 404
    assert client.get(url, headers=keys["fire"]).status_code == 404  # another authority's
    r = client.post(f"{url}/rectify", json={"note": "maintained 21 Nov"}, headers=keys["lifts TS"])
    assert r.json()["state"] == "rectified"


def test_the_problem_ledger_across_estates(
    client: TestClient, keys: dict[str, dict[str, str]], conn: Conn
) -> None:
    client.post("/api/v1/notices", json=FIRE_DOOR, headers=keys["fire"])
    Supervisor().overdue(conn, T0)  # the demo's B3-L2 is overdue for maintenance
    q = {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    admin = client.get("/api/v1/problems", params=q, headers=keys["admin"]).json()
    assert sorted((x["source"], x["device_code"]) for x in admin) == [
        ("notice", "B1-FD"), ("overdue", "B3-L2"),
    ]  # fmt: skip
    market = client.get("/api/v1/problems", params=q, headers=keys["market"]).json()
    assert [(x["source"], x["device_code"]) for x in market] == [("overdue", "B3-L2")]
    fire = client.get("/api/v1/problems", params=q, headers=keys["fire"]).json()
    assert [(x["source"], x["device_code"]) for x in fire] == [("notice", "B1-FD")]
    assert client.get("/api/v1/problems", params=q, headers=keys["op AJ"]).json() == []
    assert client.get("/api/v1/problems", params=q, headers=keys["owner"]).status_code == 403
    x = client.get("/api/v1/problems", params={**q, "format": "xlsx"}, headers=keys["admin"])
    rows = list(
        openpyxl.load_workbook(io.BytesIO(x.content))["problems"].iter_rows(values_only=True)
    )
    assert rows[0][0] == "source"
    assert len(rows) == 3
    csv_text = client.get(
        "/api/v1/problems", params={**q, "format": "csv"}, headers=keys["admin"]
    ).content.decode("utf-8-sig")
    assert "地下室防火门常开" in csv_text
