"""The HTTP API: ``create_app(database_url)`` returns the FastAPI application.

Everything under ``/api/v1`` needs a key (``api.auth``); ``/healthz`` (the process is up)
and ``/readyz`` (the database answers and its schema is current) do not. Errors are RFC
9457 problem documents (``api.problems``). Lists are newest first with keyset pagination:
pass the ``next_cursor`` of one page as ``cursor`` to get the next.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import swagger_ui  # type: ignore[import-untyped]
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api import (
    alerts,
    console,
    deadletters,
    duty,
    fund,
    login,
    maintenance,
    notices,
    openapi,
    problem_ledger,
    problems,
    stream,
    workorders,
)
from api.deps import LSN_HEADER, Clock
from api.problems import Problem, problem_response
from api.stream import Bridge, Hub
from api.throttle import LoginThrottle, SourceLimit
from estate import db

API_VERSION = "1"
# the public pages per address: an owner's page load is a few requests; looking up
# estate after estate is not (every three-letter code would take a source ten hours)
PUBLIC_BURST, PUBLIC_PER_MINUTE = 60, 30.0
# The console: Vue 3 + Element Plus + ECharts sources in web/, built by Vite into web/dist
# (`make setup` runs scripts/setup-web.sh); the API serves the build.
WEB_DIR = Path(__file__).parent / "web" / "dist"
DOCS_ASSETS = Path(swagger_ui.__file__).parent / "static"  # Swagger UI 5 (swagger-ui-py)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Replica(BaseModel):
    """The streaming replica the API reads from."""

    state: str = Field(description="streaming, or unavailable (reads go to the primary)")
    lag_bytes: int | None = Field(description="WAL the replica has still to replay")
    lag_s: float | None = Field(description="how far behind in time (0 when caught up)")


class Ready(BaseModel):
    status: str
    schema_version: int
    replica: Replica | None = None


def primary_lsn(primary: ConnectionPool) -> str:
    """The primary's WAL position now (raises ``psycopg.Error`` when it cannot say)."""
    with primary.connection(timeout=2) as p:
        row = p.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return str(row[0]) if row else "0/0"


def replica_lag(primary: ConnectionPool, replica: ConnectionPool) -> Replica:
    """How far the replica is behind the primary (bytes of WAL and seconds)."""
    try:
        lsn = primary_lsn(primary)
        with replica.connection(timeout=2) as r:
            got = r.execute(
                "SELECT pg_wal_lsn_diff(%(lsn)s::pg_lsn, pg_last_wal_replay_lsn())::bigint,"
                " CASE WHEN pg_last_wal_replay_lsn() >= %(lsn)s::pg_lsn THEN 0 ELSE"
                " extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END",
                {"lsn": lsn},
            ).fetchone()
    except psycopg.Error:
        return Replica(state="unavailable", lag_bytes=None, lag_s=None)
    assert got is not None
    lag = max(0, int(got[0] or 0))
    return Replica(state="streaming", lag_bytes=lag,
                   lag_s=None if got[1] is None else max(0.0, float(got[1])))  # fmt: skip


def create_app(
    database_url: str,
    *,
    clock: Clock = _utcnow,
    pool_size: int = 4,
    token_ttl_s: float = 900.0,
    session_max_s: float = 12 * 3600.0,
    mqtt_url: str | None = None,
    ticker: Callable[[], float] = time.monotonic,
    streams_per_principal: int = 50,
    read_url: str | None = None,
) -> FastAPI:
    """The application; its connection pools open and close with the app's lifespan.
    ``read_url``: a streaming replica of the database; reads are served from it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: ConnectionPool = ConnectionPool(
            database_url, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False
        )
        pool.open(wait=False)
        app.state.pool, app.state.clock = pool, clock
        app.state.read_pool = None
        if read_url is not None:
            # each connection checked as it is handed out (one round trip): a replica that
            # restarted or went away is noticed before a route runs on it, and the read
            # goes to the primary instead of failing
            app.state.read_pool = ConnectionPool(
                read_url, min_size=1, max_size=pool_size, kwargs={"autocommit": True},
                open=False, check=ConnectionPool.check_connection,
            )  # fmt: skip
            app.state.read_pool.open(wait=False)
        app.state.token_ttl_s, app.state.session_max_s = token_ttl_s, session_max_s
        app.state.login_throttle, app.state.ticker = LoginThrottle(), ticker
        app.state.public_limit = SourceLimit(burst=PUBLIC_BURST, per_minute=PUBLIC_PER_MINUTE)
        # the live stream's feed: the changes the workers and the supervisor publish
        app.state.hub = Hub(per_principal=streams_per_principal) if mqtt_url else None
        app.state.bridge = Bridge(mqtt_url, app.state.hub) if mqtt_url else None
        if app.state.bridge is not None:
            app.state.bridge.start()
        try:
            yield
        finally:
            if app.state.bridge is not None:
                app.state.bridge.stop()
            if app.state.read_pool is not None:
                app.state.read_pool.close()
            pool.close()

    app = FastAPI(
        title="smart-estate",
        version=API_VERSION,
        description="Monitoring for residential estates: ingest, alerts, dispatch, fund.",
        lifespan=lifespan,
        docs_url=None,  # served below from the installation's assets, not a CDN
        redoc_url=None,
    )
    problems.install(app)

    app.middleware("http")(one_value_per_parameter)
    app.middleware("http")(write_position)
    app.middleware("http")(security_headers)  # added last: wraps the others' answers too

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI for the OpenAPI document, every file from this installation."""
        return HTMLResponse(DOCS_HTML)

    _health(app, database_url)

    for router in (
        login.router, deadletters.router, alerts.router, workorders.router, notices.router,
        problem_ledger.router, maintenance.router, duty.router, duty.public, fund.router,
        fund.public, stream.router, console.router,
    ):  # fmt: skip
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]
    if (WEB_DIR / "index.html").is_file():
        app.mount("/console", StaticFiles(directory=WEB_DIR, html=True), name="console")
    else:
        app.get("/console/{rest:path}", include_in_schema=False)(_console_not_built)
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    return app


def _console_not_built(rest: str) -> PlainTextResponse:
    """What /console/ says when the console was never built (the API itself works)."""
    return PlainTextResponse(
        f"The console is not built: {WEB_DIR} has no index.html. Run `make setup`"
        " (or scripts/setup-web.sh), which installs it from npm and builds it.\n",
        status_code=503,
    )


def _health(app: FastAPI, database_url: str) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics`` (no key needed)."""

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up (no dependency is checked)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    def readyz(request: Request) -> Ready:
        """The database answers and every migration is applied; with a replica, how far
        behind it is (a replica that is away does not make the API unready: reads fall
        back to the primary)."""
        try:
            have = db.current_version(database_url)
        except db.DatabaseError as err:
            raise Problem(503, "not-ready", "Not ready", str(err).splitlines()[0]) from err
        latest = db.migrations()[-1].version
        if have != latest:
            raise Problem(
                503,
                "not-ready",
                "Not ready",
                f"schema at version {have}, expected {latest}: run `estate db upgrade`",
            )
        replica = request.app.state.read_pool
        lag = replica_lag(request.app.state.pool, replica) if replica is not None else None
        return Ready(status="ready", schema_version=latest, replica=lag)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus text: the replica's lag (absent without a replica; -1 when away)."""
        registry = CollectorRegistry()
        if request.app.state.read_pool is not None:
            lag = replica_lag(request.app.state.pool, request.app.state.read_pool)
            Gauge(
                "estate_api_replica_lag_bytes",
                "WAL the read replica has to replay",
                registry=registry,
            ).set(-1 if lag.lag_bytes is None else lag.lag_bytes)
            Gauge(
                "estate_api_replica_lag_seconds",
                "how far behind the read replica is",
                registry=registry,
            ).set(-1 if lag.lag_s is None else lag.lag_s)
            Gauge("estate_api_replica_up", "1 when the read replica answers",
                  registry=registry).set(1 if lag.state == "streaming" else 0)  # fmt: skip
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")


# On every response: no inline script anywhere (the console and the docs load only their
# own files), no framing, no sniffing, no referrer leaking a console URL; inline style
# attributes are allowed (the console and Swagger UI use them).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

DOCS_HTML = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>smart-estate API</title>
<link rel="stylesheet" href="/docs-assets/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script>
<script src="/console/docs.js"></script>
</body></html>
"""


async def one_value_per_parameter(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """422 for a query parameter given twice: every parameter of the API takes one value,
    and "the last one wins" would hide a client's mistake (or a probe)."""
    counts = collections.Counter(k for k, _ in request.query_params.multi_items())
    repeated = sorted(k for k, n in counts.items() if n > 1)
    if repeated and request.url.path.startswith("/api/"):
        return problem_response(
            422, "repeated-parameter", "Invalid request",
            f"query parameter(s) given more than once: {', '.join(repeated)}",
            request.url.path,
        )  # fmt: skip
    return await call_next(request)


async def write_position(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """With a read replica, a write's answer carries the primary's WAL position after it
    (``X-Estate-Lsn``): a read sending it back as ``X-Estate-After-Lsn`` sees that write
    (read your writes)."""
    response = await call_next(request)
    pool = getattr(request.app.state, "read_pool", None)
    if pool is None or request.method in ("GET", "HEAD", "OPTIONS") or response.status_code >= 400:
        return response
    try:  # a blocking query: off the event loop
        lsn = await run_in_threadpool(primary_lsn, request.app.state.pool)
    except psycopg.Error:
        return response  # no promise then; the read may be served by the primary anyway
    response.headers[LSN_HEADER] = lsn
    return response


async def security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """``SECURITY_HEADERS`` on every response."""
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    return response
