"""The fund through the API: a repair case from an elevator's work order to the public
disclosure, each step by the role that owns it; idempotent settlement."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts import dispatch
from api.app import create_app
from api.auth import ApiKeyError, Role, create_key, create_user
from estate.db import Conn
from fund import cases
from oversight import attachments
from tests.support.data import county_world, verified

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=3)
KEYS: dict[str, tuple[Role, dict[str, str]]] = {
    "op": (Role.OPERATOR, {"org_code": "PF-HX"}),
    "street": (Role.STREET_OFFICE, {"area_code": "SFX-CG-CGJD"}),
    "housing": (Role.HOUSING_AUTHORITY, {}),
    "lifts": (Role.MAINTENANCE, {"org_code": "EM-TS"}),
    "committee": (Role.OWNERS_COMMITTEE, {"estate_code": "HXY"}),  # HXY's 业委会
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
    client: TestClient, world: tuple[dict[str, int], dict[str, dict[str, str]]], conn: Conn
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
    # the owners of HXY voted no standing authorisation: their committee applies (task 17)
    r = client.post(f"{url}/approve", json={"by": "standing"}, headers=k["op"])
    assert r.status_code == 409
    assert "have not voted a standing authorisation" in r.json()["detail"]
    assert client.post(f"{url}/approve", json={"by": "authority"},
                       headers=k["op"]).status_code == 403  # fmt: skip
    r = client.post(f"{url}/approve", json={"by": "authority"}, headers=k["street"])
    assert r.status_code == 409  # HXY has a committee: the street office does not act for it
    assert "HXY has an owners' committee" in r.json()["detail"]
    r = client.post(f"{url}/approve", json={"by": "authority"}, headers=k["committee"])
    assert r.json()["approval"] == "owners_committee:HXY", r.text
    assert r.json()["approved_by"] == "owners_committee:HXY"
    # paid for a repair the work order shows done, and accepted by another party
    early = client.post(f"{url}/repaired", json={"note": "brake replaced"}, headers=k["op"])
    assert (early.status_code, "once it is resolved" in early.json()["detail"]) == (409, True)
    order = f"/api/v1/work-orders/{ids['lift_order']}"
    assert client.post(f"{order}/resolve", headers=k["lifts"]).status_code == 200
    client.post(f"{url}/repaired", json={"note": "brake replaced"}, headers=k["op"])
    unaccepted = client.post(f"{url}/settle", json={"cost_fen": 76_543, "invoice_ref": "INV-7"},
                             headers={**k["housing"], "Idempotency-Key": "early"})  # fmt: skip
    assert unaccepted.status_code == 409
    assert (
        client.post(f"{url}/accept", json={"note": "验收合格"}, headers=k["op"]).status_code == 403
    )
    # accepted once the look-back (回头看) has verified the repair and closed the order
    r = client.post(f"{url}/accept", json={"note": "验收合格"}, headers=k["committee"])
    assert (r.status_code, "look-back" in r.json()["detail"]) == (409, True), r.text
    verified(conn, ids["lift_order"], NOW)
    r = client.post(f"{url}/accept", json={"note": "验收合格"}, headers=k["street"])
    assert (r.status_code, "HXY has an owners' committee" in r.json()["detail"]) == (409, True)
    r = client.post(f"{url}/accept", json={"note": "验收合格"}, headers=k["committee"])
    assert (r.json()["state"], r.json()["accepted_by"]) == ("accepted", "owners_committee:HXY")
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
    assert shown["approval"] == "owners_committee"  # the kind of party, not a login name
    assert "owners_committee:" not in public.text
    assert "key:" not in public.text
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
        "opened", "estimated", "standing_refused", "approved", "repaired", "accepted", "settled",
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


OWNER_PASSWORD = "correct horse battery staple 9"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)


def test_the_fund_process_per_role(
    client: TestClient, world: tuple[dict[str, int], dict[str, dict[str, str]]], conn: Conn
) -> None:
    """Votes, manual cases with photos, the street office only where there is no property
    firm, nobody approving its own estimate, acceptance and review by the right parties,
    and the per-home accounts."""
    ids, k = world
    # the owners' vote is recorded by who witnessed it, and judged here
    votes = "/api/v1/fund/estates/HXY/votes"
    vote = {"held_on": "2026-11-21", "valid_until": "2029-11-20",
            "participating_area_m2": "999999", "participating_owners": 10,
            "consenting_area_m2": "1", "consenting_owners": 1}  # fmt: skip
    assert client.post(votes, json=vote, headers=k["op"]).status_code == 403
    too_many = client.post(votes, json=vote, headers=k["street"])
    assert too_many.status_code == 422
    assert "consenting ≤ taking part ≤ all" in too_many.json()["detail"]
    (area, homes), *_ = conn.execute(
        "SELECT sum(u.area_m2), count(*) FROM units u JOIN buildings b ON b.id = u.building_id"
        " WHERE b.estate_code = 'HXY'"
    ).fetchall()
    two_thirds = (area * 2 / 3).quantize(Decimal("0.01"))
    ok = {**vote, "participating_area_m2": str(area), "participating_owners": homes,
          "consenting_area_m2": str(two_thirds), "consenting_owners": homes * 2 // 3}  # fmt: skip
    r = client.post(votes, json=ok, headers=k["street"])
    assert (r.status_code, r.json()["passed"], r.json()["rule"]) == (201, True, "civil_code")
    assert [v["passed"] for v in client.get(votes, headers=k["op"]).json()] == [True]

    # a roof leak no sensor reports: opened by hand, photographed, then estimated
    cases_url = "/api/v1/fund/cases"
    leak = {"item": "roof_leak", "estate": "HXY", "building": "B1",
            "description": "26 层屋面渗漏，2601、2602 室顶棚滴水"}  # fmt: skip
    assert client.post(cases_url, json=leak, headers=k["street"]).status_code == 403  # a firm
    r = client.post(cases_url, json=leak, headers=k["op"])
    assert r.status_code == 201, r.text
    case = r.json()["id"]
    url = f"{cases_url}/{case}"
    no_photo = client.post(f"{url}/estimate", json={"estimate_fen": 40_000}, headers=k["op"])
    assert (no_photo.status_code, "needs 2 photos" in no_photo.json()["detail"]) == (409, True)
    for name, data in (("屋面1.png", PNG), ("屋面2.png", PNG + b"2")):
        got = client.post(f"{url}/photos", params={"filename": name}, content=data,
                          headers=k["op"])  # fmt: skip
        assert got.status_code == 201, got.text
    assert client.post(f"{url}/estimate", json={"estimate_fen": 40_000},
                       headers=k["op"]).json()["estimated_by"] == "operator:PF-HX"  # fmt: skip
    # voted and within its caps: the standing authorisation covers it
    r = client.post(f"{url}/approve", json={"by": "standing"}, headers=k["op"])
    assert r.status_code == 200, r.text
    assert r.json()["approval"] == "standing"
    client.post(f"{url}/repaired", json={"note": "防水层重做"}, headers=k["op"])
    assert client.post(f"{url}/accept", json={}, headers=k["op"]).status_code == 403
    assert client.post(f"{url}/accept", json={"note": "验收合格"},
                       headers=k["committee"]).json()["state"] == "accepted"  # fmt: skip

    def settle(cost: int, key: str) -> Any:
        return client.post(f"{url}/settle", json={"cost_fen": cost, "invoice_ref": "R-1"},
                           headers={**k["housing"], "Idempotency-Key": key})  # fmt: skip

    over = settle(60_000, "r1")  # 50 % over the estimate
    assert (over.status_code, "cost review" in over.json()["detail"]) == (409, True)
    r = client.post(f"{url}/review", json={"reviewed_fen": 60_000, "note": "增加天沟修补"},
                    headers=k["housing"])  # fmt: skip
    assert r.json()["reviewed_by"] == "housing_authority:housing"
    # reviewed, but the standing authorisation's cap holds on the amount paid: 5 % of the
    # 1,000,000 fen fund is 50,000
    capped = settle(60_000, "r2")
    assert (capped.status_code, "would pass 5% of the fund" in capped.json()["detail"]) == (
        409, True,
    )  # fmt: skip
    client.post(f"{url}/review", json={"reviewed_fen": 48_000, "note": "按定额审减"},
                headers=k["housing"])  # fmt: skip
    paid = settle(48_000, "r3")
    assert paid.json()["state"] == "settled", paid.text

    # the street office works cases where there is no property firm, and cannot approve
    # what it estimated itself
    out = "/api/v1/fund/cases"
    fence = {"item": "facade_falling", "estate": "CGXC", "building": "B1",
             "description": "3 层外墙瓷砖空鼓，有脱落危险"}  # fmt: skip
    street_bh = {"Authorization": k["street"]["Authorization"]}
    assert client.post(out, json=fence, headers=street_bh).status_code == 404  # not its area

    # per-home accounts: every home of building 1, summing to the account
    homes = client.get(f"/api/v1/fund/accounts/{ids['account']}/homes", headers=k["housing"])
    assert homes.status_code == 200
    (balance,) = conn.execute(
        "SELECT balance_fen FROM fund_accounts WHERE id = %s", (ids["account"],)
    ).fetchone() or (0,)
    assert sum(h["balance_fen"] for h in homes.json()) == balance
    assert client.get(f"/api/v1/fund/accounts/{ids['account']}/homes",
                      headers=k["lifts"]).status_code == 403  # fmt: skip


def test_a_street_office_acting_for_owners_does_not_approve_its_own_estimate(
    database_url: str, conn: Conn
) -> None:
    county_world(conn, T0, NOW)
    bh = create_key(conn, "bh", Role.STREET_OFFICE, area_code="SFX-CG-BHJD")
    ha = create_key(conn, "ha", Role.HOUSING_AUTHORITY)
    hb, hh = {"Authorization": f"Bearer {bh}"}, {"Authorization": f"Bearer {ha}"}
    with TestClient(create_app(database_url, clock=lambda: NOW)) as client:
        body = {"item": "facade_falling", "estate": "CGXC", "building": "B1",
                "description": "3 层外墙瓷砖空鼓，有脱落危险"}  # fmt: skip
        r = client.post("/api/v1/fund/cases", json=body, headers=hb)
        assert r.status_code == 201, r.text
        url = f"/api/v1/fund/cases/{r.json()['id']}"
        for n in (1, 2):
            client.post(f"{url}/photos", params={"filename": f"{n}.png"},
                        content=PNG + bytes([n]), headers=hb)  # fmt: skip
        client.post(f"{url}/estimate", json={"estimate_fen": 30_000}, headers=hb)
        own = client.post(f"{url}/approve", json={"by": "authority"}, headers=hb)
        assert (own.status_code, "cannot approve it too" in own.json()["detail"]) == (409, True)
        r = client.post(f"{url}/approve", json={"by": "authority"}, headers=hh)
        assert r.json()["state"] == "approved", r.text


def test_owners_see_their_home_and_object_within_the_disclosure_period(
    database_url: str, conn: Conn
) -> None:
    """An owner's login names the home: its account (分户账) with every movement, the repairs
    it paid for; an objection during the 公示期, answered by the housing authority before
    the case closes; none after the period or from a home that paid nothing."""
    w = county_world(conn, T0, NOW)
    ha = {"Authorization": f"Bearer {create_key(conn, 'ha', Role.HOUSING_AUTHORITY)}"}
    for name, home in (("owner101", "HXY/B1/101"), ("owner-b2", "HXY/B2/101"), ("nohome", None)):
        create_user(conn, name, Role.OWNER, OWNER_PASSWORD, home=home)
    with pytest.raises(ApiKeyError, match="only an owner names a home"):
        create_user(conn, "op2", Role.OPERATOR, OWNER_PASSWORD,
                    org_code="PF-HX", home="HXY/B1/101")  # fmt: skip
    # a repair of building 1, paid and disclosed
    case = w.ids["fund_case"]
    cases.estimate(conn, case, 50_000, actor="op", now=NOW, party="operator:PF-HX")
    cases.approve(conn, case, by=cases.committee("HXY"), actor="co", now=NOW,
                  party=cases.committee("HXY"))  # fmt: skip
    order = w.ids["lift_order"]
    dispatch.act(conn, order, "resolve", actor="EM-TS", now=NOW)
    cases.repaired(conn, case, note="更换制动器", actor="op", now=NOW)
    verified(conn, order, NOW)
    cases.accept(conn, case, party=cases.committee("HXY"), note="ok", actor="co", now=NOW)
    cases.settle(conn, case, cost_fen=50_000, invoice_ref="INV-9", key="k9", actor="ha",
                 now=NOW, contractor="通顺电梯工程有限公司")  # fmt: skip
    clock = Clock(NOW + dt.timedelta(days=1))
    with TestClient(create_app(database_url, clock=clock)) as client:

        def login(name: str) -> dict[str, str]:
            form = {"username": name, "password": OWNER_PASSWORD}
            r = client.post("/api/v1/auth/token", data=form)
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        me = client.get("/api/v1/fund/my-home", headers=login("owner101"))
        assert me.status_code == 200, me.text
        body = me.json()
        assert (body["building"], body["unit"]) == ("B1", "101")
        (acc,) = [a for a in body["accounts"] if a["account_id"] == w.ids["account"]]
        kinds = [m["kind"] for m in acc["home"]["movements"]]
        assert kinds == ["deposit", "repair"]
        assert acc["home"]["balance_fen"] == sum(m["amount_fen"] for m in acc["home"]["movements"])
        (paid,) = body["repairs"]
        assert (paid["case_id"], paid["work"], paid["contractor"]) == (
            case, "更换制动器", "通顺电梯工程有限公司",
        )  # fmt: skip
        assert client.get("/api/v1/fund/my-home", headers=login("nohome")).status_code == 404
        assert client.get("/api/v1/fund/my-home", headers=ha).status_code == 403
        # objections: from a home that paid, within the period
        url = f"/api/v1/fund/cases/{case}/objections"
        b2 = client.post(url, json={"text": "?"}, headers=login("owner-b2"))
        assert (b2.status_code, "paid no share" in b2.json()["detail"]) == (409, True), b2.text
        o = client.post(url, json={"text": "维修金额偏高，请公开报价"}, headers=login("owner101"))
        assert o.status_code == 201, o.text
        # the period ends, but an objection is unanswered: the case stays open
        clock.now = NOW + dt.timedelta(days=8)
        assert cases.close_disclosed(conn, clock.now) == 0
        late = client.post(url, json={"text": "again"}, headers=login("owner101"))
        assert (late.status_code, "disclosure period" in late.json()["detail"]) == (409, True)
        ans = f"/api/v1/fund/objections/{o.json()['id']}/answer"
        assert client.post(ans, json={"text": "x"}, headers=login("owner101")).status_code == 403
        assert (
            client.post(ans, json={"text": "已复核报价单，金额合理"}, headers=ha).status_code == 200
        )
        assert client.post(ans, json={"text": "again"}, headers=ha).status_code == 409
        assert cases.close_disclosed(conn, clock.now) == 1
        detail = client.get(f"/api/v1/fund/cases/{case}", headers=ha).json()
        assert detail["state"] == "closed"
        assert detail["objections"][0]["answer"] == "已复核报价单，金额合理"


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_the_committee_applies_and_accepts_and_repair_first_is_chased(
    database_url: str, conn: Conn
) -> None:
    """An owners' committee (业委会) is bound to its estate and only exists where the
    registry records one; it records its owners' vote, applies for the fund and accepts.
    A repair-first case (先修后报) is repaired on the firm's declaration; its application is
    due within the city's days and, overdue, is on the housing authority's list."""
    w = county_world(conn, T0, NOW)
    with pytest.raises(ApiKeyError, match="CGXC has no owners' committee on record"):
        create_key(conn, "c-cgxc", Role.OWNERS_COMMITTEE, estate_code="CGXC")
    with pytest.raises(ApiKeyError, match="needs --estate"):
        create_key(conn, "c-none", Role.OWNERS_COMMITTEE)
    with pytest.raises(ApiKeyError, match="only an owners' committee is bound to an estate"):
        create_key(conn, "op-e", Role.OPERATOR, org_code="PF-HX", estate_code="HXY")
    keys = {
        who: {"Authorization": f"Bearer {create_key(conn, who, r, **b)}"}
        for who, (r, b) in KEYS.items()
    }
    bh = create_key(conn, "bh", Role.STREET_OFFICE, area_code="SFX-CG-BHJD")
    keys["bh"] = {"Authorization": f"Bearer {bh}"}
    clock = Clock(NOW)
    with TestClient(create_app(database_url, clock=clock)) as client:
        co = keys["committee"]
        me = client.get("/api/v1/auth/me", headers=co).json()
        assert (me["role"], me["estate_code"]) == ("owners_committee", "HXY")
        # its estate's fund, and nothing of the control room's
        seen = {c["estate_code"] for c in client.get("/api/v1/fund/cases", headers=co).json()
                ["items"]}  # fmt: skip
        assert seen == {"HXY"}
        assert client.get(f"/api/v1/fund/cases/{w.ids['fund_case_out']}",
                          headers=co).status_code == 404  # fmt: skip
        assert client.get("/api/v1/alerts?state=all", headers=co).json()["items"] == []
        vote = {"held_on": "2026-11-21", "valid_until": "2029-11-20",
                "participating_area_m2": "1", "participating_owners": 1,
                "consenting_area_m2": "1", "consenting_owners": 1}  # fmt: skip
        r = client.post("/api/v1/fund/estates/HXY/votes", json=vote, headers=co)
        assert (r.status_code, r.json()["passed"]) == (201, False), r.text
        assert client.post("/api/v1/fund/estates/CGXC/votes", json=vote,
                           headers=co).status_code == 404  # fmt: skip

        # 先修后报: declared and repaired at once; the application is due in 15 days
        body = {"item": "roof_leak", "estate": "HXY", "building": "B1", "repair_first": True,
                "description": "暴雨后 26 层屋面大面积渗漏，先行抢修"}  # fmt: skip
        r = client.post("/api/v1/fund/cases", json=body, headers=keys["op"])
        assert r.status_code == 201, r.text
        case = r.json()
        assert case["repair_first"]
        assert case["applied_at"] is None
        assert dt.datetime.fromisoformat(case["apply_by"]) == NOW + dt.timedelta(days=15)
        url = f"/api/v1/fund/cases/{case['id']}"
        r = client.post(f"{url}/repaired", json={"note": "临时封堵、防水层重做"},
                        headers=keys["op"])  # fmt: skip
        assert (r.json()["state"], r.json()["repaired_at"] is not None) == ("opened", True)
        again = client.post(f"{url}/repaired", json={"note": "x"}, headers=keys["op"])
        assert (again.status_code, "reported repaired already" in again.json()["detail"]) == (
            409, True,
        )  # fmt: skip
        overdue = "/api/v1/fund/applications/overdue"
        assert client.get(overdue, headers=keys["housing"]).json() == []  # not yet due
        clock.now = NOW + dt.timedelta(days=16)
        (late,) = client.get(overdue, headers=keys["housing"]).json()
        assert (late["case_id"], late["overdue_s"]) == (case["id"], 86400)
        assert [o["case_id"] for o in client.get(overdue, headers=keys["op"]).json()] == [
            case["id"]
        ]
        assert client.get(overdue, headers=keys["bh"]).json() == []  # another street's
        assert client.get(overdue, headers=keys["lifts"]).status_code == 403
        # the application: photos and the estimate; then it is no longer overdue
        for n in (1, 2):
            client.post(f"{url}/photos", params={"filename": f"{n}.png"},
                        content=PNG + bytes([n]), headers=keys["op"])  # fmt: skip
        r = client.post(f"{url}/estimate", json={"estimate_fen": 30_000}, headers=keys["op"])
        assert r.json()["applied_at"] is not None, r.text
        assert client.get(overdue, headers=keys["housing"]).json() == []
        # the committee applies for the fund: the case moves on to repaired at once
        r = client.post(f"{url}/approve", json={"by": "authority"}, headers=co)
        assert (r.json()["state"], r.json()["approval"]) == ("repaired", "owners_committee:HXY")
        r = client.post(f"{url}/accept", json={"note": "验收合格"}, headers=keys["housing"])
        assert (r.status_code, "HXY has an owners' committee" in r.json()["detail"]) == (409, True)
        r = client.post(f"{url}/accept", json={"note": "验收合格"}, headers=co)
        assert r.json()["state"] == "accepted", r.text

        # an estate without a committee: its street office works the case for the owners;
        # having estimated it, it does not accept it too: the housing authority does
        fence = {"item": "facade_falling", "estate": "CGXC", "building": "B1",
                 "description": "3 层外墙瓷砖空鼓，有脱落危险"}  # fmt: skip
        r = client.post("/api/v1/fund/cases", json=fence, headers=keys["bh"])
        url = f"/api/v1/fund/cases/{r.json()['id']}"
        for n in (1, 2):
            client.post(f"{url}/photos", params={"filename": f"{n}.png"},
                        content=PNG + bytes([n]), headers=keys["bh"])  # fmt: skip
        client.post(f"{url}/estimate", json={"estimate_fen": 20_000}, headers=keys["bh"])
        client.post(f"{url}/approve", json={"by": "authority"}, headers=keys["housing"])
        client.post(f"{url}/repaired", json={"note": "空鼓瓷砖铲除重贴"}, headers=keys["bh"])
        assert client.post(f"{url}/accept", json={"note": "ok"},
                           headers=co).status_code == 404  # fmt: skip
        r = client.post(f"{url}/accept", json={"note": "验收合格"}, headers=keys["bh"])
        assert (r.status_code, "cannot accept it too" in r.json()["detail"]) == (409, True)
        r = client.post(f"{url}/accept", json={"note": "验收合格"}, headers=keys["housing"])
        assert r.json()["accepted_by"] == "housing_authority:housing", r.text


def test_an_owner_gets_the_yearly_report_of_their_home(database_url: str, conn: Conn) -> None:
    """The yearly report per home (task 18): opening, deposits, interest, repairs and
    closing of the owner's home in each account, in Asia/Shanghai years."""
    w = county_world(conn, T0, NOW)
    create_user(conn, "owner101", Role.OWNER, OWNER_PASSWORD, home="HXY/B1/101")
    account = w.ids["account"]
    # interest credited at 2027-01-01 00:30 in Shanghai: 2026 in UTC, 2027 for the owners
    new_year = dt.datetime(2026, 12, 31, 16, 30, tzinfo=dt.UTC)
    cases.deposit(conn, account, 10_000, kind="interest", key="i-2027", actor="bank",
                  now=new_year)  # fmt: skip
    with TestClient(create_app(database_url, clock=lambda: new_year)) as client:
        form = {"username": "owner101", "password": OWNER_PASSWORD}
        token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
        h = {"Authorization": f"Bearer {token}"}

        def year(y: int | None) -> dict[str, Any]:
            r = client.get("/api/v1/fund/my-home", params={} if y is None else {"year": y},
                           headers=h)  # fmt: skip
            assert r.status_code == 200, r.text
            (acc,) = [a for a in r.json()["accounts"] if a["account_id"] == account]
            return dict(acc["year"])

        y26, y27 = year(2026), year(None)  # this year, in Shanghai, is 2027
        assert y27["year"] == 2027
        assert (y26["deposits_fen"] > 0, y26["interest_fen"]) == (True, 0)
        assert y27["opening_fen"] == y26["closing_fen"]
        assert 0 < y27["interest_fen"] <= 10_000
        assert y27["closing_fen"] == y27["opening_fen"] + y27["interest_fen"]
        bad = client.get("/api/v1/fund/my-home", params={"year": 1999}, headers=h)
        assert bad.status_code == 422


def test_an_overdue_repair_first_application_is_in_the_problem_ledger(
    database_url: str, conn: Conn
) -> None:
    """先修后报 whose application is late: a problem of the housing authority's ledger
    (问题台账), open from its deadline until the application is filed; not the fire
    inspector's."""
    county_world(conn, T0, NOW)
    keys = {
        who: {"Authorization": f"Bearer {create_key(conn, who, r, **b)}"}
        for who, (r, b) in {**KEYS, "fire": (Role.FIRE_INSPECTOR, {"area_code": "SFX"})}.items()
    }
    case = cases.open_manual(
        conn, item="roof_leak", estate="HXY", building="B1", repair_first=True,
        description="屋面渗漏，先行抢修", actor="op", now=NOW,
    )  # fmt: skip
    due = NOW + dt.timedelta(days=15)
    clock = Clock(due + dt.timedelta(days=3))
    q = {"start": (due - dt.timedelta(days=1)).isoformat(), "end": clock.now.isoformat()}
    with TestClient(create_app(database_url, clock=clock)) as client:

        def fund_rows(who: str) -> list[dict[str, Any]]:
            r = client.get("/api/v1/problems", params=q, headers=keys[who])
            assert r.status_code == 200, r.text
            return [x for x in r.json() if x["source"] == "fund"]

        (row,) = fund_rows("housing")
        assert (row["ref"], row["state"], row["authority"]) == (str(case), "open", "housing")
        assert "先修后报" in row["problem"]
        assert fund_rows("fire") == []
        assert [x["ref"] for x in fund_rows("op")] == [str(case)]  # the firm that owes it
        # filed two days late: closed from then on
        for n in (1, 2):
            attachments.store(conn, subject=f"fund_case:{case}", part="evidence",
                              filename=f"{n}.png", data=PNG + bytes([n]), uploaded_by="op",
                              now=due)  # fmt: skip
        cases.estimate(conn, case, 30_000, actor="op", now=due + dt.timedelta(days=2),
                       party="operator:PF-HX")  # fmt: skip
        (row,) = fund_rows("housing")
        assert row["state"] == "closed"
        assert [h["change"] for h in row["history"]] == ["opened", "closed"]
