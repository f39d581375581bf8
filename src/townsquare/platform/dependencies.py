"""Dependencies every feature uses: the settings and the database, per request.

All are `async def`: FastAPI runs a plain `def` dependency in the thread pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.requests import HTTPConnection

from townsquare.config import Settings
from townsquare.platform.database import Database


async def get_settings(connection: HTTPConnection) -> Settings:
    return cast(Settings, connection.app.state.settings)


async def get_database(connection: HTTPConnection) -> Database:
    return cast(Database, connection.app.state.database)


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncSession]:
    async with database.sessions() as session:
        yield session


async def get_reader(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncConnection]:
    async with database.reader() as connection:
        yield connection


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
# An autocommit connection for a route whose reads are each one statement (see
# `Database.read_engine`): one round trip per read, no BEGIN or ROLLBACK.
ReaderDep = Annotated[AsyncConnection, Depends(get_reader)]
