"""Index changes for migrations that keep a live PostgreSQL database writable.

A plain CREATE INDEX holds a SHARE lock on its table until the build ends: every insert, update
and delete waits (at 10,000,000 users 0012's build alone took 116 s, every run report of the
workers stuck behind it), and a plain DROP INDEX waits for ACCESS EXCLUSIVE,
queueing every read behind it. CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead, which no read
or write conflicts with; it cannot run inside a transaction, so these run in Alembic's autocommit
block (the migration's earlier statements commit first). A build that fails or is interrupted
leaves an INVALID index under its name: each build drops that name first, so running the upgrade
again starts it over.

SQLite has one writer and no CONCURRENTLY: the same statements, plain, in the migration's
transaction. tests/db/test_online_indexes.py holds every migration to this.
"""

from __future__ import annotations

from alembic import op


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _definition(table: str, columns: str, using: str, include: str, where: str) -> str:
    method = f" USING {using}" if using else ""
    covering = f" INCLUDE ({include})" if include else ""
    partial = f" WHERE {where}" if where else ""
    return f"ON {table}{method} ({columns}){covering}{partial}"


def create_index(
    name: str, table: str, columns: str, *, using: str = "", include: str = "", where: str = ""
) -> None:
    """CREATE INDEX `name` ON `table` [USING `using`] (`columns`) [INCLUDE] [WHERE]."""
    definition = _definition(table, columns, using, include, where)
    if not _postgres():
        op.execute(f"CREATE INDEX {name} {definition}")
        return
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.execute(f"CREATE INDEX CONCURRENTLY {name} {definition}")


def drop_index(name: str) -> None:
    if not _postgres():
        op.execute(f"DROP INDEX IF EXISTS {name}")
        return
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def replace_index(
    name: str, table: str, columns: str, *, using: str = "", include: str = "", where: str = ""
) -> None:
    """Index `name` gets a new definition. On PostgreSQL the new one is built beside the old
    (queries keep an index meanwhile), then takes its name."""
    if not _postgres():
        drop_index(name)
        create_index(name, table, columns, using=using, include=include, where=where)
        return
    building = f"{name}_next"
    create_index(building, table, columns, using=using, include=include, where=where)
    drop_index(name)
    # Renaming an index takes SHARE UPDATE EXCLUSIVE on PostgreSQL 12+: no read or write waits.
    op.execute(f"ALTER INDEX {building} RENAME TO {name}")
