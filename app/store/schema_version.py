"""Is the database's schema at the newest migration? `serve` refuses to start otherwise (on
PostgreSQL; SQLite migrates itself), and /readyz reports it."""

from __future__ import annotations

from functools import cache

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from app.store.engine import Database
from app.store.migrate import alembic_config


@cache
def head_revisions() -> frozenset[str]:
    """The newest revision(s) of the migrations shipped with this code."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(script.get_heads())


def _current(connection: Connection) -> frozenset[str]:
    # Read directly: Alembic's MigrationContext logs two lines each time (a probe is frequent).
    if not inspect(connection).has_table("alembic_version"):
        return frozenset()
    return frozenset(connection.scalars(text("SELECT version_num FROM alembic_version")))


async def current_revisions(db: Database) -> frozenset[str]:
    """The revision(s) the database is at (empty: never migrated)."""
    async with db.read_engine.connect() as connection:
        return await connection.run_sync(_current)


async def schema_problem(db: Database) -> str | None:
    """None when the schema is at the newest migration, else what is wrong and what to do."""
    current = await current_revisions(db)
    heads = head_revisions()
    if current == heads:
        return None
    found = ", ".join(sorted(current)) or "none (never migrated)"
    return (
        f"the database schema is at revision {found}, the newest is {', '.join(sorted(heads))}: "
        "run `syncstatus db upgrade` first"
    )
