"""Counters kept in the same transaction as each state change (DESIGN.md: metric cards must not
scan users). Increments are upserts, so concurrent writers on PostgreSQL never lose counts."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ChangeBucket, LatestCount, Policy, StatusCount, SyncUser
from app.timeutil import MICROS_PER_HOUR, minute_of

NO_POLICY = 0
# A user as the counters see it: (policy id, status, latest_sort).
UserKey = tuple[int | None, str, int]


def policy_key(policy_id: int | None) -> int:
    return policy_id or NO_POLICY


def _insert(session: AsyncSession):  # type: ignore[no-untyped-def]
    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert


async def add_status_counts(
    session: AsyncSession, tenant_id: int, deltas: Counter[tuple[int, str]]
) -> None:
    """Apply {(policy_key, status): delta} to the tenant's status counters."""
    rows = [
        {"tenant_id": tenant_id, "policy_key": key, "status": status, "count": delta}
        for (key, status), delta in sorted(deltas.items())
        if delta
    ]
    if not rows:
        return
    insert = _insert(session)(StatusCount)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["tenant_id", "policy_key", "status"],
            set_={"count": StatusCount.count + insert.excluded.count},
        ),
        rows,
    )


def hour_of(latest_sort: int) -> int:
    return latest_sort // MICROS_PER_HOUR


async def add_latest_counts(
    session: AsyncSession, tenant_id: int, deltas: Counter[tuple[int, int, str]]
) -> None:
    """Apply {(hour, policy_key, status): delta} to the tenant's latest-sync hour counters."""
    rows = [
        {"tenant_id": tenant_id, "hour": hour, "policy_key": key, "status": status, "count": d}
        for (hour, key, status), d in sorted(deltas.items())
        if d
    ]
    if not rows:
        return
    insert = _insert(session)(LatestCount)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["tenant_id", "hour", "policy_key", "status"],
            set_={"count": LatestCount.count + insert.excluded.count},
        ),
        rows,
    )


class Moves:
    """Counter deltas of users moving between (policy, status, latest sync hour)."""

    def __init__(self) -> None:
        self.status: Counter[tuple[int, str]] = Counter()
        self.latest: Counter[tuple[int, int, str]] = Counter()

    def add(self, key: UserKey | None, sign: int) -> None:
        if key is None:
            return
        policy_id, status, latest_sort = key
        self.status[(policy_key(policy_id), status)] += sign
        if latest_sort > 0:  # never-synced users have no latest sync hour
            self.latest[(hour_of(latest_sort), policy_key(policy_id), status)] += sign

    def move(self, old: UserKey | None, new: UserKey | None) -> None:
        self.add(old, -1)
        self.add(new, 1)

    async def apply(self, session: AsyncSession, tenant_id: int) -> None:
        await add_status_counts(session, tenant_id, self.status)
        await add_latest_counts(session, tenant_id, self.latest)


async def move_user(
    session: AsyncSession, tenant_id: int, old: UserKey | None, new: UserKey | None
) -> None:
    """Move one user between counters; None means added or removed."""
    moves = Moves()
    moves.move(old, new)
    await moves.apply(session, tenant_id)


async def add_changes(session: AsyncSession, tenant_id: int, at_micros: int, changes: int) -> None:
    if changes <= 0:
        return
    insert = _insert(session)(ChangeBucket)
    await session.execute(
        insert.values(
            tenant_id=tenant_id, minute=minute_of(at_micros), changes=changes
        ).on_conflict_do_update(
            index_elements=["tenant_id", "minute"],
            set_={"changes": ChangeBucket.changes + insert.excluded.changes},
        )
    )


async def add_policy_users(session: AsyncSession, deltas: Counter[int]) -> None:
    for policy_id, delta in sorted(deltas.items()):
        if policy_id and delta:
            await session.execute(
                update(Policy)
                .where(Policy.id == policy_id)
                .values(user_count=Policy.user_count + delta)
            )


async def recount(session: AsyncSession, tenant_id: int) -> None:
    """Rebuild a tenant's counters and policy user counts from the users (bulk loads)."""
    await session.execute(StatusCount.__table__.delete().where(StatusCount.tenant_id == tenant_id))
    await session.execute(LatestCount.__table__.delete().where(LatestCount.tenant_id == tenant_id))
    moves = Moves()
    per_policy: Counter[int] = Counter()
    grouped = await session.execute(
        select(SyncUser.policy_id, SyncUser.status, func.count())
        .where(SyncUser.tenant_id == tenant_id)
        .group_by(SyncUser.policy_id, SyncUser.status)
    )
    for policy_id, status, count in grouped:
        moves.status[(policy_key(policy_id), status)] += count
        if policy_id:
            per_policy[policy_id] += count
    hour = SyncUser.latest_sort // MICROS_PER_HOUR
    grouped = await session.execute(
        select(hour, SyncUser.policy_id, SyncUser.status, func.count())
        .where(SyncUser.tenant_id == tenant_id, SyncUser.latest_sort > 0)
        .group_by(hour, SyncUser.policy_id, SyncUser.status)
    )
    for hour_value, policy_id, status, count in grouped:
        moves.latest[(int(hour_value), policy_key(policy_id), status)] += count
    await moves.apply(session, tenant_id)
    await session.execute(update(Policy).where(Policy.tenant_id == tenant_id).values(user_count=0))
    await add_policy_users(session, per_policy)
