"""The four metric cards, from counters only: no scan of users, whatever the tenant's size."""

from __future__ import annotations

from sqlalchemy import bindparam, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.statuses import UserStatus
from app.domain.timeutil import MICROS_PER_MINUTE, minute_of
from app.domain.views import MetricsView
from app.store.models import ChangeBucket, Policy, StatusCount

DAY_MINUTES = 24 * 60


ACTIVE = "~active"  # row keys beside the statuses in METRICS
CHANGES = "~changes"
# One statement, one round trip: users per status, users of active policies, changes since.
METRICS = union_all(
    select(StatusCount.status, func.sum(StatusCount.count))
    .where(StatusCount.tenant_id == bindparam("tenant"))
    .group_by(StatusCount.status),
    select(literal(ACTIVE), func.coalesce(func.sum(Policy.user_count), 0)).where(
        Policy.tenant_id == bindparam("tenant"), Policy.active.is_(True)
    ),
    select(literal(CHANGES), func.coalesce(func.sum(ChangeBucket.changes), 0)).where(
        ChangeBucket.tenant_id == bindparam("tenant"), ChangeBucket.minute > bindparam("since")
    ),
)


async def sync_metrics(session: AsyncSession, tenant_id: int, now: int) -> MetricsView:
    # Minute buckets: the window is the 1,440 whole minutes before asOf's minute plus that one.
    since = minute_of(now - DAY_MINUTES * MICROS_PER_MINUTE)
    conn = await session.connection()
    rows = await conn.execute(METRICS, {"tenant": tenant_id, "since": since})
    values = {key: int(value or 0) for key, value in rows}
    active_users = values.pop(ACTIVE, 0)
    changes = values.pop(CHANGES, 0)
    return MetricsView(
        users_with_active_policy=active_users,
        changes_last_24h=changes,
        syncs_in_progress=values.get(UserStatus.IN_PROGRESS, 0),
        failed_syncs=values.get(UserStatus.FAILED, 0),
        total_users=sum(values.values()),
        as_of=now,
    )
