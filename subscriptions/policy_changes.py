"""State a process loads itself when an event does not carry it: the users of a changed policy
(one PolicyEvent stands for all of them), the users a bulk request made due (one
UsersRequested stands for a write transaction's worth), and events too big for the broker
(references). One query per event and process, never one per subscriber."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace

from sqlalchemy import and_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.views import PolicyView, RunView, UserView
from app.events.messages import UserEvent, UserEventKind, UsersRequested
from app.reads.runs import policies_by_ids, runs_by_ids
from app.reads.users import users_by_ids
from app.store import pending_requests
from app.store.engine import Database
from app.store.models import SyncUser

# Bound parameters per IN list: far below SQLite's variable limit (32766; 999 before 3.32).
CHUNK = 500


def chunks(ids: Sequence[int], size: int = CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


async def users_of_policy(
    db: Database, policy: PolicyView, watched: Iterable[int] | None
) -> AsyncIterator[list[UserEvent]]:
    """The policy's users among ``watched`` (all of them for None), with the changed policy,
    chunk by chunk."""
    async with db.read() as session:
        if watched is None:
            after = 0
            while True:
                ids = list(
                    await session.scalars(
                        select(SyncUser.id)
                        .where(
                            SyncUser.tenant_id == policy.tenant_id,
                            SyncUser.policy_id == policy.id,
                            SyncUser.id > after,
                        )
                        .order_by(SyncUser.id)
                        .limit(CHUNK)
                    )
                )
                if not ids:
                    return
                after = ids[-1]
                yield await _snapshots(session, policy.tenant_id, ids, "policy", policy)
        else:
            for part in chunks(sorted(watched)):
                ids = list(
                    await session.scalars(
                        select(SyncUser.id).where(
                            SyncUser.tenant_id == policy.tenant_id,
                            SyncUser.policy_id == policy.id,
                            SyncUser.id.in_(part),
                        )
                    )
                )
                if ids:
                    yield await _snapshots(session, policy.tenant_id, ids, "policy", policy)


async def requested_users(
    db: Database, event: UsersRequested, watched: Iterable[int] | None
) -> AsyncIterator[list[UserEvent]]:
    """The users the event stands for among ``watched`` (all of them for None), chunk by chunk:
    still requested (not started since: that start has its own event) at a time in the
    event's window: pending (app.store.pending_requests), or folded into the user's row since
    by a change that left it requested."""
    tenant_id = event.tenant_id
    requested = (
        SyncUser.tenant_id == tenant_id,
        SyncUser.id.between(event.first_id, event.last_id),
        or_(
            SyncUser.id.in_(pending_requests.pending_between(tenant_id, event.since, event.until)),
            and_(
                SyncUser.sync_requested == true(),
                SyncUser.due_at.between(event.since, event.until),
            ),
        ),
    )
    async with db.read() as session:
        if watched is None:
            query = select(SyncUser.id).where(*requested).order_by(SyncUser.id)
            ids = list(await session.scalars(query))
            for part in chunks(ids):
                yield await _snapshots(session, tenant_id, part, "requested", None)
            return
        for part in chunks(sorted(watched)):
            query = select(SyncUser.id).where(*requested, SyncUser.id.in_(part))
            ids = list(await session.scalars(query))
            if ids:
                yield await _snapshots(session, tenant_id, ids, "requested", None)


async def load_user_event(
    db: Database, kind: UserEventKind, tenant_id: int, user_id: int
) -> UserEvent | None:
    """The user's current state, for an event published as a reference."""
    async with db.read() as session:
        events = await _snapshots(session, tenant_id, [user_id], kind, None)
    return events[0] if events else None


async def load_policy(db: Database, tenant_id: int, policy_id: int) -> PolicyView | None:
    async with db.read() as session:
        return (await policies_by_ids(session, tenant_id, [policy_id])).get(policy_id)


async def _snapshots(
    session: AsyncSession,
    tenant_id: int,
    ids: Sequence[int],
    kind: UserEventKind,
    policy: PolicyView | None,
) -> list[UserEvent]:
    users = await users_by_ids(session, tenant_id, list(ids))
    run_ids = [r for u in users.values() for r in (u.current_run_id, u.last_finished_run_id) if r]
    runs = await runs_by_ids(session, tenant_id, run_ids) if run_ids else {}
    policies: dict[int, PolicyView] = {}
    if policy is None:
        policy_ids = sorted({u.policy_id for u in users.values() if u.policy_id})
        if policy_ids:
            policies = await policies_by_ids(session, tenant_id, policy_ids)
    return [
        UserEvent(kind, _with_snapshots(user, policy or policies.get(user.policy_id or 0), runs))
        for user in (users[i] for i in sorted(users))
    ]


def _with_snapshots(
    user: UserView, policy: PolicyView | None, runs: dict[int, RunView]
) -> UserView:
    return replace(
        user,
        policy=policy if user.policy_id else None,
        current_run=runs.get(user.current_run_id or 0),
        last_finished_run=runs.get(user.last_finished_run_id or 0),
    )
