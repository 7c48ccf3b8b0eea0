"""The run lifecycle: the only code that changes users' sync state.

Each function runs inside the caller's write transaction (see app.unit_of_work), keeps the
counters in step, bumps the user's version and returns the events to publish after commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import counters, validation
from app.db.models import FailedItem, Policy, SyncRun, SyncUser
from app.errors import BadUserInput, Conflict, NotFound
from app.events import Event, UserEvent
from app.snapshots import user_snapshot
from app.timeutil import MICROS_PER_MINUTE
from app.validation import FailedItemInput

RUNNING = "RUNNING"
STATUS_OF_STATE = {
    "SUCCEEDED": "SYNCED",
    "COMPLETED_WITH_WARNING": "COMPLETED_WITH_WARNING",
    "FAILED": "FAILED",
}


async def load_user(session: AsyncSession, tenant_id: int, user_id: int) -> SyncUser:
    """The tenant's user, row-locked on PostgreSQL so concurrent changes to it serialize."""
    query = select(SyncUser).where(SyncUser.id == user_id, SyncUser.tenant_id == tenant_id)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    user = (await session.execute(query)).scalar_one_or_none()
    if user is None:
        raise NotFound("No such sync user.")
    return user


async def load_run(session: AsyncSession, tenant_id: int, run_id: int) -> tuple[SyncRun, SyncUser]:
    run = await session.get(SyncRun, run_id)
    if run is None or run.tenant_id != tenant_id:
        raise NotFound("No such sync run.")
    # Lock the user first, then re-read the run, so reports on one run apply one at a time.
    user = await load_user(session, tenant_id, run.user_id)
    await session.refresh(run)
    return run, user


async def load_policy(session: AsyncSession, tenant_id: int, policy_id: int) -> Policy:
    """The tenant's policy, row-locked on PostgreSQL (its revision and counts change)."""
    query = select(Policy).where(Policy.id == policy_id, Policy.tenant_id == tenant_id)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    policy = (await session.execute(query)).scalar_one_or_none()
    if policy is None:
        raise NotFound("No such policy.")
    return policy


def _locked(session: AsyncSession, query: Select[Any]) -> Select[Any]:
    return query.with_for_update() if session.bind.dialect.name == "postgresql" else query


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
    rows = await session.scalars(
        _locked(
            session,
            select(SyncUser)
            .where(SyncUser.tenant_id == tenant_id, SyncUser.id.in_(wanted))
            .order_by(SyncUser.id),
        )
    )
    users = {u.id: u for u in rows}
    if len(users) != len(wanted):
        raise NotFound("No such sync user.")
    return (policies[policy_id] if policy_id is not None else None), [users[i] for i in wanted]


def _due_after_start(policy: Policy | None, started_at: int) -> int | None:
    return started_at + policy.sync_interval_minutes * MICROS_PER_MINUTE if policy else None


async def start_run(
    session: AsyncSession,
    user: SyncUser,
    now: int,
    kind: str | None = None,
    service: str = "MAIL",
    items_total: int | None = None,
    *,
    moves: counters.Moves | None = None,
) -> tuple[SyncRun, Event]:
    """Starts a run; its counter moves go to `moves` when given (the caller applies them)."""
    if user.current_run_id is not None:
        raise Conflict("A sync run is already running for this user.")
    validation.counter(items_total, "itemsTotal")
    if kind is None:
        kind = "INITIAL" if user.latest_sync_at is None else "DELTA"
    run = SyncRun(
        tenant_id=user.tenant_id,
        user_id=user.id,
        kind=kind,
        service=service,
        state=RUNNING,
        started_at=now,
        items_total=items_total,
        items_processed=0,
        items_failed=0,
        changes=0,
    )
    session.add(run)
    await session.flush()
    policy = await session.get(Policy, user.policy_id) if user.policy_id else None
    old = (user.policy_id, user.status, user.latest_sort)
    new = (user.policy_id, "IN_PROGRESS", now)
    if moves is None:
        await counters.move_user(session, user.tenant_id, old, new)
    else:
        moves.move(old, new)
    user.status = "IN_PROGRESS"
    user.latest_sync_at = user.latest_sort = now
    user.due_at = _due_after_start(policy, now)
    user.sync_requested = False
    user.current_run_id = run.id
    user.version += 1
    await session.flush()
    return run, UserEvent("started", await user_snapshot(session, user, run))


async def _record_failed_items(
    session: AsyncSession, run: SyncRun, items: list[FailedItemInput], now: int
) -> int:
    """Stores items not recorded yet for the run (retries repeat them); returns how many."""
    fresh = {item.item_id: item for item in items}
    if not fresh:
        return 0
    known = await session.scalars(
        select(FailedItem.item_id).where(
            FailedItem.run_id == run.id, FailedItem.item_id.in_(list(fresh))
        )
    )
    for item_id in known:
        fresh.pop(item_id, None)
    session.add_all(
        FailedItem(
            tenant_id=run.tenant_id,
            run_id=run.id,
            item_id=item.item_id,
            item_type=item.item_type,
            error_code=item.error_code,
            error_message=item.error_message,
            failed_at=now,
        )
        for item in fresh.values()
    )
    run.items_failed += len(fresh)
    return len(fresh)


async def report_progress(
    session: AsyncSession,
    run: SyncRun,
    user: SyncUser,
    now: int,
    items_processed: int,
    changes: int,
    items_total: int | None = None,
    failed_items: list[FailedItemInput] | None = None,
) -> list[Event]:
    """Cumulative counters: a report whose counters went down is stale and changes nothing;
    so does a late report for a finished run."""
    validation.counter(items_processed, "itemsProcessed")
    validation.counter(changes, "changes")
    validation.counter(items_total, "itemsTotal")
    items = validation.failed_items(failed_items)
    stale = items_processed < run.items_processed or changes < run.changes
    if run.state != RUNNING or stale:
        return []
    added_changes = changes - run.changes
    changed = added_changes > 0 or items_processed > run.items_processed
    run.items_processed = items_processed
    run.changes = changes
    if items_total is not None and items_total != run.items_total:
        run.items_total = items_total
        changed = True
    if await _record_failed_items(session, run, items, now):
        changed = True
    if not changed:
        return []
    await counters.add_changes(session, run.tenant_id, now, added_changes)
    user.version += 1
    await session.flush()
    return [UserEvent("progress", await user_snapshot(session, user, run))]


async def finish_run(
    session: AsyncSession,
    run: SyncRun,
    user: SyncUser,
    now: int,
    error_code: str | None = None,
    error_message: str | None = None,
    failed_items: list[FailedItemInput] | None = None,
) -> Event:
    if run.state != RUNNING:
        raise Conflict(f"The sync run already finished ({run.state}).")
    if error_code is not None:
        error_code = validation.error_code(error_code)
    elif error_message is not None:
        raise BadUserInput("errorMessage needs an errorCode.")
    error_message = validation.optional_text(error_message, "errorMessage")
    await _record_failed_items(session, run, validation.failed_items(failed_items), now)
    if error_code:
        run.state = "FAILED"
    elif run.items_failed:
        run.state = "COMPLETED_WITH_WARNING"
    else:
        run.state = "SUCCEEDED"
    run.error_code, run.error_message = error_code, error_message
    run.finished_at = now
    status = STATUS_OF_STATE[run.state]
    await counters.move_user(
        session,
        user.tenant_id,
        (user.policy_id, user.status, user.latest_sort),
        (user.policy_id, status, user.latest_sort),
    )
    user.status = status
    user.current_run_id = None
    user.last_finished_run_id = run.id
    user.unresolved_failure_count = user.unresolved_failure_count + 1 if error_code else 0
    user.version += 1
    await session.flush()
    return UserEvent("finished", await user_snapshot(session, user))


async def claim_due_runs(
    session: AsyncSession,
    tenant_id: int,
    now: int,
    limit: int,
    services: Sequence[str] | None = None,
) -> tuple[list[SyncRun], list[Event]]:
    """Starts runs for due users of active policies. On PostgreSQL, SKIP LOCKED keeps concurrent
    claimers apart; on SQLite the single BEGIN IMMEDIATE writer does."""
    if not 1 <= limit <= 100:
        raise BadUserInput("limit must be between 1 and 100.")
    wanted = validation.services(list(services)) if services is not None else None
    policies = (
        await session.scalars(
            select(Policy).where(Policy.tenant_id == tenant_id, Policy.active.is_(True))
        )
    ).all()
    service_of: dict[int, str] = {}
    for policy in policies:
        offered = [s for s in policy.services.split(",") if s and (wanted is None or s in wanted)]
        if offered:
            service_of[policy.id] = offered[0]
    if not service_of:
        return [], []
    query = (
        select(SyncUser)
        .where(
            SyncUser.tenant_id == tenant_id,
            SyncUser.due_at <= now,
            SyncUser.policy_id.in_(list(service_of)),
            SyncUser.current_run_id.is_(None),
        )
        .order_by(SyncUser.due_at, SyncUser.id)
        .limit(limit)
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    runs: list[SyncRun] = []
    events: list[Event] = []
    # The counters of all these starts in one sorted write: claimers taking users of several
    # policies and statuses in different orders would otherwise deadlock on the counter rows.
    moves = counters.Moves()
    for user in (await session.scalars(query)).all():
        assert user.policy_id is not None  # selected by policy_id IN (...)
        run, event = await start_run(
            session, user, now, service=service_of[user.policy_id], moves=moves
        )
        runs.append(run)
        events.append(event)
    await moves.apply(session, tenant_id)
    return runs, events


async def request_sync(session: AsyncSession, user: SyncUser, now: int) -> Event:
    policy = await session.get(Policy, user.policy_id) if user.policy_id else None
    if policy is None or not policy.active:
        raise Conflict("The user has no active policy, so no sync can be scheduled.")
    user.sync_requested = True
    user.due_at = now
    user.version += 1
    await session.flush()
    return UserEvent("requested", await user_snapshot(session, user))


def _due_for(user: SyncUser, policy: Policy | None, now: int) -> int | None:
    if policy is None:
        return None
    if user.latest_sync_at is None or user.sync_requested:
        return now
    return _due_after_start(policy, user.latest_sync_at)


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
            status="NEVER_SYNCED",
            latest_sort=0,
            due_at=now if p else None,
            sync_requested=False,
            unresolved_failure_count=0,
            version=1 - (policies[p].revision if p else 0),  # public version starts at 1
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
    await counters.add_status_counts(
        session, tenant_id, Counter((counters.policy_key(p), "NEVER_SYNCED") for _, _, p in cleaned)
    )
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
        # Keep the public version (own version + policy revision) growing by exactly one.
        user.version += (old.revision if old else 0) - (policy.revision if policy else 0) + 1
        user.policy_id = policy_id
        user.due_at = _due_for(user, policy, now)
        changed.append(user)
    await moves.apply(session, tenant_id)
    await counters.add_policy_users(session, moved)
    await session.flush()
    events: list[Event] = [
        UserEvent("assigned", await user_snapshot(session, user)) for user in changed
    ]
    return users, events
