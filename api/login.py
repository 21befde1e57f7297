"""``/api/v1/auth``: password login (OAuth 2 password flow) for people, logout, and who
the caller is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel

from api.auth import LoginError, login, logout, refresh
from api.deps import Caller, ClockDep, Db
from api.problems import Problem
from api.throttle import LoginThrottle, Throttled

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
_bearer = HTTPBearer(auto_error=False)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (OAuth 2's token type, no secret)
    expires_in: int


class MeOut(BaseModel):
    name: str
    kind: Literal["key", "user"]
    role: str
    org_code: str | None
    area_code: str | None
    estate_code: str | None = None  # an owners' committee's estate


@router.post(
    "/token",
    responses={
        401: {"description": "wrong name or password (or a disabled account: the same answer)"},
        429: {"description": "too many attempts from here, or on this account from here"},
    },
)
def token(
    c: Db,
    clock: ClockDep,
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> TokenOut:
    """Log in with a name and password (form fields ``username``, ``password``); the token
    is sent as ``Authorization: Bearer <token>`` and expires after ``expires_in`` seconds.
    Repeated attempts are slowed down per source (429 with ``Retry-After``), never by
    locking the account (``api.throttle``)."""
    ttl: float = request.app.state.token_ttl_s
    throttle: LoginThrottle = request.app.state.login_throttle
    ticker: Callable[[], float] = request.app.state.ticker
    source = request.client.host if request.client else "unknown"
    try:
        throttle.admit(source, form.username, ticker())
        with throttle.checking():
            t = login(c, form.username, form.password, now=clock(), ttl_s=ttl)
    except Throttled as err:
        raise err.problem("too-many-logins") from None
    except LoginError as err:
        throttle.failed(source, form.username, ticker())
        raise Problem(401, "bad-credentials", "Not authenticated", str(err)) from None
    throttle.succeeded(source, form.username)
    return TokenOut(access_token=t, expires_in=int(ttl))


@router.post("/refresh", responses={400: {"description": "not a login token (an API key)"}})
def keep_alive(
    c: Db,
    clock: ClockDep,
    p: Caller,
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenOut:
    """Keep this login alive (a wall screen, a shift at the console): the same token
    lasts ``expires_in`` more seconds, up to the session's limit after the password login
    (``ESTATE_API_SESSION_MAX_H``), after which it expires and the password is asked
    again. A disabled account or a logged-out token cannot be refreshed (401)."""
    now = clock()
    until = None
    if p.kind == "user" and bearer is not None:
        until = refresh(
            c,
            bearer.credentials,
            now,
            ttl_s=request.app.state.token_ttl_s,
            max_s=request.app.state.session_max_s,
        )
    if until is None or bearer is None:
        raise Problem(400, "not-a-login", "Bad request", "only a login token can be refreshed")
    return TokenOut(access_token=bearer.credentials, expires_in=int((until - now).total_seconds()))


@router.post(
    "/logout", status_code=204, responses={400: {"description": "not a login token (an API key)"}}
)
def sign_out(
    c: Db,
    clock: ClockDep,
    p: Caller,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Revoke the token this request carries (an API key is revoked with the CLI)."""
    if p.kind != "user" or bearer is None or not logout(c, bearer.credentials, clock()):
        raise Problem(400, "not-a-login", "Bad request", "only a login token can be logged out")


@router.get("/me")
def me(p: Caller) -> MeOut:
    """The caller's name, role and binding."""
    return MeOut(
        name=p.name, kind="user" if p.kind == "user" else "key", role=p.role.value,
        org_code=p.org_code, area_code=p.area_code, estate_code=p.estate_code,
    )  # fmt: skip
