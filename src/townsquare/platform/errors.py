"""Domain errors and the one place that turns any error into the JSON envelope.

Services raise `AppError` subclasses and never `HTTPException`; every response that
is an error has the body `{"detail": ..., "request_id": ...}`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from townsquare.platform.middleware.request_id import HEADER as REQUEST_ID_HEADER
from townsquare.platform.middleware.request_id import get_request_id

logger = logging.getLogger(__name__)


class AppError(Exception):
    """A failure the client can act on. Subclasses set the status and the message."""

    status_code: ClassVar[int] = 400
    detail: ClassVar[str] = "Bad request"
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, detail: str | None = None) -> None:
        self.message = detail or self.detail
        super().__init__(self.message)

    def response_headers(self) -> Mapping[str, str]:
        return self.headers


class NotFound(AppError):
    status_code = 404
    detail = "Not found"


class Conflict(AppError):
    status_code = 409
    detail = "Conflict"


class Unauthorized(AppError):
    status_code = 401
    detail = "Not authenticated"
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403
    detail = "Forbidden"


class TooManyRequests(AppError):
    status_code = 429
    detail = "Too many requests, retry later"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def response_headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(self.retry_after)}


class DatabaseBusy(AppError):
    """Every database connection of this worker stayed busy for the pool timeout."""

    status_code = 503
    detail = "The service is busy, retry shortly"
    headers: ClassVar[Mapping[str, str]] = {"Retry-After": "1"}


class DatabaseUnavailable(AppError):
    """The database connection broke under a request (a restart, a failover)."""

    status_code = 503
    detail = "The database is unavailable, retry shortly"
    headers: ClassVar[Mapping[str, str]] = {"Retry-After": "1"}


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Path to the offending input, e.g. body.email.")
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="Machine-readable kind of error.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    detail: str | list[FieldError] = Field(
        description="A message, or for invalid input one entry per offending field."
    )
    request_id: str | None = Field(description="The request's id, as in `X-Request-ID`.")


def responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the domain errors a route can raise."""
    documented: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = documented.setdefault(error.status_code, {"model": ErrorBody, "description": ""})
        entry["description"] = "; ".join(filter(None, [entry["description"], error.detail]))
    return documented


def error_response(
    status_code: int, detail: str | Sequence[Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    request_id = get_request_id()
    all_headers = dict(headers or {})
    if request_id is not None:
        all_headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(
        {"detail": detail, "request_id": request_id},
        status_code=status_code,
        headers=all_headers,
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only the path, the message and the kind: pydantic's `input` would echo back
    # whatever was sent, passwords included.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error["type"]}
        for error in exc.errors()
    ]


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.message, exc.response_headers())


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, _field_errors(exc))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _pool_timeout(_request: Request, exc: Exception) -> JSONResponse:
    # Logged without a trace: it says the worker is saturated, not that code is broken.
    logger.warning("no database connection within the pool timeout: %s", exc)
    return error_response(DatabaseBusy.status_code, DatabaseBusy.detail, DatabaseBusy.headers)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated:
        # SQLAlchemy has already dropped the pool's older connections; the next request
        # opens fresh ones.
        logger.warning("database connection lost under %s %s", request.method, request.url.path)
        return error_response(
            DatabaseUnavailable.status_code, DatabaseUnavailable.detail, DatabaseUnavailable.headers
        )
    return await _unhandled_error(request, exc)


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    # The trace goes to the log, never to the client.
    logger.error(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return error_response(500, "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unhandled_error)
