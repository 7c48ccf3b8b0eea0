"""Exact totalCount for the Sync Status table without scanning a million users.

- status and policy: the status_counts counters.
- a latestSyncAt range: latest_counts (users per hour of their latest sync) for the whole hours
  inside the range, plus index range counts of the partial hours at its two ends (of the smaller
  side of each partial hour: the hour's counter minus the part outside the range, when cheaper).
- emailContains (SQLite, 3+ characters): whichever is smaller drives the count: the trigram
  index's matches, or the users the other filters select (checked with LIKE). Without other
  filters, the matches of every tenant less those of the other tenants' users (few, checked
  with LIKE in ix_sync_users_emails) need no per-match tenant check.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, bindparam, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.timeutil import MICROS_PER_HOUR
from app.store.models import LatestCount, StatusCount, SyncUser

HOUR = MICROS_PER_HOUR


def _counter_where(model: Any, tenant_id: int, status: str | None, policy_id: int | None) -> list:
    where = [model.tenant_id == tenant_id]
    if status is not None:
        where.append(model.status == status)
    if policy_id is not None:
        where.append(model.policy_key == policy_id)
    return where


def _counted_query(status: bool, policy: bool) -> Any:
    query = select(func.coalesce(func.sum(StatusCount.count), 0)).where(
        StatusCount.tenant_id == bindparam("tenant")
    )
    if status:
        query = query.where(StatusCount.status == bindparam("status"))
    if policy:
        query = query.where(StatusCount.policy_key == bindparam("policy"))
    return query


COUNTED = {(s, p): _counted_query(s, p) for s in (False, True) for p in (False, True)}


async def counted(
    session: AsyncSession, tenant_id: int, status: str | None, policy_id: int | None
) -> int:
    """Users with this status and policy (either may be None: any), from the counters."""
    query = COUNTED[(status is not None, policy_id is not None)]
    params = {"tenant": tenant_id, "status": status, "policy": policy_id}
    conn = await session.connection()
    return int((await conn.execute(query, params)).scalar() or 0)


OTHER_TENANTS_ROWS = 1000  # counter rows read at most to sum the other tenants' users


async def other_tenants_users(session: AsyncSession, tenant_id: int) -> int | None:
    """Users of the file's other tenants, from the counters; None when there are many tenants
    (more counter rows than is cheap to sum)."""
    rows = (
        select(StatusCount.count)
        .where(StatusCount.tenant_id != tenant_id, StatusCount.count > 0)
        .limit(OTHER_TENANTS_ROWS)
        .subquery()
    )
    found, users = (
        await session.execute(select(func.count(), func.coalesce(func.sum(rows.c.count), 0)))
    ).one()
    return None if found >= OTHER_TENANTS_ROWS else int(users)


def user_filters(
    tenant_id: int, status: str | None, policy_id: int | None
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [SyncUser.tenant_id == tenant_id]
    if status is not None:
        where.append(SyncUser.status == status)
    if policy_id is not None:
        # With a status too, SQLite counts inside ix_sync_users_status_policy (three equalities).
        where.append(SyncUser.policy_id == policy_id)
    return where


class RangeCount:
    """Builds one SELECT summing hour counters and counting partial hours in the index."""

    def __init__(self, tenant_id: int, status: str | None, policy_id: int | None) -> None:
        self.tenant_id, self.status, self.policy_id = tenant_id, status, policy_id
        self.terms: list[tuple[int, ScalarSelect[Any]]] = []

    def hours(self, first: int, last: int | None, sign: int = 1) -> None:
        """Add the counters of whole hours first..last (None: no end)."""
        if last is not None and last < first:
            return
        query = select(func.coalesce(func.sum(LatestCount.count), 0)).where(
            *_counter_where(LatestCount, self.tenant_id, self.status, self.policy_id),
            LatestCount.hour >= first,
        )
        if last is not None:
            query = query.where(LatestCount.hour <= last)
        self.terms.append((sign, query.scalar_subquery()))

    def scan(self, low: int, high: int | None, sign: int = 1) -> None:
        """Add the users whose latest sync is in low..high (inclusive; None: no end)."""
        low = max(low, 1)  # latest_sort 0 is "never synced"
        if high is not None and high < low:
            return
        query = select(func.count()).where(
            *user_filters(self.tenant_id, self.status, self.policy_id),
            SyncUser.latest_sort >= low,
        )
        if high is not None:
            query = query.where(SyncUser.latest_sort <= high)
        self.terms.append((sign, query.scalar_subquery()))

    def partial_hour(self, hour: int, low: int, high: int) -> None:
        """Users of one hour whose latest sync is in low..high: scan the smaller side."""
        start, end = hour * HOUR, hour * HOUR + HOUR - 1
        if (high - low + 1) * 2 <= HOUR:
            self.scan(low, high)
        else:
            self.hours(hour, hour)
            self.scan(start, low - 1, -1)
            self.scan(high + 1, end, -1)

    def add_range(self, low: int, high: int | None) -> None:
        first = low // HOUR
        if high is None:
            self.partial_hour(first, low, first * HOUR + HOUR - 1)
            self.hours(first + 1, None)
            return
        last = high // HOUR
        if first == last:
            self.partial_hour(first, low, high)
            return
        self.partial_hour(first, low, first * HOUR + HOUR - 1)
        self.hours(first + 1, last - 1)
        self.partial_hour(last, last * HOUR, high)

    async def total(self, session: AsyncSession) -> int:
        if not self.terms:
            return 0
        expression: Any = literal(0)
        for sign, term in self.terms:
            expression = expression + term if sign > 0 else expression - term
        return int(await session.scalar(select(expression)) or 0)


async def structured_count(
    session: AsyncSession,
    tenant_id: int,
    status: str | None,
    policy_id: int | None,
    latest_from: int | None,
    latest_to: int | None,
) -> int:
    """Exact count for status, policy and a latestSyncAt range (bounds inclusive; a bound set
    excludes never-synced users)."""
    if latest_from is None and latest_to is None:
        return await counted(session, tenant_id, status, policy_id)
    low = max(latest_from if latest_from is not None else 1, 1)
    if latest_to is not None and latest_to < low:
        return 0
    ranged = RangeCount(tenant_id, status, policy_id)
    ranged.add_range(low, latest_to)
    return await ranged.total(session)


def fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


async def fts_matches(session: AsyncSession, term: str) -> int:
    """Rows of every tenant whose email or destination email contains the term (SQLite)."""
    query = text("SELECT count(*) FROM sync_users_search WHERE sync_users_search MATCH :phrase")
    return int(await session.scalar(query, {"phrase": fts_phrase(term)}) or 0)
