"""Views of users read by position (app/reads/users.py `_view`): the same UserView as reading
the row's columns by name, pending-request overlay (sync_requested, version) included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text

from app.demo.seed import seed
from app.domain.views import UserView
from app.reads import users as reads
from app.reads.pagination import PageArgs
from app.store.engine import Database
from tests.server import opened, throwaway_database


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    with throwaway_database("sqlite") as url:
        async with opened(url) as database:
            yield database


async def test_views_by_position_equal_views_by_name(db: Database) -> None:
    tenant = await seed(db, "Views", 60)
    async with db.write() as session:
        first = await session.scalar(text("SELECT min(id) FROM sync_users"))
        await session.execute(
            text(
                "INSERT INTO sync_requests (user_id, tenant_id, requested_at, bumps)"
                " VALUES (:u, :t, 1, 3)"
            ),
            {"u": first, "t": tenant},
        )
    async with db.read() as session:
        rows = (await session.execute(select(*reads.COLUMNS))).all()
        page = await reads.user_page(
            session, tenant, reads.UserFilter(), "EMAIL_ASC", PageArgs(first=100)
        )
        by_id = await reads.users_by_ids(session, tenant, [row.id for row in rows])
    assert len(rows) == 60
    assert [reads._view(row) for row in rows] == [UserView.of(row) for row in rows]
    named = {row.id: UserView.of(row) for row in rows}
    assert {view.id: view for _, view in page.page.items} == named == by_id
    requested = named[first]
    assert requested.sync_requested and requested.version >= 3  # the overlay, by position too
