"""The authorisation matrix: every role × every endpoint × a resource inside its scope and
one outside. The table below must name every operation of the OpenAPI document (a new
route without a row fails ``test_the_matrix_covers_every_operation``).

The world: the demo county; inside is 华祥苑 (HXY: property firm PF-HX, lifts by EM-TS,
in 城关街道), outside is 城关新村 (CGXC, in 滨河街道, no property firm). Area-bound keys
are bound to 城关街道. "Allowed" means the authorisation let the request through (2xx, or
409 when the resource's state does not allow the step); "denied" is 403, or 404 for a
resource the caller may not even see.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role, create_key
from tests.support.data import World, county_world
from tests.support.stack import Stack, scratch_database

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=3)

BOUND: dict[Role, dict[str, str]] = {
    Role.ADMIN: {},
    Role.HOUSING_AUTHORITY: {},
    Role.OPERATOR: {"org_code": "PF-HX"},
    Role.MANAGER: {"org_code": "PF-HX"},
    Role.MAINTENANCE: {"org_code": "EM-TS"},
    Role.FIRE_INSPECTOR: {"area_code": "SFX-CG-CGJD"},
    Role.MARKET_INSPECTOR: {"area_code": "SFX-CG-CGJD"},
    Role.STREET_OFFICE: {"area_code": "SFX-CG-CGJD"},
    Role.OWNER: {},
    Role.OWNERS_COMMITTEE: {"estate_code": "HXY"},
}
ALL = frozenset(BOUND)
A, H, OP, MG, MT, FI, MI, SO, OW, OC = (
    Role.ADMIN, Role.HOUSING_AUTHORITY, Role.OPERATOR, Role.MANAGER, Role.MAINTENANCE,
    Role.FIRE_INSPECTOR, Role.MARKET_INSPECTOR, Role.STREET_OFFICE, Role.OWNER,
    Role.OWNERS_COMMITTEE,
)  # fmt: skip
EVERYWHERE = frozenset({A, H})  # who sees the outside resources too


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[tuple[str, World, dict[Role, dict[str, str]]]]:
    """One world for the whole matrix (it only reads, or its steps are idempotent)."""
    with scratch_database(stack, "matrix") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            w = county_world(conn, T0, NOW)
            keys = {
                r: {"Authorization": f"Bearer {create_key(conn, r.value, r, **b)}"}
                for r, b in BOUND.items()
            }
        yield url, w, keys


@pytest.fixture(scope="module")
def client(world: tuple[str, World, dict[Role, dict[str, str]]]) -> Iterator[TestClient]:
    with TestClient(create_app(world[0], clock=lambda: NOW)) as c:
        yield c


# (method, path): who sees/may act inside the scope; one check function per kind
Sees = frozenset[Role]
ITEM: dict[str, tuple[str, str, str, Sees]] = {  # GET one: path, inside key, outside key
    "/api/v1/alerts/{alert_id}": ("/api/v1/alerts/{}", "alert", "alert_out",
                                  frozenset({A, H, OP, MG, MT, MI, SO})),
    "/api/v1/work-orders/{order_id}": ("/api/v1/work-orders/{}", "lift_order", "order_out",
                                       frozenset({A, H, OP, MG, MT, MI})),
    "/api/v1/notices/{notice_id}": ("/api/v1/notices/{}", "notice", "notice_out",
                                    frozenset({A, H, OP, MG, FI, SO})),
    "/api/v1/fund/cases/{case_id}": ("/api/v1/fund/cases/{}", "fund_case", "fund_case_out",
                                     frozenset({A, H, OP, MG, SO, OC})),
    "/api/v1/fund/accounts/{account_id}": (
        "/api/v1/fund/accounts/{}", "account", "account_out",
        frozenset({A, H, OP, MG, SO, OC})),
    "/api/v1/fund/accounts/{account_id}/journal": (
        "/api/v1/fund/accounts/{}/journal", "account", "account_out",
        frozenset({A, H, OP, MG, SO, OC})),
    "/api/v1/fund/accounts/{account_id}/homes": (
        "/api/v1/fund/accounts/{}/homes", "account", "account_out",
        frozenset({A, H, OP, MG, SO, OC})),
}  # fmt: skip
LIST: dict[str, tuple[str, str, str, str, Sees]] = {  # GET list: path, id field, in, out
    "/api/v1/alerts": ("/api/v1/alerts?state=all", "id", "alert", "alert_out",
                       frozenset({A, H, OP, MG, MT, MI, SO})),
    # a committee follows its estate's fund, not the control room's alarms
    "/api/v1/incidents": ("/api/v1/incidents?state=all", "id", "", "", ALL - {OW, OC}),
    "/api/v1/work-orders": ("/api/v1/work-orders?state=all", "id", "lift_order", "order_out",
                            frozenset({A, H, OP, MG, MT, MI})),
    "/api/v1/notices": ("/api/v1/notices?state=all", "id", "notice", "notice_out",
                        frozenset({A, H, OP, MG, FI, SO})),
    "/api/v1/dead-letters": ("/api/v1/dead-letters", "id", "dead", "dead_out",
                             frozenset({A, OP, MG})),
    "/api/v1/devices": ("/api/v1/devices?limit=500", "id", "device", "device_out",
                        ALL - {OW, FI, OC}),
    "/api/v1/fund/accounts": ("/api/v1/fund/accounts", "id", "account", "account_out",
                              frozenset({A, H, OP, MG, SO, OC})),
    "/api/v1/fund/cases": ("/api/v1/fund/cases", "id", "fund_case", "fund_case_out",
                           frozenset({A, H, OP, MG, SO, OC})),
}  # fmt: skip
# GET by codes (estates and devices are named, not numbered): inside url, outside url
NAMED: dict[str, tuple[str, str, Sees]] = {
    "/api/v1/estates/{estate}": ("/api/v1/estates/HXY", "/api/v1/estates/CGXC",
                                 ALL - {OW, OC}),
    "/api/v1/devices/{estate}/{code}": (
        "/api/v1/devices/HXY/B1-L1", "/api/v1/devices/CGXC/B1-SD1", ALL - {OW, FI, OC}),
    "/api/v1/devices/{estate}/{code}/maintenance": (
        "/api/v1/devices/HXY/B1-L1/maintenance", "/api/v1/devices/CGXC/B1-SD1/maintenance",
        ALL - {OW, FI, OC}),
    "/api/v1/devices/{estate}/{code}/series": (
        "/api/v1/devices/HXY/B1-L1/series?metric=floor",
        "/api/v1/devices/CGXC/B1-SD1/series?metric=fault", ALL - {OW, FI, OC}),
}  # fmt: skip
READ_ONLY: dict[str, tuple[str, Sees]] = {  # GET: who gets 200 (others 403)
    "/api/v1/dead-letters/summary": ("/api/v1/dead-letters/summary", frozenset({A, OP, MG})),
    "/api/v1/responsibility": ("/api/v1/responsibility", ALL),
    "/api/v1/rules": ("/api/v1/rules", ALL),
    "/api/v1/responsibility/versions": ("/api/v1/responsibility/versions", ALL),
    "/api/v1/dispatch/gaps": ("/api/v1/dispatch/gaps", frozenset({A, H, MG, OP, SO})),
    "/api/v1/supervision/items": ("/api/v1/supervision/items", ALL),
    "/api/v1/ledger": ("/api/v1/ledger?start=2026-11-01T00:00:00Z&end=2026-12-01T00:00:00Z",
                       ALL - {OW}),
    "/api/v1/problems": ("/api/v1/problems?start=2026-11-01T00:00:00Z"
                         "&end=2026-12-01T00:00:00Z", ALL - {OW}),
    "/api/v1/problems/by-estate": ("/api/v1/problems/by-estate?start=2026-11-01T00:00:00Z"
                                   "&end=2026-12-01T00:00:00Z", ALL - {OW}),
    "/api/v1/notices/look-backs": ("/api/v1/notices/look-backs", frozenset({A, H, FI, MI, SO})),
    "/api/v1/fund/estates/{estate}/votes": ("/api/v1/fund/estates/HXY/votes",
                                            frozenset({A, H, OP, MG, SO, OC})),
    # the overdue repair-first applications; content per scope in test_fund.py
    "/api/v1/fund/applications/overdue": ("/api/v1/fund/applications/overdue",
                                          frozenset({A, H, OP, MG, SO})),
    "/api/v1/estates/{estate}/duty/shifts": (
        "/api/v1/estates/HXY/duty/shifts?start=2026-11-22T00:00:00Z&end=2026-11-23T00:00:00Z",
        frozenset({A, H, OP, MG, FI, SO, OC})),
    # the committee supervises the firm's service: its duty roster and shift log
    "/api/v1/estates/{estate}/duty/log": ("/api/v1/estates/HXY/duty/log",
                                          frozenset({A, H, OP, MG, FI, SO, OC})),
    "/api/v1/auth/me": ("/api/v1/auth/me", ALL),
    # scoped content, tested in tests/test_api_console.py; every role may ask
    "/api/v1/estates": ("/api/v1/estates", ALL),
    "/api/v1/silences": ("/api/v1/silences?active=false", ALL),
    "/api/v1/views/fire": ("/api/v1/views/fire", ALL),
    "/api/v1/views/elevators": ("/api/v1/views/elevators", ALL),
    "/api/v1/views/drainage": ("/api/v1/views/drainage", ALL),
}  # fmt: skip
VISIT = {
    "technician": "张师傅", "items": {f"A{i:02d}": "ok" for i in range(1, 32)},
    "started_at": "2026-11-23T08:00:00Z", "ended_at": "2026-11-23T08:40:00Z",
}  # fmt: skip
# POST/PUT: path (formatted with inside / outside ids), body, who may act inside
ACTION: dict[tuple[str, str], tuple[str, str, str, dict[str, Any] | None, Sees]] = {
    ("POST", "/api/v1/alerts/{alert_id}/confirm"): (
        "/api/v1/alerts/{}/confirm", "fire_alert", "alert_out", None, frozenset({A, OP, MG})),
    ("POST", "/api/v1/alerts/{alert_id}/false-alarm"): (
        "/api/v1/alerts/{}/false-alarm", "fire_alert", "alert_out", {"cause": "steam"},
        frozenset({A, OP, MG})),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): (
        "/api/v1/alerts/{}/acknowledge", "alert", "alert_out", None, frozenset({A, OP, MG})),
    ("POST", "/api/v1/silences"): (
        "/api/v1/silences", "", "", {"estate_code": "HXY", "device_code": "B2-L2", "hours": 1,
                                     "reason": "matrix"}, frozenset({A, OP, MG})),
    ("POST", "/api/v1/silences/{silence_id}/expire"): (
        "/api/v1/silences/{}/expire", "silence", "silence_out", None, frozenset({A, OP, MG})),
    ("POST", "/api/v1/work-orders/{order_id}/{action}"): (
        "/api/v1/work-orders/{}/acknowledge", "lift_order", "order_out", None,
        frozenset({A, OP, MG, MT})),
    ("POST", "/api/v1/notices/{notice_id}/{action}"): (
        "/api/v1/notices/{}/rectify", "notice", "notice_out", {"note": "fixed"},
        frozenset({OP, MG})),
    ("POST", "/api/v1/dead-letters/replay"): (
        "/api/v1/dead-letters/replay", "", "", {"ids": []}, frozenset({A, MG})),
    ("POST", "/api/v1/notices"): (
        "/api/v1/notices", "", "", {"estate": "HXY", "problem": "p", "deadline": "2026-12-30"},
        frozenset({FI, MI, H, SO})),
    ("POST", "/api/v1/notices/{notice_id}/acknowledge"): (
        "/api/v1/notices/{}/acknowledge", "notice", "notice_out", None, frozenset({OP, MG})),
    ("POST", "/api/v1/notices/{notice_id}/problems/{seq}/{action}"): (
        "/api/v1/notices/{}/problems/1/rectify", "notice", "notice_out", {"note": "fixed"},
        frozenset({OP, MG})),
    ("POST", "/api/v1/notices/{notice_id}/attachments"): (
        "/api/v1/notices/{}/attachments?filename=a.png", "notice", "notice_out", None,
        frozenset({OP, MG})),
    ("PUT", "/api/v1/responsibility"): ("/api/v1/responsibility", "", "", {}, frozenset({A, H})),
    ("POST", "/api/v1/estates/{estate}/duty/shifts"): (
        "/api/v1/estates/HXY/duty/shifts", "", "",
        {"starts_at": "2026-11-22T08:00:00+08:00", "ends_at": "2026-11-22T20:00:00+08:00",
         "staff": [{"name": "王芳", "cert_no": "1"}, {"name": "刘强", "cert_no": "2"}]},
        frozenset({A, OP, MG})),
    ("POST", "/api/v1/estates/{estate}/duty/log"): (
        "/api/v1/estates/HXY/duty/log", "", "",
        {"at": "2026-11-22T08:00:00Z", "kind": "note", "text": "m"}, frozenset({A, OP, MG})),
    ("PUT", "/api/v1/estates/{estate}/noticeboard/spending"): (
        "/api/v1/estates/HXY/noticeboard/spending", "", "",
        {"year": 2026, "kind": "elevator", "org_code": "EM-TS", "amount_fen": 1},
        frozenset({A, OP, MG})),
    ("POST", "/api/v1/devices/{estate}/{code}/maintenance"): (
        "/api/v1/devices/HXY/B1-L1/maintenance", "", "", VISIT, frozenset({MT})),
    ("POST", "/api/v1/devices/{estate}/{code}/inspections"): (
        "/api/v1/devices/HXY/B1-L1/inspections", "", "",
        {"inspected_on": "2026-11-22", "result": "pass", "next_due": "2027-11-21",
         "report_no": "R1", "certificate_no": "C1", "inspector": "检验所"},
        frozenset({A, MI})),
    # the street office works cases only for estates without a property firm (HXY has one)
    ("POST", "/api/v1/fund/cases"): (
        "/api/v1/fund/cases", "alert", "alert_out", {"item": "elevator_danger", "alert_id": 0},
        frozenset({A, OP, MG})),
    ("POST", "/api/v1/fund/cases/{case_id}/{action}"): (
        "/api/v1/fund/cases/{}/estimate", "fund_case", "fund_case_out", {"estimate_fen": 100},
        frozenset({A, OP, MG})),
    ("POST", "/api/v1/fund/cases/{case_id}/photos"): (
        "/api/v1/fund/cases/{}/photos?filename=a.png", "fund_case", "fund_case_out", None,
        frozenset({A, OP, MG})),
    ("POST", "/api/v1/fund/estates/{estate}/votes"): (
        "/api/v1/fund/estates/HXY/votes", "", "",
        {"held_on": "2026-11-21", "valid_until": "2029-11-20", "participating_area_m2": "1",
         "participating_owners": 1, "consenting_area_m2": "1", "consenting_owners": 1},
        frozenset({A, H, SO, OC})),
    ("POST", "/api/v1/fund/cases/{case_id}/settle"): (
        "/api/v1/fund/cases/{}/settle", "fund_case", "fund_case_out",
        {"cost_fen": 1, "invoice_ref": "x"}, frozenset({A, H})),
    ("POST", "/api/v1/fund/accounts/{account_id}/deposits"): (
        "/api/v1/fund/accounts/{}/deposits", "account", "account_out", {"amount_fen": 1},
        frozenset({A, H})),
}  # fmt: skip
NOT_IN_MATRIX = {  # and why
    ("GET", "/healthz"): "public",
    ("GET", "/readyz"): "public",
    ("POST", "/api/v1/auth/token"): "public: the login itself (tests/api/test_login.py)",
    ("POST", "/api/v1/auth/logout"): "user tokens only (tests/api/test_login.py)",
    ("POST", "/api/v1/auth/refresh"): "user tokens only (tests/api/test_login.py)",
    ("GET", "/api/v1/stream"): "scope per event, through a real server (test_api_stream.py)",
    ("GET", "/api/v1/devices/{estate}/{code}/maintenance/checklist"): (
        "whoever sees the lift, as its records above (tests/api/test_maintenance.py)"
    ),
    ("POST", "/api/v1/devices/{estate}/{code}/maintenance/{record_id}/photos"): (
        "the company that recorded the visit (tests/api/test_maintenance.py)"
    ),
    ("GET", "/api/v1/devices/{estate}/{code}/maintenance/{record_id}/photos/{photo_id}"): (
        "whoever sees the lift (tests/api/test_maintenance.py)"
    ),
    ("GET", "/api/v1/notices/{notice_id}/attachments/{attachment_id}"): (
        "whoever sees the notice (its scope is in this matrix); tests/api/test_notices.py"
    ),
    ("GET", "/api/v1/public/estates/{estate}/disclosure"): "public by design (test_api_fund.py)",
    ("GET", "/api/v1/public/estates/{estate}/fund-report"): "public by design (test_api_fund.py)",
    ("GET", "/api/v1/public/estates/{estate}/noticeboard"): "public by design (test_duty.py)",
    ("GET", "/api/v1/fund/my-home"): "an owner's login with a home (test_fund.py); others 403",
    ("POST", "/api/v1/fund/cases/{case_id}/objections"): (
        "an owner's login with a home that paid (test_fund.py); others 403"
    ),
    ("POST", "/api/v1/fund/objections/{objection_id}/answer"): (
        "housing authority, admin (test_fund.py: an owner is refused)"
    ),
    ("GET", "/api/v1/fund/cases/{case_id}/photos/{photo_id}"): (
        "whoever sees the case (its scope is in this matrix); tests/api/test_fund.py"
    ),
}


def test_the_matrix_covers_every_operation(client: TestClient) -> None:
    ops = {(m.upper(), p) for p, item in client.app.openapi()["paths"].items() for m in item}  # type: ignore[attr-defined]
    gets = {("GET", p) for p in (*ITEM, *LIST, *NAMED, *READ_ONLY)}
    covered = gets | set(ACTION) | set(NOT_IN_MATRIX)
    assert ops == covered, f"not in the matrix: {ops - covered}; gone: {covered - ops}"


DENIED = (403, 404)


Keys = dict[Role, dict[str, str]]


def check_reads(client: TestClient, w: World, role: Role, h: dict[str, str]) -> None:
    for path, (fmt, inside, outside, sees) in ITEM.items():
        got = client.get(fmt.format(w.ids[inside]), headers=h).status_code
        assert (got == 200) if role in sees else (got in DENIED), (path, "inside", got)
        got = client.get(fmt.format(w.ids[outside]), headers=h).status_code
        assert (got == 200) if role in EVERYWHERE else (got in DENIED), (path, "outside", got)
    for path, (url, field, inside, outside, sees) in LIST.items():
        r = client.get(url, headers=h)
        if r.status_code == 403:
            assert role not in sees, path  # not a reader of this list at all
            continue
        assert r.status_code == 200, (path, r.text)
        listed = {x[field] for x in r.json()["items"]}
        if not inside:
            assert bool(listed) == (role in sees), path
            continue
        assert (w.ids[inside] in listed) == (role in sees), (path, "inside")
        may_out = role is A or (role is H and path != "/api/v1/dead-letters")
        assert (w.ids[outside] in listed) == may_out, (path, "outside")
    for path, (inside_url, outside_url, sees) in NAMED.items():
        got = client.get(inside_url, headers=h).status_code
        assert (got == 200) if role in sees else (got in DENIED), (path, "inside", got)
        got = client.get(outside_url, headers=h).status_code
        assert (got == 200) if role in EVERYWHERE else (got in DENIED), (path, "outside", got)
    for path, (url, sees) in READ_ONLY.items():
        got = client.get(url, headers=h).status_code
        assert got == (200 if role in sees else 403), (path, got)


def check_actions(client: TestClient, w: World, role: Role, h: dict[str, str]) -> None:
    for (method, path), (fmt, inside, outside, given, may) in ACTION.items():
        for side, ident in (("inside", inside), ("outside", outside)):
            if side == "outside" and not outside:
                continue
            body = dict(given) if given is not None else None
            if path == "/api/v1/responsibility":
                current = client.get("/api/v1/responsibility", headers=h).json()
                body = {"based_on": current["version"], "comment": "m", "list": current["list"]}
            if body is not None and "alert_id" in body:
                body["alert_id"] = w.ids[ident]  # the id goes in the body, not the path
            url = fmt.format(w.ids[ident]) if "{}" in fmt else fmt
            headers = {**h, "Idempotency-Key": uuid.uuid4().hex}
            got = client.request(method, url, json=body, headers=headers).status_code
            allowed = role in may and (side == "inside" or role in EVERYWHERE)
            if allowed:
                assert got not in (401, *DENIED), (path, side, got)
            else:
                assert got in DENIED, (path, side, got)


@pytest.mark.parametrize("role", list(BOUND), ids=[r.value for r in BOUND])
def test_every_endpoint_inside_and_outside_the_scope(
    client: TestClient, world: tuple[str, World, Keys], role: Role
) -> None:
    _, w, keys = world
    check_reads(client, w, role, keys[role])
    check_actions(client, w, role, keys[role])


def test_no_credentials_no_access(client: TestClient) -> None:
    for path in (*LIST, *READ_ONLY):
        url = LIST[path][0] if path in LIST else READ_ONLY[path][0]
        r = client.get(url)
        assert r.status_code == 401, path
        assert r.headers["content-type"] == "application/problem+json"


DOMAIN_OF = {FI: "fire", MI: "elevator"}
AUTHORITY_OF = {FI: "fire", MI: "market"}


def test_inspectors_see_only_their_domain_in_every_list_and_view(
    client: TestClient, world: tuple[str, World, Keys]
) -> None:
    """Area and domain: the fire brigade sees fire matters, market supervision lifts, in
    every list and view that can hold both."""
    url, _, keys = world
    with psycopg.connect(url, autocommit=True) as conn:
        for device, alert in (("B1-HP", None), ("B1-L1", None), (None, "fire.door_open"),
                              (None, "elevator.overspeed"), (None, None)):  # fmt: skip
            conn.execute(
                "INSERT INTO silences (estate_code, device_code, alert_type, starts_at, ends_at,"
                " author, reason) VALUES ('HXY', %s, %s, %s, %s, 't', 'domain')",
                (device, alert, T0, NOW + dt.timedelta(days=1)),
            )
        kinds: dict[str, str] = dict(
            conn.execute("SELECT code, kind FROM devices WHERE estate_code = 'HXY'")
        )
    for role, kind in DOMAIN_OF.items():
        h = keys[role]
        alerts = client.get("/api/v1/alerts?state=all&limit=500", headers=h).json()["items"]
        assert alerts
        assert {a["kind"] for a in alerts} == {kind}
        orders = client.get("/api/v1/work-orders?state=all&limit=500", headers=h).json()
        assert {o["category"] for o in orders["items"]} <= {kind}
        listed = client.get("/api/v1/notices?state=all", headers=h).json()["items"]
        assert {n["authority"] for n in listed} <= {AUTHORITY_OF[role]}
        estate = client.get("/api/v1/estates/HXY", headers=h).json()
        assert {d["kind"] for d in estate["device_list"]} == {kind}
        devices = client.get("/api/v1/devices?limit=500", headers=h).json()["items"]
        assert {d["kind"] for d in devices} == {kind}
        silences = client.get("/api/v1/silences", headers=h).json()
        seen = {(s["device_code"], s["alert_type"]) for s in silences if s["reason"] == "domain"}
        assert (None, None) in seen  # estate-wide work concerns everyone
        for device, alert in seen:
            assert device is None or kinds[device] == kind, (role, device)
            assert alert is None or alert.split(".")[0] == kind, (role, alert)
        assert len(seen) == 3
        for view in ("fire", "elevators", "drainage"):
            body = client.get(f"/api/v1/views/{view}", headers=h).json()
            assert {n["id"] for n in body.get("notices", [])} <= {n["id"] for n in listed}
            rows = [r for k, v in body.items() if isinstance(v, list) for r in v]
            codes = {r["device_code"] for r in rows if r.get("device_code")}
            assert {kinds[c] for c in codes if c in kinds} <= {kind}, (role, view)


@pytest.mark.parametrize(
    ("role", "body", "kind"),
    [
        (FI, {"device": "B1-L1"}, "outside-domain"),  # a lift, to the fire brigade
        (MI, {"device": "B1-HP"}, "outside-domain"),
        (MI, {"recipient_org": "EM-TS"}, None),  # maintains HXY's lifts: may act
        (FI, {"recipient_org": "EM-TS"}, "unit-cannot-act"),  # maintains no fire equipment
        (FI, {"recipient_org": "PF-HX"}, None),  # the estate's property firm
        (MI, {"recipient_org": "PF-AJ"}, "unit-cannot-act"),  # another estate's firm
        (FI, {"recipient_org": "FM-AQ"}, None),  # maintains HXY's fire equipment
    ],
)
def test_a_notice_names_a_device_of_the_domain_and_a_unit_that_can_act(
    client: TestClient, world: tuple[str, World, Keys], role: Role, body: dict[str, str],
    kind: str | None,
) -> None:  # fmt: skip
    sent = {"estate": "HXY", "problem": "p", "deadline": "2026-12-30", **body}
    r = client.post("/api/v1/notices", json=sent, headers=world[2][role])
    if kind is None:
        assert r.status_code == 201, r.text
    else:
        assert r.status_code == 422, r.text
        assert r.json()["type"].endswith(kind)
