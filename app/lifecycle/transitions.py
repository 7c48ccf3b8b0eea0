"""The run lifecycle: the only code that changes users' sync state (administration, which adds
users and assigns policies, is app.admin.user_admin).

Each function runs inside the caller's write transaction: plain synchronous code on a
Connection, which app.store.unit_of_work.write runs as one transaction (on SQLite's writer
thread, in one hop; see app.store.engine). Each keeps the counters in step, bumps the user's
version by one per change and returns the events to publish after commit. Core statements
(app.lifecycle.sql), and events' snapshots built from the rows read: a report is one SELECT
(after the user's row lock on PostgreSQL), two UPDATEs and a counter upsert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection

from app.domain import validation
from app.domain.errors import BadUserInput, Conflict, NotFound
from app.domain.statuses import STATUS_AFTER, RunState, finished_state, run_kind
from app.domain.timeutil import MICROS_PER_MINUTE
from app.domain.validation import FailedItemInput
from app.domain.views import RunView
from app.events.messages import Event, UserEvent
from app.lifecycle import sql as sql
from app.lifecycle.sql import UserState
from app.store import counters, pending_requests
from app.store.triage_counters import FINISHED_COLUMN, RUNS_STARTED, TriageMoves
from app.webhooks import outbox


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def load_user(conn: Connection, tenant_id: int, user_id: int) -> UserState:
    """The tenant's user, row-locked on PostgreSQL so concurrent changes to it serialize."""
    params = {"tenant_id": tenant_id, "user_id": user_id}
    if _postgres(conn):
        if conn.execute(sql.LOCK_USER, params).first() is None:
            raise NotFound("No such sync user.")
        pending_requests.fold(conn, tenant_id, [user_id])
    else:
        # SQLite has one writer, so a request not pending now cannot become pending before
        # this transaction ends: most users have none, and their load needs no fold (its
        # DELETE ... RETURNING was one statement of every start).
        row = conn.execute(sql.USER_STATE_PENDING, params).first()
        if row is None:
            raise NotFound("No such sync user.")
        if not row[-1]:
            return sql.user_state(row[:-1])
        pending_requests.fold(conn, tenant_id, [user_id])
    row = conn.execute(sql.USER_STATE, params).first()
    if row is None:
        raise NotFound("No such sync user.")
    return sql.user_state(row)


def load_run(conn: Connection, tenant_id: int, run_id: int) -> tuple[RunView, UserState]:
    """The tenant's run and its user. On PostgreSQL the user is locked first, then both are
    read, so reports on one run apply one at a time."""
    params = {"tenant_id": tenant_id, "run_id": run_id}
    if _postgres(conn):
        locked = conn.execute(sql.LOCK_RUN_USER, params).scalar()
        if locked is None:
            raise NotFound("No such sync run.")
        # requestSyncs takes no user locks on PostgreSQL: a user whose run started while a
        # request ran can be pending too (SQLite's single writer never lets it).
        pending_requests.fold(conn, tenant_id, [locked])
    row = conn.execute(sql.RUN_STATE, params).first()
    if row is None:
        raise NotFound("No such sync run.")
    return sql.run_state(row)


def due_after_start(interval_minutes: int | None, started_at: int) -> int | None:
    """When a user's next delta sync is due; None without a policy (no interval)."""
    if interval_minutes is None:
        return None
    return started_at + interval_minutes * MICROS_PER_MINUTE


@dataclass(frozen=True, slots=True)
class _Start:
    user: UserState
    kind: str
    service: str
    items_total: int | None


def _start_runs(
    conn: Connection, starts: Sequence[_Start], now: int, moves: counters.Moves
) -> list[tuple[RunView, Event]]:
    """Inserts the runs and moves their users to IN_PROGRESS: one INSERT and one UPDATE for
    all of them. Counter moves go to `moves`; the caller applies them."""
    inserted = conn.execute(
        sql.INSERT_RUNS,
        [
            {
                "tenant_id": start.user.view.tenant_id,
                "user_id": start.user.view.id,
                "kind": start.kind,
                "service": start.service,
                "state": RunState.RUNNING,
                "started_at": now,
                "last_report_at": now,
                "items_total": start.items_total,
                "items_processed": 0,
                "items_failed": 0,
                "changes": 0,
            }
            for start in starts
        ],
    )
    run_of = {user_id: run_id for run_id, user_id in inserted}
    updates: list[dict[str, Any]] = []
    started: list[tuple[RunView, Event]] = []
    for start in starts:
        user = start.user.view
        run = RunView(
            id=run_of[user.id],
            tenant_id=user.tenant_id,
            user_id=user.id,
            kind=start.kind,
            service=start.service,
            state=RunState.RUNNING,
            started_at=now,
            finished_at=None,
            items_total=start.items_total,
            items_processed=0,
            items_failed=0,
            changes=0,
            error_code=None,
            error_message=None,
        )
        due_at = due_after_start(user.policy.sync_interval_minutes if user.policy else None, now)
        changes: dict[str, Any] = {
            "status": STATUS_AFTER[RunState.RUNNING],
            "latest_sync_at": now,
            "due_at": due_at,
            "sync_requested": False,
            "current_run_id": run.id,
        }
        updates.append({"user_id": user.id, "latest_sort": now, "error_code": None, **changes})
        moves.move(
            (user.policy_id, user.status, start.user.latest_sort),
            (user.policy_id, STATUS_AFTER[RunState.RUNNING], now),
        )
        moves.triage.cleared(start.user.error_code)
        moves.triage.count(now, RUNS_STARTED)
        view = replace(user, **changes, version=user.version + 1, current_run=run)
        started.append((run, UserEvent("started", view)))
    conn.execute(sql.UPDATE_USER, updates)
    return started


def start_run(
    conn: Connection,
    user: UserState,
    now: int,
    kind: str | None = None,
    service: str = "MAIL",
    items_total: int | None = None,
) -> tuple[RunView, Event]:
    """The started run, and its event."""
    if user.view.current_run_id is not None:
        raise Conflict("A sync run is already running for this user.")
    validation.counter(items_total, "itemsTotal")
    if kind is None:
        kind = run_kind(user.view.latest_sync_at)
    moves = counters.Moves()
    [started] = _start_runs(conn, [_Start(user, kind, service, items_total)], now, moves)
    moves.apply(conn, user.view.tenant_id)
    return started


def _record_failed_items(
    conn: Connection, run: RunView, items: list[FailedItemInput], now: int
) -> int:
    """Stores items not recorded yet for the run (retries repeat them); returns how many."""
    fresh = {item.item_id: item for item in items}  # the last of repeats in one call wins
    if not fresh:
        return 0
    inserted = conn.execute(
        sql.INSERT_FAILED_ITEMS[conn.dialect.name],
        [
            {
                "tenant_id": run.tenant_id,
                "run_id": run.id,
                "item_id": item.item_id,
                "item_type": item.item_type,
                "error_code": item.error_code,
                "error_message": item.error_message,
                "failed_at": now,
            }
            for item in fresh.values()
        ],
    )
    return len(inserted.all())


def report_progress(
    conn: Connection,
    run: RunView,
    user: UserState,
    now: int,
    items_processed: int,
    changes: int,
    items_total: int | None = None,
    failed_items: list[FailedItemInput] | None = None,
) -> tuple[RunView, list[Event]]:
    """The run as reported, and its event. Cumulative counters: a report whose counters went
    down is stale and changes nothing; so does a late report for a finished run."""
    validation.counter(items_processed, "itemsProcessed")
    validation.counter(changes, "changes")
    validation.counter(items_total, "itemsTotal")
    items = validation.failed_items(failed_items)
    if run.state != RunState.RUNNING:
        return run, []
    # Any report on a running run, even a repeated or stale one, says its worker is alive: it
    # records the report's time (app.lifecycle.timeouts), with the run's other changes if any.
    if items_processed < run.items_processed or changes < run.changes:
        conn.execute(sql.MARK_REPORTED, {"run_id": run.id, "now": now})
        return run, []
    added_changes = changes - run.changes
    changed = added_changes > 0 or items_processed > run.items_processed
    if items_total is not None and items_total != run.items_total:
        changed = True
    else:
        items_total = run.items_total
    added_failures = _record_failed_items(conn, run, items, now)
    if not (changed or added_failures):
        conn.execute(sql.MARK_REPORTED, {"run_id": run.id, "now": now})
        return run, []
    reported: dict[str, Any] = {
        "items_processed": items_processed,
        "changes": changes,
        "items_total": items_total,
        "items_failed": run.items_failed + added_failures,
    }
    conn.execute(sql.REPORT_RUN, {"run_id": run.id, "now": now, **reported})
    conn.execute(sql.UPDATE_USER, {"user_id": user.view.id})
    counters.add_changes(conn, run.tenant_id, now, added_changes)
    trend = TriageMoves()
    trend.count(now, "changes", added_changes)
    counters.apply_triage(conn, run.tenant_id, trend)
    run = replace(run, **reported)
    view = replace(user.view, version=user.view.version + 1, current_run=run)
    return run, [UserEvent("progress", view)]


def finish_run(
    conn: Connection,
    run: RunView,
    user: UserState,
    now: int,
    error_code: str | None = None,
    error_message: str | None = None,
    failed_items: list[FailedItemInput] | None = None,
    moves: counters.Moves | None = None,
) -> tuple[RunView, Event]:
    """The finished run, and its event. Its counter moves go to `moves` when given (the caller
    applies them, with those of other finishes, in one sorted write), else they are applied."""
    if run.state != RunState.RUNNING:
        raise Conflict(f"The sync run already finished ({run.state}).")
    if error_code is not None:
        error_code = validation.error_code(error_code)
    elif error_message is not None:
        raise BadUserInput("errorMessage needs an errorCode.")
    error_message = validation.optional_text(error_message, "errorMessage")
    items = validation.failed_items(failed_items)
    items_failed = run.items_failed + _record_failed_items(conn, run, items, now)
    state = finished_state(bool(error_code), items_failed)
    finished: dict[str, Any] = {
        "state": state,
        "finished_at": now,
        "items_failed": items_failed,
        "error_code": error_code,
        "error_message": error_message,
    }
    conn.execute(sql.UPDATE_RUN, {"run_id": run.id, **finished})
    run = replace(run, **finished)
    old = user.view
    status = STATUS_AFTER[state]
    changes: dict[str, Any] = {
        "status": status,
        "current_run_id": None,
        "last_finished_run_id": run.id,
        "unresolved_failure_count": old.unresolved_failure_count + 1 if error_code else 0,
    }
    conn.execute(sql.UPDATE_USER, {"user_id": old.id, "error_code": error_code, **changes})
    own = moves is None
    moves = counters.Moves() if moves is None else moves
    moves.move(
        (old.policy_id, old.status, user.latest_sort),
        (old.policy_id, status, user.latest_sort),
    )
    moves.triage.cleared(user.error_code)
    if error_code:
        moves.triage.failed(error_code, error_message, now)
    moves.triage.count(now, FINISHED_COLUMN[state])
    if own:
        moves.apply(conn, old.tenant_id)
    view = replace(
        old,
        **changes,
        version=old.version + 1,
        current_run=None,
        last_finished_run=run,
    )
    last = old.last_finished_run
    was_failed = last is not None and last.state == RunState.FAILED
    outbox.enqueue(conn, view, run, now, was_failed)
    return run, UserEvent("finished", view)


PER_POLICY_CLAIMS = 32  # more active policies than this: one statement for all of them


def _due_users(conn: Connection, due: Any, params: dict[str, Any]) -> list[Any]:
    """The due users of the claim's policies; on PostgreSQL a statement per policy (see
    sql.LOCK_DUE_USERS_OF_POLICY), the oldest `limit` of each."""
    policy_ids = params["policy_ids"]
    if due is not sql.LOCK_DUE_USERS or len(policy_ids) > PER_POLICY_CLAIMS:
        return list(conn.execute(due, params))
    return [
        row
        for policy_id in policy_ids
        for row in conn.execute(sql.LOCK_DUE_USERS_OF_POLICY, {**params, "policy_id": policy_id})
    ]


def claim_due_runs(
    conn: Connection,
    tenant_id: int,
    now: int,
    limit: int,
    services: Sequence[str] | None = None,
) -> tuple[list[RunView], list[Event]]:
    """Starts runs for due users of active policies. On PostgreSQL, SKIP LOCKED keeps concurrent
    claimers apart; on SQLite the single BEGIN IMMEDIATE writer does."""
    if not 1 <= limit <= validation.MAX_CLAIMS_PER_CALL:
        raise BadUserInput(f"limit must be between 1 and {validation.MAX_CLAIMS_PER_CALL}.")
    wanted = validation.services(list(services)) if services is not None else None
    service_of: dict[int, str] = {}
    for policy_id, offered in conn.execute(sql.ACTIVE_POLICIES, {"tenant_id": tenant_id}):
        usable = [s for s in offered.split(",") if s and (wanted is None or s in wanted)]
        if usable:
            service_of[policy_id] = usable[0]
    if not service_of:
        return [], []
    params = {"tenant_id": tenant_id, "now": now, "policy_ids": list(service_of), "limit": limit}
    due, requested = (
        (sql.LOCK_DUE_USERS, sql.LOCK_REQUESTED_USERS)
        if _postgres(conn)
        else (sql.DUE_USERS, sql.REQUESTED_USERS)
    )
    # The oldest `limit` of both: due by schedule, and requested by requestSyncs (a user in both
    # is due at the earlier time). On PostgreSQL both are row-locked, SKIP LOCKED; those not
    # taken stay locked until this short transaction ends.
    when: dict[int, int] = {}
    for user_id, at in [*_due_users(conn, due, params), *conn.execute(requested, params)]:
        when[user_id] = min(at, when.get(user_id, at))
    ids = sorted(when, key=lambda user_id: (when[user_id], user_id))[:limit]
    if not ids:
        return [], []
    pending_requests.fold(conn, tenant_id, ids)
    found = {
        state.view.id: state
        for state in map(sql.user_state, conn.execute(sql.USERS_STATE, {"user_ids": ids}))
    }
    users = [found[user_id] for user_id in ids]
    starts = [
        _Start(
            user,
            run_kind(user.view.latest_sync_at),
            service_of[user.view.policy_id or 0],
            None,
        )
        for user in users
    ]
    # The counters of all these starts in one sorted write: claimers taking users of several
    # policies and statuses in different orders would otherwise deadlock on the counter rows.
    moves = counters.Moves()
    started = _start_runs(conn, starts, now, moves)
    moves.apply(conn, tenant_id)
    return [run for run, _ in started], [event for _, event in started]


def request_sync(conn: Connection, user: UserState, now: int) -> UserEvent:
    policy = user.view.policy
    if policy is None or not policy.active:
        raise Conflict("The user has no active policy, so no sync can be scheduled.")
    conn.execute(sql.UPDATE_USER, {"user_id": user.view.id, "sync_requested": True, "due_at": now})
    view = replace(user.view, sync_requested=True, due_at=now, version=user.view.version + 1)
    return UserEvent("requested", view)


def request_syncs_between(
    conn: Connection, statements: sql.BulkRequest, lo: int, hi: int, now: int
) -> tuple[int, int]:
    """request_sync for every user with an id in [lo, hi] that the statements' filter selects,
    has an active policy and no run running, in one INSERT; (requested, skipped). No counter
    moves: a request changes no status. On PostgreSQL both counts come from the INSERT's
    statement, so from the snapshot it chose the users in."""
    params = {"lo": lo, "hi": hi, "now": now}
    if statements.counted is not None:
        requested, matching = conn.execute(statements.counted, params).one()
        return requested, matching - requested
    requested = conn.execute(statements.request, params).rowcount
    matching = conn.execute(statements.matching, {"lo": lo, "hi": hi}).scalar_one()
    return requested, matching - requested
