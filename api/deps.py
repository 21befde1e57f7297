"""What every route depends on: a database connection, the caller, the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from api.auth import Principal, Role, authenticate
from api.problems import Problem

Conn = psycopg.Connection[tuple[Any, ...]]
Clock = Callable[[], dt.datetime]

_bearer = HTTPBearer(auto_error=False, description="an API key: se_<id>_<secret>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key")


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


def _principal(
    c: Db,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    key = bearer.credentials if bearer is not None else header
    if not key:
        raise Problem(
            401,
            "not-authenticated",
            "Not authenticated",
            "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        )
    p = authenticate(c, key)
    if p is None:
        raise Problem(401, "bad-credentials", "Not authenticated", "the key is unknown or revoked")
    return p


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
