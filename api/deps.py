"""What every route depends on: a database connection, the caller, the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Annotated
from zoneinfo import ZoneInfo

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

Clock = Callable[[], dt.datetime]

_bearer = HTTPBearer(
    auto_error=False,
    description="an API key (se_<id>_<secret>) or a login token (st_<id>_<secret>)",
)
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
# documents the password flow for /docs' Authorize button; the bearer above reads it
_oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def _conn(request: Request) -> Iterator[Conn]:
    pool: ConnectionPool[Conn] = request.app.state.pool
    try:
        with pool.connection(timeout=5) as c:
            yield c
    except psycopg.OperationalError as err:
        raise Problem(
            503, "database-unavailable", "Database unavailable", str(err).strip()
        ) from err


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


def _principal(c: Db, clock: ClockDep, key: Credentials) -> Principal:
    return resolve(c, key, clock())


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


# Times in Asia/Shanghai: a time without an offset in a request means local time there,
# so a period mixing "0" (epoch) and "2026-12-01" is compared, not a 500.
LOCAL_ZONE = ZoneInfo("Asia/Shanghai")


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
