"""Errors as RFC 9457 problem details (``application/problem+json``), one shape for all.

Every error the API returns, whether raised by a route, by validation or by routing
itself (404, 405), has ``type``, ``title``, ``status`` and ``detail``; validation errors
add ``errors`` (where and what). Clients branch on ``type``, people read ``detail``.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

MEDIA_TYPE = "application/problem+json"
BASE = "https://smart-estate.invalid/problems/"  # stable identifiers, not fetchable pages


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail, self.extra = (
            status,
            kind,
            title,
            detail,
            extra,
        )
        self.headers = headers or {}


def problem_response(
    status: int,
    kind: str,
    title: str,
    detail: str,
    instance: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": BASE + kind if kind != "about:blank" else kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    sent = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    sent.update(headers or {})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=sent or None)


_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Invalid request",
    429: "Too many requests",
    503: "Service unavailable",
}


def _methods(request: Request) -> list[str]:
    """The methods the OpenAPI document gives the request's path (empty if none does)."""
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            return sorted(m.upper() for m in item)
    return []


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.kind,
            exc.title,
            exc.detail,
            request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _TITLES.get(exc.status_code, "Error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (methods := _methods(request)):
            # every method of the path, not only those of the first route that matched it
            headers["Allow"] = ", ".join(methods)
        return problem_response(
            exc.status_code, "about:blank", title, str(exc.detail), request.url.path,
            headers=headers,
        )  # fmt: skip

    @app.exception_handler(psycopg.DataError)
    async def _data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # e.g. a NUL character in a text value: PostgreSQL cannot store it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return problem_response(
            422, "invalid-value", "Invalid value",
            f"a value in the request cannot be stored or compared: {first}", request.url.path,
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"where": ".".join(str(p) for p in e["loc"]), "what": e["msg"]} for e in exc.errors()
        ]
        detail = "; ".join(f"{e['where']}: {e['what']}" for e in errors)
        return problem_response(
            422, "invalid-request", "Invalid request", detail, request.url.path, errors=errors
        )
