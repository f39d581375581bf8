"""Liveness (`/health`, `/live`) and readiness (`/ready`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, cast

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

# A readiness check returns when its dependency answers and raises when it does not.
Check = Callable[[], Awaitable[None]]


class NotReady(Exception):
    """A check's failure whose message is shown as is in the report (it names what to
    do), rather than only the kind of failure."""


class Health(BaseModel):
    status: Literal["healthy"] = Field(description="Always `healthy` while the process serves.")


class ReadinessReport(BaseModel):
    status: Literal["ready", "not ready"] = Field(
        description="`ready` when every dependency answered in time."
    )
    checks: dict[str, str] = Field(
        description="Each dependency by name (`database`, `schema`, `broker`): `ok`, "
        "`timeout`, `failed: <kind of error>`, or for the schema what it lacks."
    )


class Readiness:
    """Named async checks, run concurrently, each bounded by `timeout` seconds.

    The app factory registers one per dependency (`database`, `broker`, ...).
    """

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self.checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def _run(self, name: str, check: Check) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                await check()
        except TimeoutError:
            logger.warning("readiness check %s timed out after %ss", name, self.timeout)
            return "timeout"
        except NotReady as exc:
            logger.warning("readiness check %s: %s", name, exc)
            return str(exc)
        except Exception as exc:
            logger.warning("readiness check %s failed", name, exc_info=exc)
            return f"failed: {exc.__class__.__name__}"
        return "ok"

    async def report(self) -> ReadinessReport:
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(n, self.checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ready = all(result == "ok" for result in results)
        return ReadinessReport(status="ready" if ready else "not ready", checks=checks)


# The liveness answer never changes: encoded once. Returning a Response skips FastAPI's
# validation and serialization of the model, which cost more than the rest of a probe.
HEALTHY = Health(status="healthy").model_dump_json().encode()
# Answered by the outermost layer itself (platform/middleware/edge.py); the routes below
# document them and answer what that layer passes on.
LIVENESS_ANSWERS = {"/health": HEALTHY, "/live": HEALTHY}


def _healthy() -> Response:
    return Response(HEALTHY, media_type="application/json")


@router.get("/health", response_model=Health)
async def health() -> Response:
    """Liveness: the process is up and its event loop answers."""
    return _healthy()


@router.get("/live", response_model=Health)
async def live() -> Response:
    """Liveness, under the name Kubernetes probes use."""
    return _healthy()


@router.get(
    "/ready",
    response_model=ReadinessReport,
    responses={503: {"model": ReadinessReport, "description": "A dependency failed."}},
)
async def ready(connection: HTTPConnection) -> ReadinessReport | JSONResponse:
    """Readiness: the database answers and has every migration of this code, and the
    broker delivers a round trip, each within the timeout."""
    readiness = cast(Readiness, connection.app.state.readiness)
    report = await readiness.report()
    if report.status != "ready":
        return JSONResponse(report.model_dump(), status_code=503)
    return report
