"""Is the database's schema at the newest migration? `serve` refuses to start on an older one
(on PostgreSQL; SQLite migrates itself), /readyz reports it, and the CLI's commands migrate only
when it is behind (upgrade_if_behind).

A schema *ahead* of this code (a revision it does not know: the next release ran `db
upgrade`) is fine: migrations keep the previous release working, so during a rolling upgrade
the old processes stay ready and keep serving until they are replaced."""

from __future__ import annotations

import asyncio
from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from app.store.engine import Database, open_database
from app.store.migrate import alembic_config, upgrade

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

# The newest migration's revision, known without Alembic (which reads every migration script):
# tests/unit/test_schema_head.py checks that it is Alembic's head. Update it with each migration.
HEAD_REVISION = "0012"


@cache
def _scripts() -> ScriptDirectory:
    """The migrations shipped with this code, read once (Alembic reads every script)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revisions() -> frozenset[str]:
    """The newest revision(s) of the migrations shipped with this code, as Alembic finds them."""
    return frozenset(_scripts().get_heads())


def is_ahead(current: frozenset[str]) -> bool:
    """Whether the database is at a revision this code does not know (a newer release's)."""
    if not current:
        return False  # never migrated: no need to read the scripts
    return bool(current - {revision.revision for revision in _scripts().walk_revisions()})


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
    """None when the schema is at the newest migration this code knows or ahead of it, else
    what is wrong and what to do."""
    current = await current_revisions(db)
    heads = head_revisions()
    if current == heads or is_ahead(current):
        return None
    found = ", ".join(sorted(current)) or "none (never migrated)"
    return (
        f"the database schema is at revision {found}, the newest is {', '.join(sorted(heads))}: "
        "run `syncstatus db upgrade` first"
    )


async def ready_for_commands(db: Database) -> str | None:
    """Before a command (token, audit) reads or writes: SQLite migrates itself, as `serve`
    does; PostgreSQL is migrated by `syncstatus db upgrade` alone (a release's migrations may
    rewrite tables and want a quiet moment, not a token listing): what is wrong, or None."""
    if db.dialect == "sqlite":
        await upgrade_if_behind(db)
        return None
    return await schema_problem(db)


async def upgrade_if_behind(db: Database) -> None:
    """`upgrade` (Alembic) unless the database is at HEAD_REVISION already: one read of
    alembic_version instead of Alembic finding nothing to do (its import, every migration
    script and an engine of its own: about 0.5 s of CPU, most of a CLI command's start). A
    database never migrated or older goes to Alembic as before; one ahead of this code is
    left alone (Alembic cannot go from a revision it does not know)."""
    current = await current_revisions(db)
    if current != {HEAD_REVISION} and not is_ahead(current):
        await asyncio.to_thread(upgrade, db.url)


async def ahead_of_code(url: str, connect_seconds: float = 0) -> str | None:
    """What to tell `syncstatus db upgrade` of a database ahead of this code, else None."""
    db = open_database(url, timeout=connect_seconds)
    try:
        current = await current_revisions(db)
    finally:
        await db.dispose()
    if not is_ahead(current):
        return None
    return (
        f"the database is at revision {', '.join(sorted(current))}, newer than this release's "
        f"newest ({', '.join(sorted(head_revisions()))}): nothing to do"
    )
