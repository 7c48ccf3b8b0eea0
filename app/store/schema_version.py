"""Is the database's schema at the newest migration? `serve` refuses to start otherwise (on
PostgreSQL; SQLite migrates itself), /readyz reports it, and the CLI's commands migrate only when
it is not (upgrade_if_behind)."""

from __future__ import annotations

import asyncio
from functools import cache

from sqlalchemy import Connection, inspect, text

from app.store.engine import Database
from app.store.migrate import alembic_config, upgrade

# The newest migration's revision, known without Alembic (which reads every migration script):
# tests/unit/test_schema_head.py checks that it is Alembic's head. Update it with each migration.
HEAD_REVISION = "0012"


@cache
def head_revisions() -> frozenset[str]:
    """The newest revision(s) of the migrations shipped with this code, as Alembic finds them."""
    from alembic.script import ScriptDirectory

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


async def upgrade_if_behind(db: Database) -> None:
    """`upgrade` (Alembic) unless the database is at HEAD_REVISION already: one read of
    alembic_version instead of Alembic finding nothing to do (its import, every migration
    script and an engine of its own: about 0.5 s of CPU, most of a CLI command's start). A
    database never migrated, older or at a revision this code does not know goes to Alembic
    as before."""
    if await current_revisions(db) != {HEAD_REVISION}:
        await asyncio.to_thread(upgrade, db.url)
