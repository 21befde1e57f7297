"""Rectification notices through the API: issued, rectified, rejected, closed, looked back
at, reopened; who may do what; overdue; and the problem ledger across estates."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from alerts.supervise import Supervisor
from api.app import create_app
from api.auth import Role
from estate.db import Conn
from oversight import notices
from tests.support.api import demo_keys

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
    "street BH": (Role.STREET_OFFICE, {"area_code": "SFX-CG-BHJD"}),
    "housing": (Role.HOUSING_AUTHORITY, {}),
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
    return demo_keys(conn, KEYS)


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


def told(conn: Conn, event: str) -> list[tuple[str, Any]]:
    """(organisation, payload) of every MQTT notification of ``event``, oldest first."""
    return [
        (str(o), p)
        for o, p in conn.execute(
            "SELECT org_code, payload FROM notifications WHERE event = %s AND channel = 'mqtt'"
            " ORDER BY id",
            (event,),
        )
    ]


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_a_notice_from_issue_to_look_back(
    client: TestClient, keys: dict[str, dict[str, str]], clock: Clock, conn: Conn
) -> None:
    """The whole cycle with time passed in: two problems, each with its responsible person,
    measures and deadline; the recipient told and acknowledging; rectified with evidence;
    one sent back; an overdue one escalated (挂牌督办) with the next authorities told;
    closed one by one (动态销号); the look-back not before its date, reminded when due,
    and a relapse reopening the problem."""
    body = {
        "estate": "HXY",
        "problems": [
            {**{k: FIRE_DOOR[k] for k in ("device", "problem", "basis", "deadline")},
             "measures": "更换闭门器，恢复常闭 / replace the closer, keep it shut",
             "responsible_person": "王建国"},
            {"problem": "消防控制室值班记录不全 / control-room log incomplete",
             "basis": "GB 25201 §4.2", "measures": "补齐值班记录，双人值班",
             "responsible_person": "李秀英", "deadline": "2026-11-24"},
        ],
    }  # fmt: skip
    r = client.post("/api/v1/notices", json=body, headers=keys["fire"])
    assert r.status_code == 201, r.text
    n = r.json()
    assert n["number"] == "消-SFX-2026-0001"
    assert (n["state"], n["authority"], n["overdue"], n["deadline"]) == (
        "issued", "fire", False, "2026-11-24"
    )  # fmt: skip
    assert [(x["seq"], x["responsible_person"], x["category"]) for x in n["problems"]] == [
        (1, "王建国", "fire"), (2, "李秀英", "fire"),
    ]  # fmt: skip
    # the recipient (HXY's property firm) is told at once
    assert [(o, p["notice"]) for o, p in told(conn, "notice.issued")] == [
        ("PF-HX", "消-SFX-2026-0001")
    ]
    url = f"/api/v1/notices/{n['id']}"
    # who sees it: the issuer's authority, the estate's firm, its street office, the
    # housing authority, admin
    for who, sees in {
        "fire": True, "market": False, "op HX": True, "op AJ": False, "lifts TS": False,
        "street CG": True, "admin": True, "owner": False, "fire BH": False, "housing": True,
    }.items():  # fmt: skip
        assert (client.get(url, headers=keys[who]).status_code == 200) == sees, who
    assert client.post(f"{url}/acknowledge", headers=keys["fire"]).status_code == 403
    ack = client.post(f"{url}/acknowledge", headers=keys["op HX"])
    assert ack.json()["acknowledged_by"] == "key:op-HX"
    assert client.post(f"{url}/acknowledge", headers=keys["op HX"]).status_code == 409
    p1, p2 = f"{url}/problems/1", f"{url}/problems/2"
    assert client.post(f"{p1}/rectify", headers=keys["fire"]).status_code == 403
    empty = client.post(f"{p1}/rectify", json={"note": " "}, headers=keys["op HX"])
    assert empty.status_code == 409
    assert "needs a note" in empty.json()["detail"]
    done = {"note": "闭门器已更换 / door closer replaced"}
    photo = client.post(
        f"{url}/attachments", params={"filename": "门.png", "problem": 1, "stage": "rectify"},
        content=PNG, headers={**keys["op HX"], "Content-Type": "image/png"},
    )  # fmt: skip
    assert photo.status_code == 201, photo.text
    r = client.post(f"{p1}/rectify", json=done, headers=keys["op HX"]).json()
    assert [x["state"] for x in r["problems"]] == ["rectified", "issued"]
    assert r["state"] == "issued"  # not all of it yet
    assert [o for o, _ in told(conn, "notice.rectified")] == ["FB-SFX"]  # the issuer hears
    assert client.post(f"{p1}/close", headers=keys["market"]).status_code == 404  # not theirs
    assert client.post(f"{p1}/close", headers=keys["op HX"]).status_code == 403
    back = client.post(f"{p1}/reject", json={"note": "still open at 18:00"}, headers=keys["fire"])
    assert back.json()["problems"][0]["state"] == "issued"
    client.post(f"{p1}/rectify", json=done, headers=keys["op HX"])
    closed = client.post(f"{p1}/close", json={"look_back_days": 30}, headers=keys["fire"]).json()
    assert [x["state"] for x in closed["problems"]] == ["closed", "issued"]
    assert closed["problems"][0]["look_back_on"] == "2026-12-20"

    # problem 2 passes its deadline unrectified: 挂牌督办 once, the next authorities told
    clock.now = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
    assert notices.supervise(conn, clock.now) == (1, 0)
    assert notices.supervise(conn, clock.now) == (0, 0)  # once per deadline
    escalated = told(conn, "notice.supervised")
    assert sorted(o for o, _ in escalated) == ["HA-SFX", "PF-HX", "SO-CG"]
    sup = client.get(url, headers=keys["fire"]).json()
    assert (sup["overdue"], sup["supervised"]) == (True, True)
    assert sup["problems"][1]["supervised_to"] == ["SO-CG", "HA-SFX"]
    listed = client.get("/api/v1/notices?supervised=true", headers=keys["street CG"]).json()
    assert [x["id"] for x in listed["items"]] == [n["id"]]
    client.post(f"{p2}/rectify", json={"note": "已补齐，双人值班"}, headers=keys["op HX"])
    whole = client.post(f"{p2}/close", headers=keys["fire"]).json()
    assert (whole["state"], whole["supervised"]) == ("closed", False)

    # the look-back: not before its date; due lists and a reminder when it falls due
    early = client.post(f"{p1}/holds", headers=keys["fire"])
    assert early.status_code == 409
    assert "due on 2026-12-20" in early.json()["detail"]
    due = client.get("/api/v1/notices/look-backs", params={"due_by": "2026-12-31"},
                     headers=keys["fire"]).json()  # fmt: skip
    assert [(x["seq"], x["look_back_on"]) for x in due] == [(1, "2026-12-20"), (2, "2026-12-25")]
    clock.now = dt.datetime(2026, 12, 20, 10, 0, tzinfo=dt.UTC)
    assert notices.supervise(conn, clock.now) == (0, 1)
    assert [(o, p["problem"]) for o, p in told(conn, "notice.look_back_due")] == [("FB-SFX", 1)]
    no_date = client.post(f"{p1}/relapsed", json={"note": "open again"}, headers=keys["fire"])
    assert no_date.status_code == 409
    again = client.post(
        f"{p1}/relapsed",
        json={"note": "held open again", "new_deadline": "2026-12-23"},
        headers=keys["fire"],
    ).json()
    assert (again["state"], again["reopen_count"], again["deadline"]) == (
        "reopened", 1, "2026-12-23",
    )  # fmt: skip
    assert told(conn, "notice.relapsed")[0][0] == "PF-HX"
    clock.now = dt.datetime(2026, 12, 24, 10, 0, tzinfo=dt.UTC)
    overdue = client.get("/api/v1/notices?overdue=true", headers=keys["fire"]).json()["items"]
    assert [x["id"] for x in overdue] == [n["id"]]
    client.post(f"{p1}/rectify", json=done, headers=keys["op HX"])
    client.post(f"{p1}/close", headers=keys["fire"])
    clock.now = dt.datetime(2027, 1, 23, 10, 0, tzinfo=dt.UTC)
    assert client.post(f"{p1}/holds", headers=keys["fire"]).json()["state"] == "closed"
    assert client.post(f"{p1}/holds", headers=keys["fire"]).status_code == 409
    assert client.post(f"{p2}/holds", headers=keys["fire"]).json()["look_back_result"] == "holds"
    detail = client.get(url, headers=keys["admin"]).json()
    assert [(e["problem"], e["change"]) for e in detail["events"]] == [
        (None, "issued"), (None, "acknowledged"), (1, "rectified"), (1, "rejected"),
        (1, "rectified"), (1, "closed"), (2, "supervised"), (2, "rectified"), (2, "closed"),
        (1, "relapsed"), (1, "rectified"), (1, "closed"), (1, "holds"), (2, "holds"),
    ]  # fmt: skip
    (f,) = detail["attachments"]
    assert (f["part"], f["content_type"], f["filename"]) == (
        "problem 1 rectify", "image/png", "门.png",
    )  # fmt: skip
    got = client.get(f"{url}/attachments/{f['id']}", headers=keys["street CG"])
    assert (got.content, got.headers["content-type"]) == (PNG, "image/png")
    assert client.get(f"{url}/attachments/{f['id']}", headers=keys["op AJ"]).status_code == 404


def test_evidence_files_are_checked(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    n = client.post("/api/v1/notices", json=FIRE_DOOR, headers=keys["fire"]).json()
    url = f"/api/v1/notices/{n['id']}/attachments"
    h = {**keys["op HX"], "Content-Type": "image/png"}
    fake = client.post(url, params={"filename": "x.png"}, content=b"<html>", headers=h)
    assert fake.status_code == 422
    assert "not a JPEG, PNG or PDF" in fake.json()["detail"]
    big = client.post(url, params={"filename": "x.png"}, content=PNG + b"0" * (5 << 20), headers=h)
    assert big.status_code == 413
    issuer_only = client.post(url, params={"filename": "x.png", "stage": "verify"}, content=PNG,
                              headers=h)  # fmt: skip
    assert issuer_only.status_code == 403
    nosuch = client.post(url, params={"filename": "x.png", "problem": 9}, content=PNG, headers=h)
    assert nosuch.status_code == 404
    first = client.post(url, params={"filename": "../../etc/a.png"}, content=PNG, headers=h)
    again = client.post(url, params={"filename": "b.png"}, content=PNG, headers=h)
    assert first.json()["id"] == again.json()["id"]  # the same file once
    assert first.json()["filename"] == "a.png"


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


WATER_PROBLEM = {
    "problem": "二次供水水箱未加锁 / tank hatch unlocked", "device": "WT1",
    "measures": "加锁并张贴责任人", "responsible_person": "赵强", "deadline": "2026-11-30",
}  # fmt: skip


def test_every_authority_issues_in_its_area(
    client: TestClient, keys: dict[str, dict[str, str]], conn: Conn
) -> None:
    water = {"estate": "HXY", "problems": [WATER_PROBLEM]}
    r = client.post("/api/v1/notices", json=water, headers=keys["housing"])
    assert r.status_code == 201, r.text
    assert r.json()["number"] == "建-SFX-2026-0001"  # numbered in the estate's county
    assert r.json()["problems"][0]["category"] == "water_supply"
    street = client.post("/api/v1/notices", json=water, headers=keys["street CG"])
    assert street.status_code == 201
    assert street.json()["number"] == "街-SFX-CG-CGJD-2026-0001"
    # a fire inspector may not name a water-supply device; a market inspector no fire one
    fire = client.post("/api/v1/notices", json=water, headers=keys["fire"])
    assert (fire.status_code, fire.json()["type"].rsplit("/", 1)[1]) == (422, "outside-domain")
    # the street office acts for an estate without a property firm: it cannot be its own
    # recipient, so the housing authority issues there
    cgxc = {"estate": "CGXC", "problem": "楼道堆物", "deadline": "2026-11-30"}
    own = client.post("/api/v1/notices", json=cgxc, headers=keys["street BH"])
    assert (own.status_code, own.json()["type"].rsplit("/", 1)[1]) == (422, "own-estate")
    n = client.post("/api/v1/notices", json=cgxc, headers=keys["housing"]).json()
    assert told(conn, "notice.issued")[-1][0] == "SO-BH"  # the street office is told
    url = f"/api/v1/notices/{n['id']}"
    assert client.post(f"{url}/acknowledge", headers=keys["op HX"]).status_code == 404
    assert (
        client.post(f"{url}/rectify", json={"note": "已清理"}, headers=keys["street BH"]).json()[
            "state"
        ]
        == "rectified"
    )
    not_issuer = client.post(f"{url}/close", headers=keys["street BH"])
    assert not_issuer.status_code == 403
    assert client.post(f"{url}/close", headers=keys["housing"]).json()["state"] == "closed"
    # inputs: both forms at once, none, a past deadline, an unknown device
    both = client.post("/api/v1/notices", json={**water, "problem": "x", "deadline": "2026-11-30"},
                       headers=keys["housing"])  # fmt: skip
    assert both.status_code == 422
    missing = {"estate": "HXY", "problems": [{"problem": "x", "deadline": "2026-11-30"}]}
    r = client.post("/api/v1/notices", json=missing, headers=keys["housing"])
    assert r.status_code == 422
    assert {e["where"].rsplit(".", 1)[1] for e in r.json()["errors"]} == {
        "measures",
        "responsible_person",
    }
    first = dict(WATER_PROBLEM)
    ghost = {"estate": "HXY", "problems": [{**first, "device": "NOPE"}]}
    r = client.post("/api/v1/notices", json=ghost, headers=keys["housing"])
    assert (r.status_code, "no device NOPE" in r.json()["detail"]) == (422, True)
    past = {"estate": "HXY", "problems": [{**first, "deadline": "2026-11-01"}]}
    r = client.post("/api/v1/notices", json=past, headers=keys["housing"])
    assert (r.status_code, "already past" in r.json()["detail"]) == (422, True)
    epoch = client.post("/api/v1/notices", json={**FIRE_DOOR, "deadline": 0}, headers=keys["fire"])
    assert epoch.status_code == 422  # a date is written YYYY-MM-DD


def test_the_problem_ledger_across_estates(
    client: TestClient, keys: dict[str, dict[str, str]], conn: Conn, clock: Clock
) -> None:
    """Every problem open at any time in the period, whenever it was opened; its state per
    day (动态销号); filters; counts per estate; the workbook in Chinese."""
    old = client.post("/api/v1/notices", json=FIRE_DOOR, headers=keys["fire"]).json()
    Supervisor().overdue(conn, T0)  # the demo's B3-L2 is overdue for maintenance
    clock.now = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC)
    water = {"estate": "JXY", "problem": "水箱溢流", "device": "WT1", "deadline": "2026-12-09"}
    assert client.post("/api/v1/notices", json=water, headers=keys["housing"]).status_code == 201
    q = {"start": "2026-12-01T00:00:00+08:00", "end": "2026-12-04T00:00:00+08:00"}
    admin = client.get("/api/v1/problems", params=q, headers=keys["admin"]).json()
    # the fire-door notice of 20 November is still open in December: it is in the ledger
    assert sorted((x["source"], x["device_code"]) for x in admin) == [
        ("notice", "B1-FD"), ("notice", "WT1"), ("overdue", "B3-L2"),
    ]  # fmt: skip
    fd = next(x for x in admin if x["device_code"] == "B1-FD")
    assert fd["ref"] == f"{old['number']}#1"
    assert fd["days"] == {"2026-12-01": "open", "2026-12-02": "open", "2026-12-03": "open"}
    wt = next(x for x in admin if x["device_code"] == "WT1")
    assert wt["days"] == {"2026-12-01": "", "2026-12-02": "open", "2026-12-03": "open"}
    assert [h["change"] for h in wt["history"]] == ["issued"]
    # closed on 3 December (local): open on the 2nd, closed from the 3rd
    clock.now = dt.datetime(2026, 12, 3, 1, 0, tzinfo=dt.UTC)
    url = f"/api/v1/notices/{old['id']}"
    client.post(f"{url}/rectify", json={"note": "已更换"}, headers=keys["op HX"])
    client.post(f"{url}/close", headers=keys["fire"])
    fd = next(
        x for x in client.get("/api/v1/problems", params=q, headers=keys["admin"]).json()
        if x["device_code"] == "B1-FD"
    )  # fmt: skip
    assert fd["days"] == {"2026-12-01": "open", "2026-12-02": "open", "2026-12-03": "closed"}
    # a later period no longer holds it
    later = {"start": "2026-12-05T00:00:00+08:00", "end": "2026-12-06T00:00:00+08:00"}
    assert "B1-FD" not in {
        x["device_code"] for x in client.get("/api/v1/problems", params=later,
                                              headers=keys["admin"]).json()
    }  # fmt: skip

    # filters
    def refs(**f: str) -> list[str | None]:
        got = client.get("/api/v1/problems", params={**q, **f}, headers=keys["admin"]).json()
        return sorted(x["device_code"] for x in got)

    assert refs(authority="housing") == ["WT1"]
    assert refs(type="elevator") == ["B3-L2"]
    assert refs(estate="HXY") == ["B1-FD", "B3-L2"]
    assert refs(area="SFX-CG-BHJD") == []
    assert refs(state="closed") == ["B1-FD"]
    assert refs(state="open") == ["B3-L2", "WT1"]
    # scopes
    market = client.get("/api/v1/problems", params=q, headers=keys["market"]).json()
    assert [(x["source"], x["device_code"]) for x in market] == [("overdue", "B3-L2")]
    fire = client.get("/api/v1/problems", params=q, headers=keys["fire"]).json()
    assert [(x["source"], x["device_code"]) for x in fire] == [("notice", "B1-FD")]
    assert (
        client.get("/api/v1/problems", params=q, headers=keys["op AJ"]).json()[0]["device_code"]
        == "WT1"
    )  # the notice to its estate
    assert client.get("/api/v1/problems", params=q, headers=keys["owner"]).status_code == 403
    # counts per estate, most open first
    ranking = client.get("/api/v1/problems/by-estate", params=q, headers=keys["admin"]).json()
    assert [(x["estate_code"], x["open"], x["closed"]) for x in ranking] == [
        ("HXY", 1, 1), ("JXY", 1, 0),
    ]  # fmt: skip
    # the workbook, in Chinese
    x = client.get("/api/v1/problems", params={**q, "format": "xlsx"}, headers=keys["admin"])
    wb = openpyxl.load_workbook(io.BytesIO(x.content))
    assert wb.sheetnames == ["问题台账", "每日状态", "各小区统计"]
    rows = list(wb["问题台账"].iter_rows(values_only=True))
    assert rows[0][:4] == ("来源", "编号", "主管部门", "类型")
    assert len(rows) == 4
    assert {r[0] for r in rows[1:]} == {"整改通知", "维保/检验逾期"}
    assert any("电梯维保逾期" in str(r[8]) for r in rows[1:])
    daily = list(wb["每日状态"].iter_rows(values_only=True))
    assert daily[0] == ("编号", "小区", "2026-12-01", "2026-12-02", "2026-12-03")
    assert daily[-1] == ("未销号合计", None, 2, 3, 2)
    csv_text = client.get(
        "/api/v1/problems", params={**q, "format": "csv"}, headers=keys["admin"]
    ).content.decode("utf-8-sig")
    assert csv_text.startswith("来源,编号")
    assert "地下室防火门常开" in csv_text
    bad = client.get("/api/v1/problems", params={"start": q["end"], "end": q["start"]},
                     headers=keys["admin"])  # fmt: skip
    assert bad.status_code == 422
