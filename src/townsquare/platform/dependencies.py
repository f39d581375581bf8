"""Dependencies every feature uses: the settings and a database session per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from townsquare.config import Settings
from townsquare.platform.database import Database
from townsquare.platform.jobs import Jobs
from townsquare.platform.ratelimit import RateLimiter


def get_settings(connection: HTTPConnection) -> Settings:
    return cast(Settings, connection.app.state.settings)


def get_database(connection: HTTPConnection) -> Database:
    return cast(Database, connection.app.state.database)


def get_jobs(connection: HTTPConnection) -> Jobs:
    return cast(Jobs, connection.app.state.jobs)


def get_rate_limiter(connection: HTTPConnection) -> RateLimiter:
    return cast(RateLimiter, connection.app.state.rate_limiter)


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncSession]:
    async with database.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
JobsDep = Annotated[Jobs, Depends(get_jobs)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
