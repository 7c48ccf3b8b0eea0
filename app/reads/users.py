"""The Sync Status table: filtered, ordered keyset pages of users with exact totals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app import validation
from app.db.models import StatusCount, SyncUser
from app.errors import BadUserInput
from app.reads.pagination import Keyset, Page, PageArgs, keyset_page
from app.views import UserView

STATUSES = ("NEVER_SYNCED", "IN_PROGRESS", "SYNCED", "COMPLETED_WITH_WARNING", "FAILED")
TRIGRAM = 3  # shorter searches cannot use the trigram index and fall back to a scan

ORDERS = {
    "EMAIL_ASC": Keyset("u.email", (SyncUser.email, SyncUser.id), False, (str, int)),
    "LATEST_SYNC_DESC": Keyset("u.latest", (SyncUser.latest_sort, SyncUser.id), True, (int, int)),
}
_KEY_OF = {
    "EMAIL_ASC": lambda row: (row.email, row.id),
    "LATEST_SYNC_DESC": lambda row: (row.latest_sort, row.id),
}


@dataclass(frozen=True, slots=True)
class UserFilter:
    email_contains: str | None = None
    latest_sync_from: int | None = None
    latest_sync_to: int | None = None
    policy_id: int | None = None
    status: str | None = None

    @property
    def counted_by_counters(self) -> bool:
        """Status and policy alone are served exactly by the status_counts counters."""
        return (
            self.email_contains is None
            and self.latest_sync_from is None
            and self.latest_sync_to is None
        )


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search_condition(dialect: str, term: str) -> ColumnElement[bool]:
    if dialect == "sqlite" and len(term) >= TRIGRAM:
        phrase = '"' + term.replace('"', '""') + '"'
        matches = (
            select(literal_column("rowid"))
            .select_from(text("sync_users_search"))
            .where(text("sync_users_search MATCH :phrase").bindparams(phrase=phrase))
        )
        return SyncUser.id.in_(matches)
    # Emails are stored lower-case; pg_trgm's GIN indexes serve LIKE '%term%' directly.
    pattern = _like_pattern(term)
    return or_(
        SyncUser.email.like(pattern, escape="\\"),
        SyncUser.destination_email.like(pattern, escape="\\"),
    )


def conditions(tenant_id: int, dialect: str, filt: UserFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [SyncUser.tenant_id == tenant_id]
    if filt.status is not None:
        where.append(SyncUser.status == filt.status)
    if filt.policy_id is not None:
        where.append(SyncUser.policy_id == filt.policy_id)
    if filt.latest_sync_from is not None or filt.latest_sync_to is not None:
        where.append(SyncUser.latest_sort > 0)  # never-synced users are excluded
        if filt.latest_sync_from is not None:
            where.append(SyncUser.latest_sort >= filt.latest_sync_from)
        if filt.latest_sync_to is not None:
            where.append(SyncUser.latest_sort <= filt.latest_sync_to)
    term = validation.search(filt.email_contains)
    if term:
        where.append(_search_condition(dialect, term))
    return where


def check_filter(filt: UserFilter) -> None:
    if filt.status is not None and filt.status not in STATUSES:
        raise BadUserInput(f"Unknown status {filt.status!r}.")
    if (
        filt.latest_sync_from is not None
        and filt.latest_sync_to is not None
        and filt.latest_sync_from > filt.latest_sync_to
    ):
        raise BadUserInput("latestSyncFrom is after latestSyncTo.")


async def user_page(
    session: AsyncSession,
    tenant_id: int,
    filt: UserFilter,
    order: str,
    args: PageArgs,
) -> Page[UserView]:
    check_filter(filt)
    keyset = ORDERS[order]
    dialect = session.bind.dialect.name
    query: Select[Any] = select(SyncUser).where(and_(*conditions(tenant_id, dialect, filt)))
    page = await keyset_page(
        session, query, keyset, tenant_id, args, lambda row: _KEY_OF[order](row[0])
    )
    return Page(
        [(cursor, UserView.of(row[0])) for cursor, row in page.items],
        page.has_next,
        page.has_previous,
    )


async def user_count(session: AsyncSession, tenant_id: int, filt: UserFilter) -> int:
    check_filter(filt)
    if filt.counted_by_counters:
        query = select(func.coalesce(func.sum(StatusCount.count), 0)).where(
            StatusCount.tenant_id == tenant_id
        )
        if filt.status is not None:
            query = query.where(StatusCount.status == filt.status)
        if filt.policy_id is not None:
            query = query.where(StatusCount.policy_key == filt.policy_id)
        return int(await session.scalar(query) or 0)
    dialect = session.bind.dialect.name
    query = select(func.count()).select_from(SyncUser)
    return int(await session.scalar(query.where(*conditions(tenant_id, dialect, filt))) or 0)


async def get_user(session: AsyncSession, tenant_id: int, user_id: int) -> UserView | None:
    row = await session.get(SyncUser, user_id)
    return UserView.of(row) if row is not None and row.tenant_id == tenant_id else None


async def users_by_ids(
    session: AsyncSession, tenant_id: int, user_ids: list[int]
) -> dict[int, UserView]:
    rows = await session.scalars(
        select(SyncUser).where(SyncUser.tenant_id == tenant_id, SyncUser.id.in_(user_ids))
    )
    return {row.id: UserView.of(row) for row in rows}
