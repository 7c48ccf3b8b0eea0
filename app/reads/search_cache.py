"""What an email search without other filters computed, kept under the tenant's emails revision
(search_revisions, bumped by triggers with every change to the tenant's emails: migration 0008):
its exact count (Services.search_counts) and, on PostgreSQL, a rare term's matches
(Services.search_matches, app/reads/search_matches.py). One SearchCache of each per app.

Such a value depends on the tenant's emails alone, which change rarely (users added or removed),
while statuses change all the time. Counting a search costs a pass over every match: at 1,000,000
users 'garcia' (62,744 matches) is 8-20 ms in SQLite's trigram index and ~110 ms on PostgreSQL
(pg_trgm rechecks each match on its row); a hit is one primary-key read of the revision.

Never stale: the revision is read before and after computing, and the value is kept only when
both reads agree. Each statement sees a snapshot at least as new as the one before it and the
revision only grows, in the same commit as the emails, so every statement in between saw the
emails of that revision. A hit compares the revision read now with the one kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import SearchRevision

T = TypeVar("T")
ENTRIES = 4096  # (tenant, term) kept per app, least recently used dropped first

REVISION = select(SearchRevision.revision).where(SearchRevision.tenant_id == bindparam("tenant"))


class Revision(NamedTuple):
    """The tenant's emails revision as read (None: the tenant has no row yet)."""

    value: int | None


async def revision(session: AsyncSession, tenant_id: int) -> Revision:
    """Read once, it can serve several caches of one request (a count and its matches)."""
    conn = await session.connection()
    return Revision((await conn.execute(REVISION, {"tenant": tenant_id})).scalar())


class SearchCache:
    """One kind of value of one database's searches, as this process last computed them."""

    def __init__(self, entries: int = ENTRIES) -> None:
        self.entries = entries
        self._kept: OrderedDict[tuple[int, str], tuple[int | None, object]] = OrderedDict()

    async def cached(
        self,
        session: AsyncSession,
        tenant_id: int,
        term: str,
        compute: Callable[[], Awaitable[T]],
        read: Revision | None = None,
    ) -> T:
        """compute() (for the term in the tenant), or what it gave under this revision (`read`
        in this session already, or read now)."""
        key = (tenant_id, term)
        current = (read or await revision(session, tenant_id)).value
        kept = self._kept.get(key)
        if kept is not None and kept[0] == current:
            self._kept.move_to_end(key)
            return kept[1]  # type: ignore[return-value]
        value = await compute()
        if (await revision(session, tenant_id)).value == current:
            self._kept[key] = (current, value)
            self._kept.move_to_end(key)
            if len(self._kept) > self.entries:
                self._kept.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._kept)


async def kept(
    cache: SearchCache | None,
    session: AsyncSession,
    tenant_id: int,
    term: str,
    compute: Callable[[], Awaitable[T]],
) -> T:
    """Through `cache` when there is one; None computes every time (a walk done once)."""
    if cache is None:
        return await compute()
    return await cache.cached(session, tenant_id, term, compute)
