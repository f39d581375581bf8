from __future__ import annotations

from datetime import UTC, datetime
from typing import cast
from urllib.parse import urlsplit

from fastapi import APIRouter
from starlette.requests import HTTPConnection

from townsquare.admin import service as admin_service
from townsquare.admin.schemas import AdminStats, BrokerHealth, Totals
from townsquare.auth.dependencies import AdminUser
from townsquare.auth.exceptions import AdminRequired, InvalidToken
from townsquare.config import Settings
from townsquare.platform.dependencies import SessionDep
from townsquare.platform.errors import responses
from townsquare.platform.instances import InstanceRegistry, InstancesUnavailable

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/stats", response_model=AdminStats, responses=responses(InvalidToken, AdminRequired))
async def read_stats(
    _admin: AdminUser, session: SessionDep, connection: HTTPConnection
) -> AdminStats:
    """Admins only: the deployment's live figures (instances, sockets, rooms, message
    rate, broker health), as the admin page shows them. Instance figures are at most a
    report interval (2 s) old."""
    registry = cast(InstanceRegistry, connection.app.state.instances)
    redis_url = cast(Settings, connection.app.state.settings).redis_url
    try:
        instances = await registry.reports()
        known = True
    except InstancesUnavailable:
        instances, known = [], False
    stored = await admin_service.stored_counts(session)
    return AdminStats(
        generated_at=datetime.now(UTC),
        instances=instances,
        instances_known=known,
        broker=BrokerHealth(
            backend="memory" if urlsplit(redis_url or "memory://").scheme == "memory" else "redis",
            healthy=registry.broker_healthy(),
        ),
        totals=Totals(
            users=stored.users,
            rooms=stored.rooms,
            messages=stored.messages,
            sockets=sum(report.sockets for report in instances),
            messages_per_second=round(sum(r.messages_per_second for r in instances), 2),
        ),
    )
