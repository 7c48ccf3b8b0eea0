"""Loading many rows at once (the seed): secondary indexes dropped for the load and made again
after it from their own definitions, so the schema ends exactly as the migrations made it.

Building an index from sorted rows once is several times cheaper than a million random inserts
into each of ten indexes (and SQLite's FTS5 trigram index, kept by a trigger, most of all).
Worth it only when the load is big next to the table: the caller decides (worth_deferring).
Everything runs in the caller's one transaction: a failed load leaves the schema as it was, and
readers meanwhile see the old rows and indexes (SQLite WAL; PostgreSQL blocks them instead,
as DROP INDEX locks the table)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from itertools import islice

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
SEARCH_AUTOMERGE = f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rank) VALUES ('automerge', ?)"
# A JSON array of [id, email, destination_email] arrays, in one statement (SearchBuild).
SEARCH_INSERT = (
    f"INSERT INTO {SEARCH_TABLE}(rowid, email, destination_email) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]') FROM json_each(?)"
)
SEARCH_BATCH = 20_000
SEARCH_SHADOWS = ("data", "idx", "docsize", "config")  # content='sync_users': no _content
EVERY_EMAIL = "SELECT id, email, destination_email FROM sync_users ORDER BY id"


def worth_deferring(new_rows: int, existing_rows: int) -> bool:
    """Rebuild the indexes when the load at least doubles the table."""
    return new_rows > 0 and new_rows >= existing_rows


@contextmanager
def sqlite_load(raw: sqlite3.Connection, defer_indexes: bool) -> Iterator[SearchBuild | None]:
    """Pragmas for a load on this connection (restored after), and with defer_indexes the
    tables' secondary indexes and the search and revision insert triggers dropped, then made
    again, and every tenant's emails revision bumped. Then the block gets a SearchBuild to hand
    the new users to: the search index is made from them (and the users already there) on
    another thread and copied in at the end."""
    settings = {
        name: raw.execute(f"PRAGMA {name}").fetchone()[0] for name in ("cache_size", "threads")
    }
    raw.execute(f"PRAGMA cache_size=-{SQLITE_LOAD_CACHE_KIB}")
    raw.execute(f"PRAGMA threads={SQLITE_SORT_THREADS}")
    # synchronous stays NORMAL (it cannot change inside a transaction): in WAL mode a commit
    # does not sync, only the checkpoint after it does, once.
    try:
        if not defer_indexes:
            yield None
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
        with SearchBuild(raw) as search:
            search.add(raw.execute(EVERY_EMAIL).fetchall())
            yield search
            search.finish()  # its last merge runs beside the index builds
            for _, sql in indexes:
                raw.execute(sql)
            search.copy_into(raw)
        for name, sql in triggers:
            raw.execute(sql)
            if name == REVISION_INSERT_TRIGGER:
                raw.execute(BUMP_EVERY_TENANT)
    finally:
        for name, value in settings.items():
            raw.execute(f"PRAGMA {name}={value}")


class SearchBuild:
    """SQLite's trigram search index made apart: a copy of its FTS5 table in an in-memory
    database on a thread of its own, fed the users in id order while the load writes them,
    then merged into one segment and its shadow tables copied over the real ones. The same
    entries the trigger or a 'rebuild' makes (tests/demo/test_seed_bulk.py), in one segment;
    only that segment's id differs from a 'rebuild'. At a million users 'rebuild' and
    'optimize' took 29 s of CPU on the writer after the load (profiled at load 7); built
    apart, 8 s of CPU on the other core while the load runs.

    Each batch goes in as one statement over a JSON array (json_each), not executemany: the
    sqlite3 module gives up the GIL around each row's step and takes it back for the next
    row's values, so two threads each inserting row by row wait for each other at every row
    (a million users: the load's own inserts took 13.7 s instead of 5.0). One statement runs
    its whole batch without the GIL."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        (create,) = raw.execute(
            "SELECT sql FROM sqlite_master WHERE name = ?", (SEARCH_TABLE,)
        ).fetchone()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="search-build")
        self._done: list[Future[None]] = []
        self._conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._submit(self._begin, create)

    def __enter__(self) -> SearchBuild:
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)
        self._conn.close()

    def add(self, users: Iterable[tuple[int, str, str]]) -> None:
        """(id, email, destination_email) of users after those added before."""
        self._check()
        rows = iter(users)
        while batch := list(islice(rows, SEARCH_BATCH)):
            self._submit(self._insert, json.dumps(batch))

    def finish(self) -> None:
        self._submit(self._optimize)

    def copy_into(self, raw: sqlite3.Connection) -> None:
        """Waits for the build, then replaces the shadow tables' rows with it (in the caller's
        transaction) and makes this connection's FTS5 table forget what it read of them."""
        for future in self._done:
            future.result()
        for suffix in SEARCH_SHADOWS:
            shadow = f"{SEARCH_TABLE}_{suffix}"
            rows = self._conn.execute(f"SELECT * FROM {shadow}")
            width = len(rows.description)
            raw.execute(f"DELETE FROM {shadow}")
            raw.executemany(f"INSERT INTO {shadow} VALUES ({', '.join('?' * width)})", rows)
        # FTS5 keeps the index's structure record per connection until another connection
        # commits; a rollback to a savepoint drops it, so this connection's next use reads
        # the new one. (The tests pass without it too: something else made FTS5 read it again
        # there, which this does not rely on.)
        raw.execute("SAVEPOINT search_build")
        raw.execute(SEARCH_AUTOMERGE, (FTS5_AUTOMERGE,))
        raw.execute("ROLLBACK TO search_build")
        raw.execute("RELEASE search_build")

    def _submit(self, fn: Callable[..., None], *args: object) -> None:
        self._done.append(self._thread.submit(fn, *args))

    def _check(self) -> None:
        """Raises a failure of the build so far, rather than at the end."""
        for future in [f for f in self._done if f.done()]:
            future.result()
            self._done.remove(future)

    def _begin(self, create: str) -> None:
        self._conn.execute(create)
        self._conn.execute("BEGIN")
        # No merging of segments while it grows (a third less CPU), one merge at the end.
        self._conn.execute(SEARCH_AUTOMERGE, (0,))

    def _insert(self, users: str) -> None:
        # Not execute itself: its cursor, the future's result, would be freed on the caller's
        # thread, resetting the statement the next insert is running on this one.
        self._conn.execute(SEARCH_INSERT, (users,))

    def _optimize(self) -> None:
        self._conn.execute(f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}) VALUES ('optimize')")
        self._conn.execute(SEARCH_AUTOMERGE, (FTS5_AUTOMERGE,))
        self._conn.execute("COMMIT")


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
