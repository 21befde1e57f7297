"""Password logins: argon2id hashes, short-lived tokens, logout, disabling; throttling
that slows guessing per source without locking anyone out; the password policy."""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import ApiKeyError, Role, create_key, create_user, disable_user
from estate import registry
from estate.db import Conn
from tests.support.cli import estate_env, run_estate
from tests.support.pipeline import wait_for
from tests.support.stack import Stack
from tests.support.web import serving

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def ticker(self) -> float:
        """Monotonic seconds for the login throttle, moved with ``now``."""
        return (self.now - T0).total_seconds()


@pytest.fixture
def county(conn: Conn) -> Conn:
    registry.load(conn, registry.read(registry.demo_path()))
    create_user(conn, "li.op", Role.OPERATOR, PASSWORD, org_code="PF-HX")
    return conn


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(database_url: str, county: Conn, clock: Clock) -> Any:
    return create_app(database_url, clock=clock, token_ttl_s=900, ticker=clock.ticker)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def elsewhere(app: Any, client: TestClient) -> Iterator[TestClient]:
    """The same server seen from another address (the account's owner, at work)."""
    with TestClient(app, client=("10.1.2.3", 40000)) as c:
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
        "area_code": None, "estate_code": None,
    }  # fmt: skip
    assert client.get("/api/v1/alerts", headers=h).status_code == 200
    clock.now = T0 + dt.timedelta(seconds=899)
    assert client.get("/api/v1/alerts", headers=h).status_code == 200
    clock.now = T0 + dt.timedelta(seconds=900)
    expired = client.get("/api/v1/alerts", headers=h)
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]


def test_unknown_wrong_and_disabled_get_the_same_answer(
    client: TestClient, elsewhere: TestClient, county: Conn
) -> None:
    create_user(county, "wang.off", Role.OPERATOR, "another good passphrase", org_code="PF-HX")
    assert disable_user(county, "wang.off", T0)
    answers = [
        log_in(client, "li.op", "not the password"),  # wrong
        log_in(client, "nobody", "not the password"),  # unknown
        log_in(elsewhere, "wang.off", "another good passphrase"),  # disabled, right password
    ]
    assert {r.status_code for r in answers} == {401}
    assert {r.json()["detail"] for r in answers} == {"wrong name or password"}
    assert {r.headers["content-type"] for r in answers} == {"application/problem+json"}


def test_failures_slow_down_the_source_without_locking_the_owner_out(
    client: TestClient, elsewhere: TestClient, clock: Clock
) -> None:
    for _ in range(3):  # free failures
        assert log_in(client, "li.op", "guess").status_code == 401
    slowed = log_in(client, "li.op", PASSWORD)  # the next waits, even with the password
    assert slowed.status_code == 429
    assert slowed.headers["content-type"] == "application/problem+json"
    assert slowed.headers["Retry-After"] == "1"
    # the owner, from another address, is not affected
    assert log_in(elsewhere, "li.op", PASSWORD).status_code == 200
    # once the delay has passed the source is heard again; each failure doubles it
    clock.now += dt.timedelta(seconds=1)
    assert log_in(client, "li.op", "guess").status_code == 401
    again = log_in(client, "li.op", PASSWORD)
    assert again.status_code == 429
    assert again.headers["Retry-After"] == "2"
    clock.now += dt.timedelta(seconds=2)
    assert log_in(client, "li.op", PASSWORD).status_code == 200
    # a success ends the streak: failing again starts with free failures
    for _ in range(3):
        assert log_in(client, "li.op", "guess").status_code == 401


def test_a_flood_from_one_source_is_refused_before_any_password_is_hashed(
    client: TestClient, elsewhere: TestClient, county: Conn
) -> None:
    codes = [log_in(client, f"user{i}", "whatever guess").status_code for i in range(40)]
    assert codes[:20] == [401] * 20  # the burst
    assert set(codes[20:]) == {429}
    (failed,) = county.execute("SELECT coalesce(sum(failed_logins), 0) FROM users").fetchone() or (
        0,
    )
    assert failed == 0  # none of those names exists; nothing was counted on a real account
    assert log_in(elsewhere, "li.op", PASSWORD).status_code == 200


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


def test_a_refreshed_login_lasts_until_the_session_limit(
    database_url: str, county: Conn, clock: Clock
) -> None:
    """A wall screen refreshes its login: the same token lives on, 900 s past each
    refresh, but never past the session limit after the password (here 2,000 s)."""
    app = create_app(
        database_url, clock=clock, token_ttl_s=900, session_max_s=2000, ticker=clock.ticker
    )
    with TestClient(app) as client:
        token = log_in(client, "li.op", PASSWORD).json()["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        clock.now = T0 + dt.timedelta(seconds=800)
        r = client.post("/api/v1/auth/refresh", headers=h)
        assert r.status_code == 200, r.text
        assert r.json() == {"access_token": token, "token_type": "bearer", "expires_in": 900}
        clock.now = T0 + dt.timedelta(seconds=1600)  # past the first 900 s: still in
        assert client.get("/api/v1/alerts", headers=h).status_code == 200
        r = client.post("/api/v1/auth/refresh", headers=h)
        assert r.json()["expires_in"] == 400  # the session's limit, not 900 more
        clock.now = T0 + dt.timedelta(seconds=1999)
        assert client.get("/api/v1/alerts", headers=h).status_code == 200
        clock.now = T0 + dt.timedelta(seconds=2000)
        assert client.post("/api/v1/auth/refresh", headers=h).status_code == 401
        assert client.get("/api/v1/alerts", headers=h).status_code == 401


def test_only_a_live_login_token_can_be_refreshed(client: TestClient, county: Conn) -> None:
    key = create_key(county, "screen", Role.OPERATOR, org_code="PF-HX")
    r = client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    t = log_in(client, "li.op", PASSWORD).json()["access_token"]
    h = {"Authorization": f"Bearer {t}"}
    assert client.post("/api/v1/auth/logout", headers=h).status_code == 204
    assert client.post("/api/v1/auth/refresh", headers=h).status_code == 401
    t = log_in(client, "li.op", PASSWORD).json()["access_token"]
    h = {"Authorization": f"Bearer {t}"}
    assert disable_user(county, "li.op", T0)
    assert client.post("/api/v1/auth/refresh", headers=h).status_code == 401


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


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("short pw", "at least 12 characters"),
        ("aaaaaaaaaaaaaaaa", "5 different characters"),
        ("201811230800", "digits only"),
        ("Password2024!", "first an attacker tries"),
        ("qwertyuiopasdf", "first an attacker tries"),
        ("abcdefghijklmn", "first an attacker tries"),
        ("woaini1314woaini", "common words and digits"),
        ("Summer2026!Summer", "common words and digits"),
        ("zhang.wei-2026-spring", "'zhang.wei'"),
        ("my PF-HX duty room", "'PF-HX'"),
        ("smartestate rocks 42", "'smartestate'"),
    ],
)
def test_the_password_policy_refuses_what_is_guessable(
    county: Conn, password: str, says: str
) -> None:
    with pytest.raises(ApiKeyError, match=says):
        create_user(county, "zhang.wei", Role.OPERATOR, password, org_code="PF-HX")
    create_user(county, "zhang.wei", Role.OPERATOR, "tea kettle violin 7", org_code="PF-HX")


def test_a_flood_through_a_real_server_is_refused_while_others_are_served(
    database_url: str, county: Conn
) -> None:
    """Eight threads post wrong passwords as fast as a real server answers; a logged-in
    user's requests meanwhile all succeed, and the flood is mostly refused before any
    password is hashed. (How fast the user is served is measured in bench/login_flood.py.)"""
    create_user(county, "wang.op", Role.OPERATOR, "another good passphrase", org_code="PF-HX")
    with serving(create_app(database_url)) as base:
        form = {"username": "wang.op", "password": "another good passphrase"}
        token = post_form(f"{base}/api/v1/auth/token", form)["access_token"]
        stop, got = threading.Event(), collections.Counter[int]()

        def flood() -> None:
            guess = {"username": "li.op", "password": "guess guess"}
            while not stop.is_set():
                got[status_of_post(f"{base}/api/v1/auth/token", guess)] += 1

        threads = [threading.Thread(target=flood, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: got[429] > 50, 60, "the flood to be refused")
            served = [status_of_get(f"{base}/api/v1/auth/me", token) for _ in range(50)]
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    assert served == [200] * 50
    assert got[429] > got[401]
    assert set(got) <= {401, 429}


def _request(req: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
            return int(r.status), r.read()
    except urllib.error.HTTPError as err:
        body = err.read()
        err.close()
        return int(err.code), body


def post_form(url: str, form: dict[str, str]) -> Any:
    status, body = _request(
        urllib.request.Request(url, data=urllib.parse.urlencode(form).encode())  # noqa: S310
    )
    assert status == 200, body
    return json.loads(body)


def status_of_post(url: str, form: dict[str, str]) -> int:
    return _request(
        urllib.request.Request(url, data=urllib.parse.urlencode(form).encode())  # noqa: S310
    )[0]


def status_of_get(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    return _request(req)[0]
