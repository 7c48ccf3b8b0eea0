"""The four metric cards, from counters only: no scan of users, whatever the tenant's size."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ChangeBucket, Policy, StatusCount
from app.timeutil import MICROS_PER_MINUTE, minute_of
from app.views import MetricsView

DAY_MINUTES = 24 * 60


async def sync_metrics(session: AsyncSession, tenant_id: int, now: int) -> MetricsView:
    by_status: dict[str, int] = {}
    for status, count in await session.execute(
        select(StatusCount.status, func.sum(StatusCount.count))
        .where(StatusCount.tenant_id == tenant_id)
        .group_by(StatusCount.status)
    ):
        by_status[status] = int(count or 0)
    active_users = await session.scalar(
        select(func.coalesce(func.sum(Policy.user_count), 0)).where(
            Policy.tenant_id == tenant_id, Policy.active.is_(True)
        )
    )
    # Minute buckets: the window is the 1,440 whole minutes before asOf's minute plus that one.
    since = minute_of(now - DAY_MINUTES * MICROS_PER_MINUTE)
    changes = await session.scalar(
        select(func.coalesce(func.sum(ChangeBucket.changes), 0)).where(
            ChangeBucket.tenant_id == tenant_id, ChangeBucket.minute > since
        )
    )
    return MetricsView(
        users_with_active_policy=int(active_users or 0),
        changes_last_24h=int(changes or 0),
        syncs_in_progress=by_status.get("IN_PROGRESS", 0),
        failed_syncs=by_status.get("FAILED", 0),
        total_users=sum(by_status.values()),
        as_of=now,
    )
