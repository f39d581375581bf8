"""Alembic, driven from code: `townsquare migrate` and the embedded default's start-up."""

from __future__ import annotations

import functools
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

SCRIPT_LOCATION = str(files("townsquare") / "migrations")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    # Date-named revision files, so the folder lists in the order they were written.
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s",
    )
    # `%` is alembic's interpolation character; a password may contain one.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _upgrade_on(connection: Connection, database_url: str, revision: str) -> None:
    config = alembic_config(database_url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision` on a connection of the running engine."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_on, engine.url.render_as_string(False), revision)


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def code_heads() -> frozenset[str]:
    """The revisions this code's migrations end at."""
    return frozenset(_script().get_heads())


def _database_heads(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


async def schema_lag(engine: AsyncEngine) -> str | None:
    """What the database lacks of the code's migrations, or None when it has them all.

    A database at a revision this code does not know was migrated by newer code (a
    rolling deployment): that is not a lag, the older code runs on it.
    """
    async with engine.connect() as connection:
        current = await connection.run_sync(_database_heads)
    wanted = code_heads()
    if current == wanted:
        return None
    if not current:
        return f"not migrated (the code needs {', '.join(sorted(wanted))})"
    known = {revision.revision for revision in _script().walk_revisions()}
    if not current <= known:
        return None
    return f"behind: at {', '.join(sorted(current))}, the code needs {', '.join(sorted(wanted))}"
