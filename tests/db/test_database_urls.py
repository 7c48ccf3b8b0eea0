"""Database URLs as operators write them: libpq's `sslmode` (what managed PostgreSQL services
hand out) is asyncpg's `ssl`. asyncpg refused the unknown keyword, so every command and
`serve` died with a TypeError on such a URL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.store.engine import normalize_url, open_database
from tests.services import postgres_admin_url


def test_sslmode_becomes_asyncpgs_ssl() -> None:
    url = "postgresql://app:p%40ss@db.example:5432/prod?sslmode=verify-full&application_name=x"
    assert normalize_url(url) == (
        "postgresql+asyncpg://app:p%40ss@db.example:5432/prod?application_name=x&ssl=verify-full"
    )
    # An explicit ssl wins; other URLs are left as they are.
    assert normalize_url("postgres://u@h/d?sslmode=require&ssl=disable").endswith(
        "?sslmode=require&ssl=disable"
    )
    assert normalize_url("sqlite:///x.db?sslmode=1") == "sqlite+aiosqlite:///x.db?sslmode=1"


async def test_sslmode_reaches_the_connection() -> None:
    base = postgres_admin_url().replace("postgresql://", "postgres://")
    db = open_database(f"{base}?sslmode=disable", timeout=10)
    try:
        async with db.read() as session:
            in_use = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            assert await session.scalar(text(in_use)) is False
    finally:
        await db.dispose()
    # `require` either gets TLS or is refused for the want of it (this machine's PostgreSQL
    # offers none), never for the URL.
    db = open_database(f"{base}?sslmode=require", timeout=10)
    try:
        async with db.read() as session:
            assert await session.scalar(text(in_use)) is True
    except Exception as error:
        assert not isinstance(error, TypeError), error
        assert "SSL" in str(error), error
    finally:
        await db.dispose()


async def test_a_bulk_load_times_connecting_but_not_its_statements() -> None:
    """`syncstatus seed` at a million users on PostgreSQL rebuilds indexes for longer than
    SYNCSTATUS_DATABASE_TIMEOUT_SECONDS: it ended with "cannot reach the database"."""
    slow = text("SELECT pg_sleep(1.5)")
    timed = open_database(postgres_admin_url(), timeout=1)
    try:
        async with timed.read() as session:
            with pytest.raises(TimeoutError):
                await session.execute(slow)
    finally:
        await timed.dispose()
    bulk = open_database(postgres_admin_url(), timeout=1, bulk=True)
    try:
        async with bulk.read() as session:
            await session.execute(slow)
    finally:
        await bulk.dispose()
    # Connecting is still timed: `seed` against a silent server ends (tests/ops).
