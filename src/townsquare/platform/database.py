"""Async engine, sessions and the declarative base shared by every feature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import DateTime, MetaData, Select, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from townsquare.platform.leases import LeasedConnections
from townsquare.platform.pool import FairAsyncQueuePool

# Stable constraint names, so migrations can drop and alter what they created.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, also on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# What a checkout or a statement raises when the database cannot serve now: the pool
# stayed busy for its timeout, or the server is unreachable or refusing connections.
UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.TimeoutError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # The same pool in autocommit mode, for reads of one statement: no BEGIN before
    # the statement and no ROLLBACK when the connection goes back to the pool, so a
    # one-row read is one round trip. Never for a read that needs a consistent
    # snapshot over several statements, nor for a write.
    read_engine: AsyncEngine
    # PostgreSQL: pool connections kept borrowed between `DirectRead` statements.
    leases: LeasedConnections | None = None

    def reader(self) -> AsyncConnection:
        """`async with database.reader() as connection:` one autocommit connection."""
        return self.read_engine.connect()

    async def dispose(self) -> None:
        if self.leases is not None:
            await self.leases.close()
        await self.engine.dispose()


class DirectRead:
    """A SELECT run as cheaply as the driver allows: for the reads on every request
    (one row) and for replays (many), where SQLAlchemy's execution and result machinery
    would cost more than the round trip itself.

    On PostgreSQL the statement is compiled once and sent straight through asyncpg on a
    connection borrowed from the pool (asyncpg prepares it once per connection; no
    BEGIN, no ROLLBACK); result values are asyncpg's own (timestamptz comes back aware,
    in UTC, as UTCDateTime would give it). Elsewhere it runs through Core on an
    autocommit connection.
    """

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        self._compiled: tuple[str, tuple[str, ...]] | None = None

    async def fetch(self, database: Database, **params: Any) -> Mapping[str, Any] | None:
        """The first row as a mapping of column labels, or None."""
        if database.engine.dialect.driver != "asyncpg":
            async with database.reader() as connection:
                result = await connection.execute(self.statement, params)
                return cast(Mapping[str, Any] | None, result.mappings().first())
        record = await self._run(database, "fetchrow", params)
        # A plain dict: an asyncpg Record is a mapping without attributes, which models
        # built `from_attributes` would not read.
        return None if record is None else dict(record.items())

    async def fetch_all(self, database: Database, **params: Any) -> Sequence[Sequence[Any]]:
        """Every row, as tuples in the statement's column order."""
        if database.engine.dialect.driver != "asyncpg":
            async with database.reader() as connection:
                return list((await connection.execute(self.statement, params)).all())
        return cast(Sequence[Sequence[Any]], await self._run(database, "fetch", params))

    async def _run(self, database: Database, method: str, params: Mapping[str, Any]) -> Any:
        sql, names = self._compiled or self._compile(database.engine.dialect)
        assert database.leases is not None  # every asyncpg database has them
        return await database.leases.run(method, sql, [params[name] for name in names])

    def _compile(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        compiled = self.statement.compile(dialect=dialect)
        self._compiled = compiled.string, tuple(compiled.positiontup or ())
        return self._compiled


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; busy_timeout makes a second writer
    # wait for the lock instead of failing at once; SQLite enforces foreign keys only
    # when asked.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_database(
    url: str, *, pool_size: int = 10, max_overflow: int = 0, pool_timeout: float = 5.0
) -> Database:
    """The engine and its session factory.

    PostgreSQL: a fixed pool of `pool_size` connections. No pre-ping: a checkout costs
    no round trip; a connection found dead on use fails that one statement, and
    SQLAlchemy then drops every connection the pool opened before it, so one request
    (answered 503) pays for a database restart instead of every request paying a ping.
    Overflow connections are closed when returned, so under sustained load any overflow
    means a new PostgreSQL session per burst: the default is none, and a request that
    waits `pool_timeout` seconds for a connection is answered 503 with Retry-After.
    Requests waiting for a connection are served in arrival order (platform/pool.py).
    """
    # hide_parameters: a failed statement's error (and so its log line) names the SQL but
    # not the values bound to it, which can be password hashes, tokens or message bodies.
    if url.startswith("sqlite"):
        engine = create_async_engine(url, pool_timeout=pool_timeout, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _enable_sqlite_pragmas)
    else:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_pre_ping=False,
            poolclass=FairAsyncQueuePool,
            hide_parameters=True,
        )
    return Database(
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        read_engine=engine.execution_options(isolation_level="AUTOCOMMIT"),
        leases=None if url.startswith("sqlite") else LeasedConnections(engine.sync_engine),
    )
