"""Password logins: argon2id hashes, short-lived tokens, logout, lockout, disabling."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import ApiKeyError, Role, create_user, disable_user
from estate import registry
from estate.db import Conn
from tests.support.cli import estate_env, run_estate
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def county(conn: Conn) -> Conn:
    registry.load(conn, registry.read(registry.demo_path()))
    create_user(conn, "li.op", Role.OPERATOR, PASSWORD, org_code="PF-HX")
    return conn


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(database_url: str, county: Conn, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, clock=clock, token_ttl_s=900)) as c:
        yield c


def log_in(client: TestClient, name: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", data={"username": name, "password": password})


def test_login_issues_a_token_that_expires(client: TestClient, clock: Clock) -> None:
    r = log_in(client, "li.op", PASSWORD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    h = {"Authorization": f"Bearer {body['access_token']}"}
    me = client.get("/api/v1/auth/me", headers=h).json()
    assert me == {
        "name": "li.op", "kind": "user", "role": "operator", "org_code": "PF-HX",
        "area_code": None,
    }  # fmt: skip
    assert client.get("/api/v1/alerts", headers=h).status_code == 200
    clock.now = T0 + dt.timedelta(seconds=899)
    assert client.get("/api/v1/alerts", headers=h).status_code == 200
    clock.now = T0 + dt.timedelta(seconds=900)
    expired = client.get("/api/v1/alerts", headers=h)
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient) -> None:
    wrong = log_in(client, "li.op", "not the password")
    nobody = log_in(client, "nobody", "not the password")
    assert wrong.status_code == nobody.status_code == 401
    assert wrong.json()["detail"] == nobody.json()["detail"] == "wrong name or password"
    assert wrong.headers["content-type"] == "application/problem+json"


def test_ten_failures_lock_the_account_for_15_minutes(client: TestClient, clock: Clock) -> None:
    for _ in range(10):
        assert log_in(client, "li.op", "guess").status_code == 401
    locked = log_in(client, "li.op", PASSWORD)
    assert locked.status_code == 401
    assert "locked until" in locked.json()["detail"]
    clock.now = T0 + dt.timedelta(minutes=15, seconds=1)
    assert log_in(client, "li.op", PASSWORD).status_code == 200


def test_logout_and_disabling_end_tokens(client: TestClient, county: Conn) -> None:
    t1 = log_in(client, "li.op", PASSWORD).json()["access_token"]
    t2 = log_in(client, "li.op", PASSWORD).json()["access_token"]
    h1, h2 = {"Authorization": f"Bearer {t1}"}, {"Authorization": f"Bearer {t2}"}
    assert client.post("/api/v1/auth/logout", headers=h1).status_code == 204
    assert client.get("/api/v1/alerts", headers=h1).status_code == 401
    assert client.get("/api/v1/alerts", headers=h2).status_code == 200
    assert disable_user(county, "li.op", T0)
    assert client.get("/api/v1/alerts", headers=h2).status_code == 401
    assert log_in(client, "li.op", PASSWORD).status_code == 401


def test_passwords_are_argon2id_and_bindings_checked(county: Conn) -> None:
    (stored,) = county.execute("SELECT password_hash FROM users").fetchone() or ("",)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    with pytest.raises(ApiKeyError, match="at least 12 characters"):
        create_user(county, "short", Role.ADMIN, "too short")
    with pytest.raises(ApiKeyError, match="needs --area"):
        create_user(county, "insp", Role.FIRE_INSPECTOR, PASSWORD)
    with pytest.raises(ApiKeyError, match="is not a property_firm"):
        create_user(county, "x", Role.OPERATOR, PASSWORD, org_code="EM-TS")


def test_users_command(stack: Stack, database_url: str) -> None:
    env = estate_env(
        stack.settings.var_dir,
        stack.settings.pg_port,
        stack.settings.mqtt_port,
        stack.settings.mqtt_device_port,
    )
    env["DATABASE_URL"] = database_url
    assert run_estate(["registry", "load", "demo"], env).returncode == 0
    added = run_estate(
        ["users", "add", "wang", "--role", "market_inspector", "--area", "SFX",
         "--password-stdin"],
        env,
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "wang" in run_estate(["users", "list"], env).stdout
    again = run_estate(
        ["users", "add", "wang", "--role", "admin", "--password-stdin"], env, stdin=PASSWORD + "\n"
    )
    assert again.returncode == 2
    assert "exists already" in again.stderr
    assert run_estate(["users", "disable", "wang"], env).returncode == 0
    assert "disabled" in run_estate(["users", "list"], env).stdout
