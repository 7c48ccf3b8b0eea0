"""Loading many rows at once (the seed): secondary indexes dropped for the load and made again
after it from their own definitions, so the schema ends exactly as the migrations made it.

Building an index from sorted rows once is several times cheaper than a million random inserts
into each of ten indexes (and SQLite's FTS5 trigram index, kept by a trigger, most of all).
Worth it only when the load is big next to the table: the caller decides (worth_deferring).
Everything runs in the caller's one transaction: a failed load leaves the schema as it was, and
readers meanwhile see the old rows and indexes (SQLite WAL; PostgreSQL blocks them instead,
as DROP INDEX locks the table)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg

TABLES = ("sync_users", "sync_runs", "failed_items")
# SQLite: the FTS5 trigram table over both emails, kept by this insert trigger (migration 0001).
SEARCH_TABLE = "sync_users_search"
SEARCH_INSERT_TRIGGER = "sync_users_search_ai"
# Each tenant's emails revision, bumped per inserted row by this trigger (migration 0008): for a
# bulk load dropped like the search trigger, and every tenant bumped once after it instead.
REVISION_INSERT_TRIGGER = "sync_users_revision_ai"
BUMP_EVERY_TENANT = (
    "INSERT INTO search_revisions (tenant_id, revision) "
    "SELECT id, random() & 4611686018427387903 FROM tenants WHERE true "
    "ON CONFLICT (tenant_id) DO UPDATE SET revision = revision + 1"
)
SQLITE_LOAD_CACHE_KIB = 1024 * 1024  # page cache for the load and the index builds
SQLITE_SORT_THREADS = 2  # CREATE INDEX sorts with helper threads when cores are free
FTS5_AUTOMERGE = 4  # FTS5's default, which the migrations leave as it is


def worth_deferring(new_rows: int, existing_rows: int) -> bool:
    """Rebuild the indexes when the load at least doubles the table."""
    return new_rows > 0 and new_rows >= existing_rows


@contextmanager
def sqlite_load(raw: sqlite3.Connection, defer_indexes: bool) -> Iterator[None]:
    """Pragmas for a load on this connection (restored after), and with defer_indexes the
    tables' secondary indexes and the search and revision insert triggers dropped, then made
    again, the search index rebuilt once (its 'rebuild' reads every row of sync_users) and every
    tenant's emails revision bumped."""
    settings = {
        name: raw.execute(f"PRAGMA {name}").fetchone()[0] for name in ("cache_size", "threads")
    }
    raw.execute(f"PRAGMA cache_size=-{SQLITE_LOAD_CACHE_KIB}")
    raw.execute(f"PRAGMA threads={SQLITE_SORT_THREADS}")
    # synchronous stays NORMAL (it cannot change inside a transaction): in WAL mode a commit
    # does not sync, only the checkpoint after it does, once.
    try:
        if not defer_indexes:
            yield
            return
        marks = ",".join("?" * len(TABLES))
        indexes = raw.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({marks}) ORDER BY rowid",
            TABLES,
        ).fetchall()
        triggers = raw.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN (?, ?) "
            "ORDER BY rowid",
            (SEARCH_INSERT_TRIGGER, REVISION_INSERT_TRIGGER),
        ).fetchall()
        for name, _ in indexes:
            raw.execute(f'DROP INDEX "{name}"')
        for name, _ in triggers:
            raw.execute(f'DROP TRIGGER "{name}"')
        yield
        for _, sql in indexes:
            raw.execute(sql)
        for name, sql in triggers:
            raw.execute(sql)
            if name == SEARCH_INSERT_TRIGGER:
                _rebuild_search(raw)
            else:
                raw.execute(BUMP_EVERY_TENANT)
    finally:
        for name, value in settings.items():
            raw.execute(f"PRAGMA {name}={value}")


def _rebuild_search(raw: sqlite3.Connection) -> None:
    """The trigram index from every row, without merging segments while it grows (a third
    less CPU at a million users), then merged into one (faster searches than the default's
    many segments). At a million users: 'rebuild' alone 21.3 s CPU, this 17.2 s."""
    command = f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rank) VALUES (?, ?)"
    raw.execute(command, ("automerge", 0))
    raw.execute(f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}) VALUES ('rebuild')")
    raw.execute(f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}) VALUES ('optimize')")
    raw.execute(command, ("automerge", FTS5_AUTOMERGE))


@asynccontextmanager
async def postgres_load(conn: asyncpg.Connection, defer_indexes: bool) -> AsyncIterator[None]:
    """In a transaction: memory for the index builds, and with defer_indexes the tables'
    indexes that back no constraint dropped, then made again from their definitions."""
    await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    if not defer_indexes:
        yield
        return
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS sql "
        "FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
        "WHERE i.indrelid = ANY($1::text[]::regclass[]) AND c.oid IS NULL ORDER BY i.indexrelid",
        list(TABLES),
    )
    for row in indexes:
        await conn.execute(f"DROP INDEX {row['name']}")
    yield
    for row in indexes:
        await conn.execute(row["sql"])
