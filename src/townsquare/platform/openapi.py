"""The statuses every operation can answer besides its own, in the OpenAPI document.

Routes declare what they decide themselves (401, 404, 409, ...); the platform answers
some requests before a route runs, and those answers belong in the document too:
400 for a body that cannot be parsed, 408 and 413 for bodies too slow or too large,
429 from the rate limiter, 503 when the worker is at capacity.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from fastapi import FastAPI

_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
BODY_STATUSES = {
    "400": "The body is not valid JSON (or form data), or not UTF-8.",
    "408": "The body did not arrive within HTTP_BODY_TIMEOUT_SECONDS.",
    "413": "The body is larger than MAX_BODY_BYTES.",
}
RATE_LIMITED = "429"
BUSY = "503"


def document_platform_statuses(
    app: FastAPI, *, probes: Collection[str], rate_limited: bool
) -> Callable[[], dict[str, Any]]:
    """Wrap `app.openapi` so the document names the platform's answers; returns the
    new generator (also installed on `app`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path, item in schema.get("paths", {}).items():
            if path in probes:
                continue
            for operation in item.values():
                _add_statuses(operation, rate_limited=rate_limited)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi


def _add_statuses(operation: dict[str, Any], *, rate_limited: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})

    def add(status: str, description: str, headers: dict[str, Any] | None = None) -> None:
        entry = responses.setdefault(status, {"description": description, "content": _ERROR_BODY})
        if headers:
            entry.setdefault("headers", headers)

    if "requestBody" in operation:
        for status, description in BODY_STATUSES.items():
            add(status, description)
    if rate_limited:
        add(RATE_LIMITED, "Too many requests: wait as long as Retry-After says.", _RETRY_AFTER)
    add(BUSY, "The worker is at capacity (WORKER_CAPACITY): retry shortly.", _RETRY_AFTER)
