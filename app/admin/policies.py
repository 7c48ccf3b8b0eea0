"""Policy administration. A policy change is one row write: its users' public version moves
with the policy's revision (see Policy.revision), and one PolicyEvent announces it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import validation
from app.domain.errors import Conflict, NotFound
from app.domain.timeutil import MICROS_PER_MINUTE
from app.domain.views import PolicyView
from app.events.messages import PolicyEvent
from app.store import pending_requests
from app.store.engine import dialect_of
from app.store.models import Policy, SyncUser


@dataclass(frozen=True, slots=True)
class PolicyInput:
    name: str
    description: str | None
    active: bool
    sync_interval_minutes: int
    services: list[str]


async def load_policy(session: AsyncSession, tenant_id: int, policy_id: int) -> Policy:
    """The tenant's policy, row-locked on PostgreSQL (its revision and counts change)."""
    query = select(Policy).where(Policy.id == policy_id, Policy.tenant_id == tenant_id)
    if dialect_of(session) == "postgresql":
        query = query.with_for_update()
    policy = (await session.execute(query)).scalar_one_or_none()
    if policy is None:
        raise NotFound("No such policy.")
    return policy


def _clean(data: PolicyInput) -> PolicyInput:
    return PolicyInput(
        name=validation.name(data.name),
        description=validation.optional_text(data.description, "description"),
        active=data.active,
        sync_interval_minutes=validation.interval(data.sync_interval_minutes),
        services=list(validation.services(data.services)),
    )


async def _ensure_unique_name(
    session: AsyncSession, tenant_id: int, name: str, policy_id: int | None
) -> None:
    clash = await session.scalar(
        select(Policy.id).where(Policy.tenant_id == tenant_id, Policy.name == name)
    )
    if clash is not None and clash != policy_id:
        raise Conflict(f"A policy named {name!r} already exists.")


async def create_policy(
    session: AsyncSession, tenant_id: int, now: int, data: PolicyInput
) -> tuple[Policy, PolicyEvent]:
    data = _clean(data)
    await _ensure_unique_name(session, tenant_id, data.name, None)
    policy = Policy(
        tenant_id=tenant_id,
        name=data.name,
        description=data.description,
        active=data.active,
        sync_interval_minutes=data.sync_interval_minutes,
        services=",".join(data.services),
        user_count=0,
        revision=0,
        created_at=now,
        updated_at=now,
    )
    session.add(policy)
    await _flush_name(session, data.name)
    return policy, PolicyEvent(PolicyView.of(policy))


async def update_policy(
    session: AsyncSession, tenant_id: int, policy_id: int, now: int, data: PolicyInput
) -> tuple[Policy, list[PolicyEvent]]:
    data = _clean(data)
    policy = await load_policy(session, tenant_id, policy_id)
    await _ensure_unique_name(session, tenant_id, data.name, policy.id)
    services = ",".join(data.services)
    if (
        policy.name,
        policy.description,
        policy.active,
        policy.sync_interval_minutes,
        policy.services,
    ) == (data.name, data.description, data.active, data.sync_interval_minutes, services):
        return policy, []
    if data.sync_interval_minutes != policy.sync_interval_minutes:
        # Re-derive the due time of users that ran before (others are due now anyway).
        await session.execute(
            update(SyncUser)
            .where(
                SyncUser.policy_id == policy.id,
                SyncUser.latest_sync_at.is_not(None),
                SyncUser.sync_requested.is_(False),
                SyncUser.id.not_in(pending_requests.pending_of(tenant_id)),
            )
            .values(due_at=SyncUser.latest_sync_at + data.sync_interval_minutes * MICROS_PER_MINUTE)
            .execution_options(synchronize_session=False)
        )
    policy.name = data.name
    policy.description = data.description
    policy.active = data.active
    policy.sync_interval_minutes = data.sync_interval_minutes
    policy.services = services
    return policy, [await _touch(session, policy, now)]


async def set_policy_active(
    session: AsyncSession, tenant_id: int, policy_id: int, now: int, active: bool
) -> tuple[Policy, list[PolicyEvent]]:
    policy = await load_policy(session, tenant_id, policy_id)
    if policy.active == active:
        return policy, []
    # Running runs are left alone: deactivating only stops new runs from being claimed.
    policy.active = active
    return policy, [await _touch(session, policy, now)]


async def _touch(session: AsyncSession, policy: Policy, now: int) -> PolicyEvent:
    policy.revision += 1
    policy.updated_at = now
    await _flush_name(session, policy.name)
    return PolicyEvent(PolicyView.of(policy))


async def _flush_name(session: AsyncSession, name: str) -> None:
    """A name taken by a concurrent call after _ensure_unique_name (PostgreSQL): CONFLICT."""
    try:
        await session.flush()
    except IntegrityError as error:
        if "uq_policies_tenant_name" not in str(error.orig):
            raise
        raise Conflict(f"A policy named {name!r} already exists.") from None
