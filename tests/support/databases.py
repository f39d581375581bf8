"""Throwaway databases for a test run: one SQLite file, one PostgreSQL database.

Each run creates its own PostgreSQL database (and drops it after), so several runs
on one machine never see each other's rows.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from townsquare.models import Base
from townsquare.platform import migrations
from townsquare.platform.database import create_database

DEADLOCK_DETECTED = "40P01"

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def missing_service(what: str, error: BaseException) -> None:
    """A service the suite needs is down: a failure in CI, a skip on a laptop."""
    message = f"{what} is not reachable ({error!r})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run every backend", pytrace=False)
    pytest.skip(message)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_postgres_database() -> str:
    admin_url = POSTGRES_URL
    name = f"townsquare_test_{uuid.uuid4().hex[:12]}"
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        missing_service(f"PostgreSQL at {make_url(admin_url).host}", exc)
        raise
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def migrate(url: str) -> None:
    database = create_database(url)
    try:
        await migrations.upgrade(database.engine)
    finally:
        await database.dispose()


# A TRUNCATE that PostgreSQL chose as a deadlock's victim is tried again this often.
TRUNCATE_ATTEMPTS = 5


async def empty_tables(engine: AsyncEngine) -> None:
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    if engine.dialect.name == "postgresql":
        # The app may still run a job (the periodic purge runs once at start) whose
        # row locks, taken table by table, can deadlock with TRUNCATE's table locks;
        # PostgreSQL then aborts one of the two, and the purge commits per run.
        for attempt in range(TRUNCATE_ATTEMPTS):
            try:
                async with engine.begin() as connection:
                    await connection.execute(
                        text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
                    )
                return
            except DBAPIError as exc:
                deadlock = getattr(exc.orig, "sqlstate", None) == DEADLOCK_DETECTED
                if not deadlock or attempt == TRUNCATE_ATTEMPTS - 1:
                    raise
    async with engine.begin() as connection:
        for table in tables:
            await connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608
        has_sequences = await connection.execute(
            text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
        )
        if has_sequences.first():
            await connection.execute(text("DELETE FROM sqlite_sequence"))
