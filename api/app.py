"""The HTTP API: ``create_app(database_url)`` returns the FastAPI application.

Everything under ``/api/v1`` needs a key (``api.auth``); ``/healthz`` (the process is up)
and ``/readyz`` (the database answers and its schema is current) do not. Errors are RFC
9457 problem documents (``api.problems``). Lists are newest first with keyset pagination:
pass the ``next_cursor`` of one page as ``cursor`` to get the next.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

from api import alerts, deadletters, problems
from api.deps import Clock
from api.problems import Problem
from estate import db

API_VERSION = "1"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Ready(BaseModel):
    status: str
    schema_version: int


def create_app(database_url: str, *, clock: Clock = _utcnow, pool_size: int = 4) -> FastAPI:
    """The application; its connection pool opens and closes with the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: ConnectionPool = ConnectionPool(
            database_url, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False
        )
        pool.open(wait=False)
        app.state.pool, app.state.clock = pool, clock
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="smart-estate",
        version=API_VERSION,
        description="Monitoring for residential estates: ingest, alerts, dispatch, fund.",
        lifespan=lifespan,
    )
    problems.install(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up (no dependency is checked)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    def readyz() -> Ready:
        """The database answers and every migration is applied."""
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
        return Ready(status="ready", schema_version=latest)

    app.include_router(deadletters.router)
    app.include_router(alerts.router)
    return app
