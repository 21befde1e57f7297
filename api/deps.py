"""What every route depends on: a database connection, the caller, the clock."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
    OAuth2PasswordBearer,
)
from psycopg_pool import ConnectionPool
from pydantic import AfterValidator, BeforeValidator

from api.auth import Principal, Role, authenticate, authenticate_token
from api.problems import Problem
from estate.db import Conn
from estate.settings import LOCAL_ZONE

Clock = Callable[[], dt.datetime]

_bearer = HTTPBearer(
    auto_error=False,
    description="an API key (se_<id>_<secret>) or a login token (st_<id>_<secret>)",
)
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
# documents the password flow for /docs' Authorize button; the bearer above reads it
_oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def _primary(request: Request) -> Iterator[Conn]:
    pool: ConnectionPool[Conn] = request.app.state.pool
    try:
        with pool.connection(timeout=5) as c:
            yield c
    except psycopg.OperationalError as err:
        raise Problem(
            503, "database-unavailable", "Database unavailable", str(err).strip()
        ) from err


# A write's answer carries the primary's WAL position after it (LSN_HEADER); a read that
# sends it back as AFTER_LSN_HEADER is served from the replica only once the replica has
# replayed that far (waiting up to READ_YOUR_WRITES_WAIT_S), else from the primary.
LSN_HEADER = "X-Estate-Lsn"
AFTER_LSN_HEADER = "X-Estate-After-Lsn"
READ_YOUR_WRITES_WAIT_S = 0.5
REPLICA_RETRY_S = 5.0  # after the replica failed a read, ask the primary this long
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


def _replica_has(c: Conn, lsn: str) -> bool:
    """Whether the replica behind ``c`` has replayed the primary's WAL up to ``lsn``,
    waiting a little for it."""
    deadline = time.monotonic() + READ_YOUR_WRITES_WAIT_S
    while True:
        row = c.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
        if row is not None and row[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _conn(request: Request) -> Iterator[Conn]:
    """The route's connection: the replica's for a read (GET, HEAD) when there is one and
    it is up (and, asked with ``X-Estate-After-Lsn``, has replayed that write); else the
    primary's."""
    replica: ConnectionPool[Conn] | None = request.app.state.read_pool
    after = request.headers.get(AFTER_LSN_HEADER)
    if after is not None and not _LSN.match(after):
        raise Problem(400, "bad-lsn", "Bad LSN",
                      f"{AFTER_LSN_HEADER} is a WAL position as {LSN_HEADER} gave it, e.g."
                      " 0/1A2B3C4")  # fmt: skip
    state = request.app.state
    away_until: float = getattr(state, "replica_away_until", 0.0)
    if replica is not None and request.method in ("GET", "HEAD") and time.monotonic() >= away_until:
        with contextlib.ExitStack() as held:
            try:
                c = held.enter_context(replica.connection(timeout=1))
                ready = after is None or _replica_has(c, after)
            except psycopg.OperationalError:
                # the replica is away: the primary answers (readyz says so), and the next
                # reads do not wait for it either until it has had time to come back
                state.replica_away_until = time.monotonic() + REPLICA_RETRY_S
                ready = False
            if ready:
                request.state.served_by = "replica"
                try:
                    yield c
                except psycopg.OperationalError as err:
                    raise Problem(503, "database-unavailable", "Database unavailable",
                                  str(err).strip()) from err  # fmt: skip
                return
    yield from _primary(request)


Db = Annotated[Conn, Depends(_conn)]


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(_clock)]


def resolve(c: Conn, key: str | None, now: dt.datetime) -> Principal:
    """The caller a key or token stands for, or a 401 problem saying what to send."""
    if not key:
        raise Problem(
            401,
            "not-authenticated",
            "Not authenticated",
            "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>', or log"
            " in at POST /api/v1/auth/token and send the token as 'Authorization: Bearer'",
        )
    if key.startswith("st_"):
        p = authenticate_token(c, key, now)
        if p is None:
            raise Problem(
                401, "bad-credentials", "Not authenticated",
                "the token is unknown, expired or revoked: log in again",
            )  # fmt: skip
        return p
    p = authenticate(c, key)
    if p is None:
        raise Problem(401, "bad-credentials", "Not authenticated", "the key is unknown or revoked")
    return p


def credentials(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
    _flow: Annotated[str | None, Depends(_oauth2)],
) -> str | None:
    """The key or token the request carries (documented in OpenAPI as the schemes)."""
    return bearer.credentials if bearer is not None else header


Credentials = Annotated[str | None, Depends(credentials)]


def _principal(request: Request, c: Db, clock: ClockDep, key: Credentials) -> Principal:
    # who calls is asked of the primary, even for a read served by the replica: a token
    # issued a moment ago may not be there yet, and a key's use is recorded
    if getattr(request.state, "served_by", None) != "replica":
        return resolve(c, key, clock())
    pool: ConnectionPool[Conn] = request.app.state.pool
    try:
        with pool.connection(timeout=5) as primary:
            return resolve(primary, key, clock())
    except psycopg.OperationalError as err:
        raise Problem(
            503, "database-unavailable", "Database unavailable", str(err).strip()
        ) from err


Caller = Annotated[Principal, Depends(_principal)]


def allow(p: Principal, *roles: Role) -> None:
    """403 unless the caller has one of ``roles``."""
    if p.role not in roles:
        raise Problem(
            403,
            "forbidden",
            "Forbidden",
            f"role {p.role} may not do this; allowed: {', '.join(r.value for r in roles)}",
        )


# Times in Asia/Shanghai (estate.settings.LOCAL_ZONE): a time without an offset in a
# request means local time there, so a period mixing "0" (epoch) and "2026-12-01" is
# compared, not a 500.


def _aware(v: dt.datetime) -> dt.datetime:
    return v if v.tzinfo is not None else v.replace(tzinfo=LOCAL_ZONE)


Instant = Annotated[dt.datetime, AfterValidator(_aware)]


def _iso_day(v: object) -> object:
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return v
    if isinstance(v, str) and len(v) == 10 and v[4] == "-" and v[7] == "-":
        return v  # pydantic reads it (and refuses 2026-02-30)
    raise ValueError("a date is written YYYY-MM-DD")


# A calendar day as people write it; not a number of seconds or a date-time
Day = Annotated[dt.date, BeforeValidator(_iso_day)]
