"""PostgreSQL's email search reads one pg_trgm index of both emails (migration 0012): the
search's condition is the index's expression, so a search is one GIN scan, not two ORed; the
migration replaces the two per-email indexes and downgrades back to them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import asyncpg

from app.reads.users import UserFilter, conditions
from app.store.engine import open_database
from app.store.migrate import alembic_config
from app.store.models import SyncUser
from tests.server import empty_database

ONE = "ix_sync_users_emails_trgm"
PER_EMAIL = {"ix_sync_users_email_trgm", "ix_sync_users_destination_trgm"}


@pytest.fixture
def url() -> Iterator[str]:
    with empty_database("postgres") as found:
        yield found


async def _trigram_indexes(url: str) -> set[str]:
    db = open_database(url)
    try:
        async with db.read() as session:
            rows = await session.execute(
                text(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'sync_users'"
                    " AND indexdef LIKE '%gin_trgm_ops%'"
                )
            )
            return {name for (name,) in rows}
    finally:
        await db.dispose()


async def _plan(url: str, term: str) -> str:
    """The plan of app/reads' search condition alone (without the tenant's, which another
    index could serve), with its value (a custom plan)."""
    search = conditions(1, "postgresql", UserFilter(email_contains=term))[-1]
    statement = (
        select(func.count())
        .select_from(SyncUser)
        .where(search)
        .compile(dialect=asyncpg.dialect(), compile_kwargs={"literal_binds": True})
    )
    db = open_database(url)
    try:
        async with db.read() as session:
            # 5,000 users are cheap to read whole; ask for the plan an index gives at scale.
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            rows = await session.execute(text(f"EXPLAIN {statement}"))
            return "\n".join(line for (line,) in rows)
    finally:
        await db.dispose()


async def _users(url: str, count: int) -> None:
    db = open_database(url)
    try:
        async with db.write() as session:
            await session.execute(
                text("INSERT INTO tenants (id, name, created_at) VALUES (1, 't', 0)")
            )
            await session.execute(
                text(
                    "INSERT INTO sync_users (tenant_id, email, destination_email, status,"
                    " latest_sort, sync_requested, unresolved_failure_count, version, created_at)"
                    " SELECT 1, 'user' || n || '@source.example', 'u' || n || '@dest.example',"
                    " 'NEVER_SYNCED', 0, false, 0, 1, 0 FROM generate_series(1, :count) AS n"
                ),
                {"count": count},
            )
        async with db.write_engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            # Moves the GIN index's pending entries into it, as autovacuum would.
            await conn.exec_driver_sql("VACUUM ANALYZE sync_users")
    finally:
        await db.dispose()


async def test_a_search_is_one_scan_of_one_index(url: str) -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    assert await _trigram_indexes(url) == {ONE}
    await _users(url, 5000)
    plan = await _plan(url, "user1234@")
    assert f"Bitmap Index Scan on {ONE}" in plan, plan
    assert plan.count("Bitmap Index Scan") == 1 and "BitmapOr" not in plan, plan
    # A term with the separator matches nobody, without reading the table.
    assert "One-Time Filter: false" in await _plan(url, "example\nalice")


async def test_it_downgrades_to_an_index_per_email(url: str) -> None:
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.downgrade, config, "0011")
    assert await _trigram_indexes(url) == PER_EMAIL
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await _trigram_indexes(url) == {ONE}
