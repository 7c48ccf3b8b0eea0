"""An email search's cached exact count (app/reads/search_cache.py) on SQLite and PostgreSQL:
served from the cache while the tenant's emails stay as they were (statuses changing, another
tenant's users added), counted again after every kind of email change (users added by the admin
path, a bulk seed, a multi-tenant INSERT, an email UPDATE, a DELETE, TRUNCATE), and always equal
to a recount of the rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text, update

from app.admin import user_admin
from app.demo.seed import seed
from app.reads import users as reads
from app.reads.pagination import PageArgs
from app.reads.search_cache import SearchCache
from app.store.engine import Database
from app.store.models import SearchRevision, SyncUser
from tests.server import add_tenant, throwaway_database

TERMS = ("garcia", "ga", "@dest", "a.g", "zz", "%")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with throwaway_database(request.param) as url:
        yield url


class Statements:
    """The statements sent to sync_users, to tell a cache hit from a count."""

    def __init__(self, db: Database) -> None:
        self.seen: list[str] = []
        self.engine = db.read_engine.sync_engine
        event.listen(self.engine, "before_cursor_execute", self.record)

    def record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(statement)

    def counted(self) -> bool:
        found = any("sync_users" in s for s in self.seen)
        self.seen.clear()
        return found


async def _add(db: Database, tenant_id: int, *locals_: str) -> None:
    async with db.write() as session:
        users = [(f"{n}@{tenant_id}.example", f"{n}@dest.example", None) for n in locals_]
        await user_admin.add_users(session, tenant_id, 0, users)


async def _recount(db: Database, tenant_id: int, term: str) -> int:
    async with db.read() as session:
        rows = await session.execute(
            select(SyncUser.email, SyncUser.destination_email).where(
                SyncUser.tenant_id == tenant_id
            )
        )
        return sum(1 for email, dest in rows if term in email or term in dest)


async def _count(db: Database, counts: SearchCache, tenant_id: int, term: str) -> int:
    async with db.read() as session:
        filt = reads.UserFilter(email_contains=term)
        return await reads.user_count(session, tenant_id, filt, counts)


async def _check(
    db: Database, counts: SearchCache, tenant_id: int, statements: Statements, *, cached: bool
) -> None:
    """Every term's count equals a recount; read from the cache (or counted) as said."""
    for term in TERMS:
        statements.counted()
        found = await _count(db, counts, tenant_id, term)
        assert statements.counted() is not cached, (term, cached)
        assert found == await _recount(db, tenant_id, term), term


async def _write(db: Database, statement: Any) -> None:
    async with db.write() as session:
        await session.execute(statement)


async def test_cached_counts_follow_every_email_change(db: Database) -> None:
    first, second = await add_tenant(db, "first"), await add_tenant(db, "second")
    await _add(db, first, "anna.garcia", "li.ga", "zoe", "a.garcia2", "omar_x")
    await _add(db, second, "maria.garcia", "ga.li")
    statements, counts = Statements(db), SearchCache()
    await _check(db, counts, first, statements, cached=False)
    await _check(db, counts, first, statements, cached=True)

    # Statuses and another tenant's emails leave the first tenant's counts where they were.
    await _write(db, update(SyncUser).values(status="FAILED").where(SyncUser.tenant_id == first))
    await _add(db, second, "pedro.garcia")
    await _check(db, counts, first, statements, cached=True)
    with pytest.raises(RuntimeError):  # a rolled-back insert changes nothing
        async with db.write() as session:
            users = [("new.garcia@x.example", "new.garcia@dest.example", None)]
            await user_admin.add_users(session, first, 0, users)
            raise RuntimeError
    await _check(db, counts, first, statements, cached=True)

    await _add(db, first, "lu.garcia")  # the admin path
    await _check(db, counts, first, statements, cached=False)
    await _check(db, counts, first, statements, cached=True)
    rows = [  # one statement, both tenants
        {
            "tenant_id": tenant,
            "email": f"{name}@{tenant}.example",
            "destination_email": f"{name}@dest.example",
            "status": "NEVER_SYNCED",
            "latest_sort": 0,
            "sync_requested": False,
            "unresolved_failure_count": 0,
            "version": 1,
            "created_at": 0,
        }
        for tenant, name in ((first, "ben.garcia"), (second, "ben.garcia"), (first, "ga.zz"))
    ]
    await _write(db, insert(SyncUser).values(rows))
    await _check(db, counts, first, statements, cached=False)
    await _check(db, counts, second, statements, cached=False)
    await _check(db, counts, second, statements, cached=True)

    changes = (
        update(SyncUser)
        .values(email="renamed@first.example")
        .where(SyncUser.email == f"anna.garcia@{first}.example"),
        update(SyncUser)
        .values(destination_email="zz.garcia@dest.example")
        .where(SyncUser.email == f"zoe@{first}.example"),
        text("DELETE FROM sync_users WHERE email = :email").bindparams(
            email=f"li.ga@{first}.example"
        ),
    )
    for change in changes:
        await _write(db, change)
        await _check(db, counts, first, statements, cached=False)
        await _check(db, counts, first, statements, cached=True)
    await _check(db, counts, second, statements, cached=True)  # untouched by the first's changes

    await seed(db, "first", 50)  # a bulk load: SQLite drops the per-row trigger for it
    await _check(db, counts, first, statements, cached=False)
    if db.dialect == "postgresql":
        await _write(db, text("TRUNCATE sync_users CASCADE"))
        await _check(db, counts, second, statements, cached=False)
        assert await _count(db, counts, second, "garcia") == 0


async def test_a_database_made_again_starts_at_other_revisions(db: Database) -> None:
    """Revisions start at random: a cache that knew a database dropped and made again under the
    same URL cannot take the new one's first revision for a revision it saw."""
    tenant = await add_tenant(db, "t")
    await _add(db, tenant, "x")
    async with db.read() as session:
        revision = await session.scalar(
            select(SearchRevision.revision).where(SearchRevision.tenant_id == tenant)
        )
    assert revision is not None and revision > 1_000_000


async def test_the_landing_page_statement_is_shared_by_tenants(db: Database) -> None:
    """The unfiltered first page is built once (app/reads/pagination.py first_page) with the
    tenant bound at run time: each tenant, in turn, sees exactly its own users in order, forward
    (first) and backward (last), in both orders."""
    tenants = [await add_tenant(db, "a"), await add_tenant(db, "b")]
    await _add(db, tenants[0], *(f"u{i:02d}" for i in range(0, 30, 2)))
    await _add(db, tenants[1], *(f"u{i:02d}" for i in range(1, 30, 2)))
    async with db.write() as session:  # distinct latest syncs for the other order
        await session.execute(
            update(SyncUser).values(latest_sort=SyncUser.id * 1000, latest_sync_at=SyncUser.id)
        )
    for _ in range(2):
        for tenant in tenants:
            async with db.read() as session:
                rows = await session.execute(
                    select(SyncUser.id, SyncUser.email, SyncUser.latest_sort).where(
                        SyncUser.tenant_id == tenant
                    )
                )
                users = list(rows)
                by_email = [u.id for u in sorted(users, key=lambda u: (u.email, u.id))]
                by_latest = [u.id for u in sorted(users, key=lambda u: (-u.latest_sort, -u.id))]
                for order, expected in (("EMAIL_ASC", by_email), ("LATEST_SYNC_DESC", by_latest)):
                    for args, want in (
                        (PageArgs(first=4), expected[:4]),
                        (PageArgs(last=4), expected[-4:]),
                        (PageArgs(first=100), expected),
                    ):
                        found = await reads.user_page(session, tenant, reads.LANDING, order, args)
                        assert [v.id for _, v in found.page.items] == want, (tenant, order, args)
                        assert found.page.has_next == (args.first == 4)
                        assert found.page.has_previous == (args.last == 4)
