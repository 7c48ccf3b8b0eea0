"""User administration: adding users and assigning policies. Rare and batched, so plain ORM;
like the run lifecycle it keeps the counters in step, bumps versions and returns the events to
publish after commit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.policies import load_policy
from app.domain import validation
from app.domain.errors import BadUserInput, Conflict, NotFound
from app.domain.statuses import UserStatus
from app.domain.views import own_version, public_version
from app.events.messages import Event, UserEvent
from app.lifecycle.transitions import due_after_start
from app.store import counters, pending_requests
from app.store.engine import dialect_of, run_in
from app.store.models import Policy, SyncUser
from app.store.snapshots import user_snapshot


def _locked(session: AsyncSession, query: Select[Any]) -> Select[Any]:
    return query.with_for_update() if dialect_of(session) == "postgresql" else query


async def _lock_for_assignment(
    session: AsyncSession, tenant_id: int, user_ids: Sequence[int], policy_id: int | None
) -> tuple[Policy | None, list[SyncUser]]:
    """Locks what an assignment changes in the order every writer follows, policies then
    users, each by id (one by one, in the caller's order, concurrent assignments deadlocked).
    All the tenant's policies: the users' current ones are only known once the users are
    locked, and the few policy rows make assignments queue per tenant (they are rare)."""
    wanted = list(dict.fromkeys(user_ids))
    found = await session.scalars(
        _locked(session, select(Policy).where(Policy.tenant_id == tenant_id).order_by(Policy.id))
    )
    policies = {p.id: p for p in found}
    if policy_id is not None and policy_id not in policies:
        raise NotFound("No such policy.")
    locking = _locked(
        session,
        select(SyncUser)
        .where(SyncUser.tenant_id == tenant_id, SyncUser.id.in_(wanted))
        .order_by(SyncUser.id)
        # The lifecycle writes users with Core statements, behind the session's back.
        .execution_options(populate_existing=True),
    )
    rows = (await session.scalars(locking)).all()
    # Locked now (no requestSyncs adds a request meanwhile): their pending requests go into
    # their rows, which are read again.
    conn = await session.connection()
    if await conn.run_sync(pending_requests.fold, tenant_id, wanted):
        rows = (await session.scalars(locking)).all()
    users = {u.id: u for u in rows}
    if len(users) != len(wanted):
        raise NotFound("No such sync user.")
    return (policies[policy_id] if policy_id is not None else None), [users[i] for i in wanted]


def _due_for(user: SyncUser, policy: Policy | None, now: int) -> int | None:
    if policy is None:
        return None
    if user.latest_sync_at is None or user.sync_requested:
        return now
    return due_after_start(policy.sync_interval_minutes, user.latest_sync_at)


async def add_users(
    session: AsyncSession,
    tenant_id: int,
    now: int,
    users: Sequence[tuple[str, str, int | None]],
) -> tuple[list[SyncUser], list[Event]]:
    """(email, destination email, policy id) each; any email already present: nothing added."""
    if not users:
        return [], []
    if len(users) > validation.MAX_USERS_PER_CALL:
        raise BadUserInput(f"At most {validation.MAX_USERS_PER_CALL} users per call.")
    cleaned = [
        (validation.email(e), validation.email(d, "destinationEmail"), p) for e, d, p in users
    ]
    emails = [e for e, _, _ in cleaned]
    duplicates = sorted({e for e in emails if emails.count(e) > 1})
    existing = await session.scalars(
        select(SyncUser.email).where(SyncUser.tenant_id == tenant_id, SyncUser.email.in_(emails))
    )
    duplicates += existing.all()
    if duplicates:
        raise Conflict(f"Already present: {', '.join(sorted(set(duplicates)))}.")
    policies = {  # locked in id order, as every writer locks policies
        p: await load_policy(session, tenant_id, p) for p in sorted({p for _, _, p in cleaned if p})
    }
    rows = [
        SyncUser(
            tenant_id=tenant_id,
            email=e,
            destination_email=d,
            policy_id=p,
            status=UserStatus.NEVER_SYNCED,
            latest_sort=0,
            due_at=now if p else None,
            sync_requested=False,
            unresolved_failure_count=0,
            version=own_version(1, policies[p] if p else None),  # public version starts at 1
            created_at=now,
        )
        for e, d, p in cleaned
    ]
    session.add_all(rows)
    try:
        await session.flush()
    except IntegrityError as error:
        if "uq_sync_users_tenant_email" not in str(error.orig):
            raise
        # Added by a concurrent call after the check above (PostgreSQL): the same CONFLICT.
        raise Conflict("Some of these emails were added meanwhile.") from None
    added = counters.Moves()
    for _, _, p in cleaned:
        added.add((p, UserStatus.NEVER_SYNCED, 0), 1)  # never synced: no latest sync hour
    await run_in(session, added.apply, tenant_id)
    await counters.add_policy_users(session, Counter(p for _, _, p in cleaned if p))
    events: list[Event] = [UserEvent("added", await user_snapshot(session, u)) for u in rows]
    return rows, events


async def assign_policy(
    session: AsyncSession,
    tenant_id: int,
    now: int,
    user_ids: Sequence[int],
    policy_id: int | None,
) -> tuple[list[SyncUser], list[Event]]:
    if len(user_ids) > validation.MAX_USERS_PER_CALL:
        raise BadUserInput(f"At most {validation.MAX_USERS_PER_CALL} users per call.")
    policy, users = await _lock_for_assignment(session, tenant_id, user_ids, policy_id)
    changed: list[SyncUser] = []
    moved: Counter[int] = Counter()
    moves = counters.Moves()
    for user in users:
        if user.policy_id == policy_id:
            continue
        old = await session.get(Policy, user.policy_id) if user.policy_id else None
        moves.move(
            (user.policy_id, user.status, user.latest_sort),
            (policy_id, user.status, user.latest_sort),
        )
        if old:
            moved[old.id] -= 1
        if policy:
            moved[policy.id] += 1
        # The public version grows by exactly one, whatever the two policies' revisions.
        user.version = own_version(public_version(user.version, old) + 1, policy)
        user.policy_id = policy_id
        user.due_at = _due_for(user, policy, now)
        changed.append(user)
    await run_in(session, moves.apply, tenant_id)
    await counters.add_policy_users(session, moved)
    await session.flush()
    events: list[Event] = [
        UserEvent("assigned", await user_snapshot(session, user)) for user in changed
    ]
    return users, events
