"""A rare email search's pages cut from its kept matches (app/reads/search_matches.py,
PostgreSQL): the same pages as the SQL path, without a trigram scan once kept, and never stale
after an email change (the list follows the emails revision, as the counts do; a cursor no
longer among the matches reads its page in SQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, update

from app.admin import user_admin
from app.reads import users as reads
from app.reads.pagination import PageArgs
from app.reads.search_cache import SearchCache
from app.store.engine import Database
from app.store.models import SyncUser
from tests.server import add_tenant, throwaway_database

TERM = "garcia"


@pytest.fixture
def database_url() -> Iterator[str]:
    with throwaway_database("postgres") as url:
        yield url


async def _read(
    db: Database, tenant: int, caches: tuple[SearchCache, SearchCache] | None, **args: Any
) -> tuple[list[str], bool, bool, list[str], int | None]:
    counts, matches = caches or (None, None)
    async with db.read() as session:
        found = await reads.user_page(
            session,
            tenant,
            reads.UserFilter(email_contains=TERM),
            "EMAIL_ASC",
            PageArgs(**args),
            search_counts=counts,
            search_matches=matches,
        )
    page = found.page
    emails = [view.email for _, view in page.items]
    cursors = [cursor for cursor, _ in page.items]
    return emails, page.has_next, page.has_previous, cursors, found.total


async def _same_as_sql(db: Database, tenant: int, caches: Any, **args: Any) -> list[str]:
    kept = await _read(db, tenant, caches, **args)
    walked = await _read(db, tenant, None, **args)
    assert kept[:4] == walked[:4], args
    return kept[3]


async def _add(db: Database, tenant: int, *names: str) -> None:
    async with db.write() as session:
        users = [(f"{n}@x.example", f"{n}@dest.example", None) for n in names]
        await user_admin.add_users(session, tenant, 0, users)


async def test_pages_from_the_kept_matches_equal_sql_and_follow_changes(db: Database) -> None:
    tenant = await add_tenant(db, "t")
    await _add(db, tenant, "b.garcia", "d.garcia", "a.garcia", "zoe", "c.garcia", "e.garcia")
    caches = (SearchCache(), SearchCache(4))

    first = await _same_as_sql(db, tenant, caches, first=2)
    second = await _same_as_sql(db, tenant, caches, first=2, after=first[-1])
    await _same_as_sql(db, tenant, caches, first=2, after=second[-1])
    await _same_as_sql(db, tenant, caches, last=2, before=second[0])
    await _same_as_sql(db, tenant, caches, last=4)
    await _same_as_sql(db, tenant, caches, first=2, after=first[0], before=second[-1])
    assert (await _read(db, tenant, caches, first=10))[4] == 5

    # Kept: a page is a primary-key read, no trigram search, and one read of the revision
    # for both the count and the matches.
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.read_engine.sync_engine, "before_cursor_execute", record)
    await _read(db, tenant, caches, first=2, after=first[-1])
    assert seen and not any("LIKE" in statement for statement in seen), seen
    assert sum("FROM search_revisions" in statement for statement in seen) == 1, seen
    event.remove(db.read_engine.sync_engine, "before_cursor_execute", record)

    # A new match that sorts first, then a listed user's email changed to match no more.
    await _add(db, tenant, "a.a.garcia")
    assert (await _read(db, tenant, caches, first=10))[0][0] == "a.a.garcia@x.example"
    async with db.write() as session:
        await session.execute(
            update(SyncUser)
            .values(email="b.smith@x.example", destination_email="b.smith@dest.example")
            .where(SyncUser.email == "b.garcia@x.example")
        )
    # `first` ends at b.garcia (a, b): that cursor is no longer among the matches.
    await _same_as_sql(db, tenant, caches, first=2, after=first[-1])
    emails, *_, total = await _read(db, tenant, caches, first=10)
    assert "b.smith@x.example" not in emails and total == 5
