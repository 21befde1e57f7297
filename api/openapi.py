"""The OpenAPI document as the API really answers: every error is a problem document.

FastAPI documents its validation errors as ``application/json`` and leaves out the
statuses the dependencies raise (401 and 403 from authentication and roles, 404 for a
path's resource, 429 from the throttles). ``document`` adds them from the route's shape
and declares every non-2xx response as ``application/problem+json`` with one ``Problem``
schema, so a client generated from the document handles what it will receive.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.problems import MEDIA_TYPE

PROBLEM: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "what kind of problem (stable, for code)"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what went wrong, for people"},
        "instance": {"type": "string", "description": "the request path"},
        "errors": {
            "type": "array",
            "description": "validation errors: where and what",
            "items": {
                "type": "object",
                "properties": {"where": {"type": "string"}, "what": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}
WHY = {
    "400": "Bad request",
    "401": "No valid credential (an API key or a login token)",
    "403": "The caller's role may not do this",
    "404": "Not there, or not within the caller's scope",
    "409": "Not possible in the resource's current state",
    "422": "The request's parameters or body are invalid",
    "429": "Too many requests: retry after the seconds in Retry-After",
    "503": "Not ready",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def _open(path: str) -> bool:
    """Routes that need no credential."""
    return (
        not path.startswith("/api/v1/")
        or path.startswith("/api/v1/public/")
        or path == "/api/v1/auth/token"
    )


def _throttled(path: str) -> bool:
    return path.startswith("/api/v1/public/") or path == "/api/v1/auth/token"


def _needed(path: str, op: dict[str, Any]) -> set[str]:
    """The error statuses an operation of this shape can answer."""
    params = op.get("parameters", [])
    needed: set[str] = set()
    if not _open(path):
        needed |= {"401", "403"}
    if any(p.get("in") == "path" for p in params):
        needed.add("404")
    if params or "requestBody" in op:
        needed.add("422")
    if "requestBody" in op:
        needed.add("400")  # a body that is not JSON at all
    if _throttled(path):
        needed.add("429")
    return needed


def _as_problem(code: str, response: dict[str, Any]) -> None:
    if response.get("description") in (None, "", "Additional Response", "Validation Error"):
        response["description"] = WHY.get(code, "Error")
    response["content"] = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    if code == "429":
        response["headers"] = _RETRY_AFTER


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with its error responses completed (cached)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, item in doc.get("paths", {}).items():
        for op in item.values():
            responses: dict[str, Any] = op.setdefault("responses", {})
            for code in _needed(path, op):
                responses.setdefault(code, {})
            for code, response in responses.items():
                if not code.startswith(("2", "3")):
                    _as_problem(code, response)
    app.openapi_schema = doc
    return doc
