"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["healthy"] = Field(description="Always `healthy` while the process serves.")


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process is up and its event loop answers."""
    return Health(status="healthy")


@router.get("/live", response_model=Health)
async def live() -> Health:
    """Liveness, under the name Kubernetes probes use."""
    return Health(status="healthy")
