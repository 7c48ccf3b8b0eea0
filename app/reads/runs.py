"""Run history, runs by id, failed items, and policies: small keyset lists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.views import FailedItemView, PolicyView, RunView
from app.reads.pagination import Keyset, Page, PageArgs, keyset_page, keyset_pages
from app.store.models import FailedItem, Policy, SyncRun

RUNS = Keyset("r", (SyncRun.id,), True, (int,))  # newest first: ids grow with start time
FAILED_ITEMS = Keyset("f", (FailedItem.id,), False, (int,))
POLICIES = Keyset("p", (Policy.name, Policy.id), False, (str, int))


# By id: plain rows on the session's connection, no ORM entities (pages read these per request).
RUNS_BY_IDS = select(*SyncRun.__table__.c).where(
    SyncRun.tenant_id == bindparam("tenant"), SyncRun.id.in_(bindparam("ids", expanding=True))
)
POLICIES_BY_IDS = select(*Policy.__table__.c).where(
    Policy.tenant_id == bindparam("tenant"), Policy.id.in_(bindparam("ids", expanding=True))
)


async def runs_by_ids(session: AsyncSession, tenant_id: int, ids: list[int]) -> dict[int, RunView]:
    conn = await session.connection()
    rows = await conn.execute(RUNS_BY_IDS, {"tenant": tenant_id, "ids": list(ids)})
    return {row.id: RunView.of(row) for row in rows}


async def run_page(
    session: AsyncSession, tenant_id: int, user_id: int, args: PageArgs
) -> tuple[Page[RunView], int]:
    query = select(SyncRun).where(SyncRun.tenant_id == tenant_id, SyncRun.user_id == user_id)
    page = await keyset_page(session, query, RUNS, tenant_id, args, lambda row: (row[0].id,))
    total = await session.scalar(select(func.count()).where(SyncRun.user_id == user_id))
    items = [(cursor, RunView.of(row[0])) for cursor, row in page.items]
    return Page(items, page.has_next, page.has_previous), int(total or 0)


async def failed_item_page(
    session: AsyncSession, tenant_id: int, run_id: int, args: PageArgs
) -> tuple[Page[FailedItemView], int]:
    query = select(FailedItem).where(FailedItem.tenant_id == tenant_id, FailedItem.run_id == run_id)
    page = await keyset_page(
        session, query, FAILED_ITEMS, tenant_id, args, lambda row: (row[0].id,)
    )
    total = await session.scalar(select(func.count()).where(FailedItem.run_id == run_id))
    items = [
        (
            cursor,
            FailedItemView(
                id=r.id,
                item_id=r.item_id,
                item_type=r.item_type,
                error_code=r.error_code,
                error_message=r.error_message,
                failed_at=r.failed_at,
            ),
        )
        for cursor, (r,) in page.items
    ]
    return Page(items, page.has_next, page.has_previous), int(total or 0)


async def policies_by_ids(
    session: AsyncSession, tenant_id: int, ids: list[int]
) -> dict[int, PolicyView]:
    conn = await session.connection()
    rows = await conn.execute(POLICIES_BY_IDS, {"tenant": tenant_id, "ids": list(ids)})
    return {row.id: PolicyView.of(row) for row in rows}


async def policy_page(
    session: AsyncSession, tenant_id: int, args: PageArgs
) -> tuple[Page[PolicyView], int]:
    query = select(Policy).where(Policy.tenant_id == tenant_id)
    page = await keyset_page(
        session, query, POLICIES, tenant_id, args, lambda row: (row[0].name, row[0].id)
    )
    total = await session.scalar(select(func.count()).where(Policy.tenant_id == tenant_id))
    items = [(cursor, PolicyView.of(row[0])) for cursor, row in page.items]
    return Page(items, page.has_next, page.has_previous), int(total or 0)


async def _totals(
    session: AsyncSession, parent: Any, tenant_column: Any, tenant_id: int, ids: list[int]
) -> dict[int, int]:
    rows = await session.execute(
        select(parent, func.count())
        .where(tenant_column == tenant_id, parent.in_(ids))
        .group_by(parent)
    )
    return {parent_id: int(count) for parent_id, count in rows.all()}


async def run_pages(
    session: AsyncSession, tenant_id: int, user_ids: list[int], args: PageArgs
) -> dict[int, tuple[Page[RunView], int]]:
    """run_page() of many users in two queries (the page of each, and the totals)."""
    query = select(*SyncRun.__table__.c).where(SyncRun.tenant_id == tenant_id)
    pages = await keyset_pages(
        session, query, SyncRun.user_id, user_ids, RUNS, tenant_id, args, lambda r: (r.id,)
    )
    totals = await _totals(session, SyncRun.user_id, SyncRun.tenant_id, tenant_id, user_ids)
    return {
        user_id: (
            Page([(c, RunView.of(r)) for c, r in page.items], page.has_next, page.has_previous),
            totals.get(user_id, 0),
        )
        for user_id, page in pages.items()
    }


def _failed_item(r: Any) -> FailedItemView:
    return FailedItemView(
        id=r.id,
        item_id=r.item_id,
        item_type=r.item_type,
        error_code=r.error_code,
        error_message=r.error_message,
        failed_at=r.failed_at,
    )


async def failed_item_pages(
    session: AsyncSession, tenant_id: int, run_ids: list[int], args: PageArgs
) -> dict[int, tuple[Page[FailedItemView], int]]:
    """failed_item_page() of many runs in two queries."""
    query = select(*FailedItem.__table__.c).where(FailedItem.tenant_id == tenant_id)
    pages = await keyset_pages(
        session, query, FailedItem.run_id, run_ids, FAILED_ITEMS, tenant_id, args, lambda r: (r.id,)
    )
    totals = await _totals(session, FailedItem.run_id, FailedItem.tenant_id, tenant_id, run_ids)
    return {
        run_id: (
            Page([(c, _failed_item(r)) for c, r in page.items], page.has_next, page.has_previous),
            totals.get(run_id, 0),
        )
        for run_id, page in pages.items()
    }
