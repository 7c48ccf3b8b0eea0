"""The seed's bulk load, on SQLite and PostgreSQL: a load that at least doubles the tables drops
their indexes (and SQLite's search trigger) and builds them after it, a smaller one keeps them.
Either way the schema ends exactly as the migrations made it, the trigram search finds every
seeded user, and the counters equal a recount."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, or_, select, text
from sqlalchemy.engine import make_url

from app.demo.seed import seed
from app.reads.user_counts import fts_matches
from app.store import bulk_load, counters
from app.store.engine import Database
from app.store.models import (
    ChangeBucket,
    FailureReason,
    LatestCount,
    Policy,
    StatusCount,
    SyncUser,
    TrendBucket,
)
from tests.api_tests.triage_recount import recount
from tests.server import opened, throwaway_database

SQLITE_SCHEMA = ("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",)
POSTGRES_SCHEMA = (
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
    "ORDER BY indexname",
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = 'public'::regnamespace ORDER BY conname",
    "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 2",
    "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid OR NOT indisready",
)
TERMS = ("garcia", "ria.ch", "a.sm", "onmicrosoft", "@bulk.com")
TREND_COLUMNS = {
    "runsStarted": "runs_started",
    "runsSucceeded": "runs_succeeded",
    "runsCompletedWithWarning": "runs_completed_with_warning",
    "runsFailed": "runs_failed",
}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with throwaway_database(request.param) as url:
        yield url


async def _schema(db: Database) -> list[Any]:
    queries = SQLITE_SCHEMA if db.dialect == "sqlite" else POSTGRES_SCHEMA
    async with db.read() as session:
        return [[tuple(row) for row in (await session.execute(text(q))).all()] for q in queries]


async def _search_matches_like(db: Database) -> None:
    """SQLite's trigram index (rebuilt after a bulk load, kept by its trigger otherwise)."""
    if db.dialect != "sqlite":
        return
    async with db.read() as session:
        for term in TERMS:
            pattern = f"%{term}%"
            like = await session.scalar(
                select(func.count()).where(
                    or_(SyncUser.email.like(pattern), SyncUser.destination_email.like(pattern))
                )
            )
            assert like, term
            assert await fts_matches(session, term) == like, term
        check = (
            "INSERT INTO sync_users_search(sync_users_search, rank) VALUES ('integrity-check', 1)"
        )
        await session.execute(text(check))


async def _counters(db: Database, tenant_id: int) -> list[Any]:
    async with db.read() as session:
        found: list[list[Any]] = []
        for model in (StatusCount, LatestCount):
            rows = await session.execute(
                select(model).where(model.tenant_id == tenant_id, model.count != 0)
            )
            found.append(sorted(repr(_columns(row)) for row in rows.scalars()))
        policies = await session.execute(
            select(Policy.id, Policy.user_count).where(Policy.tenant_id == tenant_id)
        )
        found.append(sorted(policies.all()))
        return found


def _columns(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


async def _check_counters(db: Database, tenant_id: int, tenant: str) -> None:
    kept = await _counters(db, tenant_id)
    assert kept[0] and kept[1]
    async with db.write() as session:
        await counters.recount(session, tenant_id)
    assert await _counters(db, tenant_id) == kept
    expected = await recount(db.url, tenant)
    assert expected["mismatched_users"] == []
    async with db.read() as session:
        reasons = await session.execute(
            select(FailureReason).where(FailureReason.tenant_id == tenant_id)
        )
        found = {
            r.error_code: (r.user_count, r.sample_message, r.last_seen_at)
            for r in reasons.scalars()
        }
        assert found == expected["reasons"]
        buckets = await session.execute(
            select(TrendBucket).where(TrendBucket.tenant_id == tenant_id)
        )
        trends = {b.hour: b for b in buckets.scalars()}
        for hour, columns in expected["hours"].items():
            for key, column in TREND_COLUMNS.items():
                assert getattr(trends[hour], column) == columns.get(key, 0), (hour, key)
        changes = await session.scalar(
            select(func.sum(ChangeBucket.changes)).where(ChangeBucket.tenant_id == tenant_id)
        )
        assert changes and changes == sum(b.changes for b in trends.values())


async def test_bulk_and_incremental_seeds_keep_schema_search_and_counters(db: Database) -> None:
    assert bulk_load.worth_deferring(300, 0) and bulk_load.worth_deferring(500, 400)
    assert not bulk_load.worth_deferring(100, 300)
    migrated = await _schema(db)
    tenant_id = await seed(db, "Bulk", 300)  # an empty file: indexes built after the load
    assert await _schema(db) == migrated
    await _search_matches_like(db)
    await _check_counters(db, tenant_id, "Bulk")
    again = await seed(db, "Bulk", 100)  # fewer than there are: the indexes stay
    assert again == tenant_id
    assert await _schema(db) == migrated
    await _search_matches_like(db)
    await _check_counters(db, tenant_id, "Bulk")
    other = await seed(db, "Other", 500)  # doubles the file again, beside a tenant
    assert await _schema(db) == migrated
    await _search_matches_like(db)
    await _check_counters(db, other, "Other")
    # The search index copied in under the writer's connection, which had used it before (the
    # second seed's trigger): that connection's next trigger inserts must extend it.
    assert await seed(db, "Other", 200) == other
    await _search_matches_like(db)
    await _check_counters(db, other, "Other")
    await _check_counters(db, tenant_id, "Bulk")
    async with db.read() as session:
        emails = await session.scalars(
            select(SyncUser.email).where(SyncUser.tenant_id == tenant_id)
        )
        assert len(set(emails.all())) == 400  # the second seed numbered after the first


# Every table but the search index's (compared below) and search_revisions (bumped once per
# tenant by a bulk load, per row by the trigger: a cache key, compared only for presence).
TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
    "AND name NOT LIKE 'sync_users_search%' AND name != 'search_revisions' ORDER BY name"
)


def _content(path: str) -> dict[str, Any]:
    """Every row of every table, and every entry of the search index (the trigger leaves it in
    several segments, a bulk load in one): term, row, column and offset of each trigram, and
    each row's size and the averages."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        found: dict[str, Any] = {}
        for (table,) in conn.execute(TABLES).fetchall():
            found[table] = sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
        found["search_revisions"] = conn.execute(
            "SELECT tenant_id FROM search_revisions ORDER BY 1"
        ).fetchall()
        conn.execute(
            "CREATE VIRTUAL TABLE temp.search_terms "
            "USING fts5vocab(main, sync_users_search, instance)"
        )
        found["search index"] = conn.execute(
            "SELECT term, doc, col, offset FROM search_terms ORDER BY 1, 2, 3, 4"
        ).fetchall()
        found["search averages"] = conn.execute(
            "SELECT block FROM sync_users_search_data WHERE id = 1"
        ).fetchall()
        found["search sizes"] = conn.execute(
            "SELECT * FROM sync_users_search_docsize ORDER BY id"
        ).fetchall()
        # A bulk load sets automerge back to FTS5's default, 4, which the trigger never sets.
        found["search config"] = conn.execute(
            "SELECT * FROM sync_users_search_config WHERE (k, v) != ('automerge', 4) ORDER BY k"
        ).fetchall()
        return found
    finally:
        conn.close()


async def test_a_bulk_seed_equals_the_row_by_row_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """5,000 users into an empty SQLite file: with the indexes dropped and the search index
    built apart, then each row through every index and trigger; the same rows, counters and
    search index."""
    for clock in ("app.demo.seed.now_micros", "app.auth.tokens.now_micros"):
        monkeypatch.setattr(clock, lambda: 1_790_000_000_000_000)
    contents = []
    for bulk in (True, False):
        monkeypatch.setattr(bulk_load, "worth_deferring", lambda new, old, bulk=bulk: bulk)
        with throwaway_database("sqlite") as url:
            async with opened(url) as db:
                await seed(db, "Bulk", 5_000)
                await _search_matches_like(db)
            path = make_url(url).database
            assert path
            contents.append(_content(path))
    bulk_content, row_by_row = contents
    assert bulk_content.keys() == row_by_row.keys()
    for table, rows in row_by_row.items():
        assert bulk_content[table] == rows, table
    assert len(row_by_row["sync_users"]) == 5_000
    assert len(row_by_row["search index"]) > 100_000


async def test_a_bulk_seed_leaves_the_wal_truncated_while_the_file_is_open() -> None:
    """The load went through the WAL (it grows to the size of the load); the seed copies it
    into the file and truncates it while its own connections stay open, as a server's would:
    readers then read the file, not a WAL as big as the load."""
    with throwaway_database("sqlite") as url:
        path = make_url(url).database
        assert path
        async with opened(url) as db:
            await seed(db, "Bulk", 3_000)
            assert _wal_size(path) == 0  # there (the pool's connections keep it), and empty


def _wal_size(path: str) -> int | None:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else None
