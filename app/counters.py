"""Counters kept in the same transaction as each state change (DESIGN.md: metric cards must not
scan users). Increments are upserts, so concurrent writers on PostgreSQL never lose counts."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ChangeBucket, Policy, StatusCount, SyncUser
from app.timeutil import minute_of

NO_POLICY = 0


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


async def move_status(
    session: AsyncSession,
    tenant_id: int,
    old: tuple[int | None, str] | None,
    new: tuple[int | None, str] | None,
) -> None:
    """Move one user between (policy, status) counters; None means added or removed."""
    deltas: Counter[tuple[int, str]] = Counter()
    if old is not None:
        deltas[(policy_key(old[0]), old[1])] -= 1
    if new is not None:
        deltas[(policy_key(new[0]), new[1])] += 1
    await add_status_counts(session, tenant_id, deltas)


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
    """Rebuild a tenant's status counters and policy user counts from the users (bulk loads)."""
    await session.execute(StatusCount.__table__.delete().where(StatusCount.tenant_id == tenant_id))
    grouped = await session.execute(
        select(SyncUser.policy_id, SyncUser.status, func.count())
        .where(SyncUser.tenant_id == tenant_id)
        .group_by(SyncUser.policy_id, SyncUser.status)
    )
    deltas: Counter[tuple[int, str]] = Counter()
    per_policy: Counter[int] = Counter()
    for policy_id, status, count in grouped:
        deltas[(policy_key(policy_id), status)] += count
        if policy_id:
            per_policy[policy_id] += count
    await add_status_counts(session, tenant_id, deltas)
    await session.execute(update(Policy).where(Policy.tenant_id == tenant_id).values(user_count=0))
    await add_policy_users(session, per_policy)
