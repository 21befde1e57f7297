"""Input the API refuses with a problem document, never a 500: tiny durations, times
without an offset, money that is not an integer, silences on what does not exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role, create_key
from estate import registry

pytestmark = pytest.mark.integration


@pytest.fixture
def client(database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        registry.load(conn, registry.read(registry.demo_path()))
        admin = create_key(conn, "admin", Role.ADMIN)
    with TestClient(create_app(database_url)) as c:
        yield c, {"Authorization": f"Bearer {admin}"}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"hours": 1e-10}, 422, "greater than or equal"),
        ({"building_code": "B9"}, 422, "has no building 'B9'"),
        ({"device_code": "NOPE"}, 422, "has no device 'NOPE'"),
        ({"building_code": "B2", "device_code": "B1-L1"}, 422, "has no device 'B1-L1'"),
        ({"reason": "维保\x07"}, 422, "pattern"),
        ({"alert_type": "elevator.trapped"}, 422, "life-safety alert"),
        ({"alert_type": "fire.alarm"}, 422, "cannot be silenced"),
        ({"building_code": "B1", "device_code": "B1-L1"}, 201, ""),
    ],
    ids=[
        "tiny",
        "no building",
        "no device",
        "device elsewhere",
        "control character",
        "trapped",
        "fire alarm",
        "good",
    ],
)
def test_silences_refuse_what_cannot_be_or_must_not_be(
    client: tuple[TestClient, dict[str, str]], body: dict[str, Any], status: int, says: str
) -> None:
    c, h = client
    full = {"estate_code": "HXY", "hours": 1, "reason": "维保", **body}
    r = c.post("/api/v1/silences", json=full, headers=h)
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert says in r.text


def test_a_period_mixing_epoch_and_local_dates_is_not_a_500(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    c, h = client
    for path in ("/api/v1/ledger", "/api/v1/problems"):
        r = c.get(f"{path}?start=0&end=2026-12-01", headers=h)
        assert r.status_code == 200, (path, r.text)
        r = c.get(f"{path}?start=2026-12-01&end=0", headers=h)
        assert r.status_code == 422, (path, r.text)


@pytest.mark.parametrize("amount", ["7", True, " 8 ", 7.5])
def test_money_is_an_integer_of_fen_and_nothing_else(
    client: tuple[TestClient, dict[str, str]], amount: object
) -> None:
    c, h = client
    r = c.post(
        "/api/v1/fund/accounts/1/deposits",
        json={"amount_fen": amount, "kind": "deposit"},
        headers={**h, "Idempotency-Key": f"k-{amount!r}"},
    )
    assert r.status_code == 422, r.text
    assert "amount_fen" in r.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/api/v1/alerts", "GET"),
        ("DELETE", "/api/v1/fund/cases", "GET, POST"),  # two routes share the path
        ("PUT", "/api/v1/alerts/5", "GET"),
        ("PATCH", "/api/v1/responsibility", "GET, PUT"),
    ],
)
def test_a_method_not_allowed_says_which_are(
    client: tuple[TestClient, dict[str, str]], method: str, path: str, allow: str
) -> None:
    c, auth = client
    r = c.request(method, path, headers=auth)
    assert r.status_code == 405
    assert r.headers["Allow"] == allow
    assert r.headers["content-type"] == "application/problem+json"


def test_a_query_parameter_given_twice_is_refused(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    c, auth = client
    r = c.get("/api/v1/alerts?estate=HXY&estate=JXY", headers=auth)
    assert r.status_code == 422
    assert "estate" in r.json()["detail"]
