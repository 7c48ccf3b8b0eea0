"""The run lifecycle's statements and the rows they return, as views.

Plain Core on a Connection: a run update is a handful of statements and no ORM
machinery (identity map, flush, refresh), which cost several times the SQL itself. The statements
are built once here, so SQLAlchemy compiles each once. Each load reads in one SELECT everything an
event's snapshot carries (the user, its policy and runs), so a change needs no further reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import FromClause

from app.domain.views import PolicyView, RunView, UserView, row_fields
from app.store import pending_requests
from app.store.models import FailedItem, Policy, SyncRequest, SyncRun, SyncUser

users = cast(Table, SyncUser.__table__)
runs = cast(Table, SyncRun.__table__)
policies = cast(Table, Policy.__table__)
failed_items = cast(Table, FailedItem.__table__)
requests = cast(Table, SyncRequest.__table__)
current_runs = runs.alias("current_run")
last_runs = runs.alias("last_run")


def _columns(table: FromClause, view: type[PolicyView | RunView | UserView]) -> list[Any]:
    return [table.c[name] for name in row_fields(view)]


# latest_sort is not in the view (latest_sync_at is), but the counters key on it; error_code
# neither, but the failure reasons do.
USER_COLUMNS = [*_columns(users, UserView), users.c.latest_sort, users.c.error_code]
POLICY_COLUMNS = _columns(policies, PolicyView)
RUN_COLUMNS = _columns(runs, RunView)
_U, _P, _R = len(USER_COLUMNS), len(POLICY_COLUMNS), len(RUN_COLUMNS)
_CURRENT_RUN_ID = row_fields(UserView).index("current_run_id")


@dataclass(frozen=True, slots=True)
class UserState:
    """A user as the lifecycle read it (row-locked on PostgreSQL): its view with the snapshots its
    events carry, and latest_sort, which the counters are keyed on."""

    view: UserView
    latest_sort: int
    error_code: str | None = None


def _policy(values: Sequence[Any]) -> PolicyView | None:
    return PolicyView.from_row(values) if values[0] is not None else None


def _run(values: Sequence[Any]) -> RunView | None:
    return RunView.from_row(values) if values[0] is not None else None


def _user(
    values: Sequence[Any], policy: PolicyView | None, current: RunView | None, last: RunView | None
) -> UserState:
    return UserState(UserView.from_row(values[:-2], policy, current, last), values[-2], values[-1])


# -- reads -------------------------------------------------------------------------------------

# A user with its policy, current run and last finished run: one row, outer-joined by key.
_USER_STATE = select(
    *USER_COLUMNS, *POLICY_COLUMNS, *_columns(current_runs, RunView), *_columns(last_runs, RunView)
).select_from(
    users.outerjoin(policies, policies.c.id == users.c.policy_id)
    .outerjoin(current_runs, current_runs.c.id == users.c.current_run_id)
    .outerjoin(last_runs, last_runs.c.id == users.c.last_finished_run_id)
)
_TENANT = users.c.tenant_id == bindparam("tenant_id")
USER_STATE = _USER_STATE.where(users.c.id == bindparam("user_id"), _TENANT)
# USER_STATE and, last, whether a requestSyncs request of the user is pending (SQLite's load).
USER_STATE_PENDING = USER_STATE.add_columns(pending_requests.pending())
USERS_STATE = _USER_STATE.where(users.c.id.in_(bindparam("user_ids", expanding=True)))

# Users a claim starts: due, of the given (active) policies, without a run in flight.
_DUE = (
    _TENANT,
    users.c.due_at <= bindparam("now"),
    users.c.policy_id.in_(bindparam("policy_ids", expanding=True)),
    users.c.current_run_id.is_(None),
)
DUE_USERS = (
    select(users.c.id, users.c.due_at)
    .where(*_DUE)
    .order_by(users.c.due_at, users.c.id)
    .limit(bindparam("limit"))
)
# Users requestSyncs made due (app.store.pending_requests), oldest request first: walked in
# ix_sync_requests_due, each user found by its primary key.
REQUESTED_USERS = (
    select(users.c.id, requests.c.requested_at)
    .select_from(requests.join(users, users.c.id == requests.c.user_id))
    .where(
        requests.c.tenant_id == bindparam("tenant_id"),
        _TENANT,
        users.c.policy_id.in_(bindparam("policy_ids", expanding=True)),
        users.c.current_run_id.is_(None),
    )
    .order_by(requests.c.requested_at, requests.c.user_id)
    # The limit in the statement's text: PostgreSQL's generic plan of a prepared statement
    # (asyncpg prepares each) takes an unknown LIMIT for a tenth of the rows, and at 1,000,000
    # requests it merge-joined all of them and sorted on disk (0.8 s); for LIMIT 2 it walks
    # ix_sync_requests_due. At most 100 texts (claims' limit).
    .limit(bindparam("limit", type_=Integer, literal_execute=True))
    .with_hint(requests, "INDEXED BY ix_sync_requests_due", "sqlite")
)

# A run with its user, the user's policy and last finished run (a report's event carries them).
_RUN_STATE = select(
    *RUN_COLUMNS, *USER_COLUMNS, *POLICY_COLUMNS, *_columns(last_runs, RunView)
).select_from(
    runs.join(users, users.c.id == runs.c.user_id)
    .outerjoin(policies, policies.c.id == users.c.policy_id)
    .outerjoin(last_runs, last_runs.c.id == users.c.last_finished_run_id)
)
RUN_STATE = _RUN_STATE.where(
    runs.c.id == bindparam("run_id"), runs.c.tenant_id == bindparam("tenant_id"), _TENANT
)

# Runs whose worker went silent (app.lifecycle.timeouts): running, with no sign of life since
# the cutoff, the longest silent first. Read in ix_sync_runs_running_report, which holds only
# running runs: the state is a literal, as the index's WHERE, so SQLite's planner matches it.
_RUNNING = text("sync_runs.state = 'RUNNING'")
_SILENT = (_RUNNING, runs.c.last_report_at < bindparam("cutoff", type_=BigInteger))
SILENT_RUNS = (
    select(runs.c.id, runs.c.tenant_id, runs.c.user_id)
    .where(*_SILENT)
    .order_by(runs.c.last_report_at)
    .limit(bindparam("limit", type_=Integer))
)
# Those of the given runs still silent, as RUN_STATE reads a run, read again once their users
# are locked (PostgreSQL: a statement that starts after the locks sees what their previous
# holders committed), the longest silent first.
STILL_SILENT_STATES = _RUN_STATE.where(
    runs.c.id.in_(bindparam("run_ids", expanding=True)), *_SILENT
).order_by(runs.c.last_report_at, runs.c.id)

ACTIVE_POLICIES = select(policies.c.id, policies.c.services).where(
    policies.c.tenant_id == bindparam("tenant_id"), policies.c.active == true()
)


def user_state(row: Sequence[Any]) -> UserState:
    """A row of USER_STATE or USERS_STATE."""
    policy_at, current_at, last_at = _U, _U + _P, _U + _P + _R
    return _user(
        row[:_U],
        _policy(row[policy_at:current_at]),
        _run(row[current_at:last_at]),
        _run(row[last_at:]),
    )


def run_state(row: Sequence[Any]) -> tuple[RunView, UserState]:
    """A row of RUN_STATE: the run, and its user with the run as current run if it is."""
    user_at, policy_at, last_at = _R, _R + _U, _R + _U + _P
    run = RunView.from_row(row[:user_at])
    values = row[user_at:policy_at]
    current = run if values[_CURRENT_RUN_ID] == run.id else None
    return run, _user(values, _policy(row[policy_at:last_at]), current, _run(row[last_at:]))


# -- PostgreSQL row locks ------------------------------------------------------------------------
# Taken before the reads above, in their own statement: a SELECT ... FOR UPDATE that waited for a
# lock rechecks the locked row's newest version but joins the other tables as they were when it
# started, so the snapshot could miss what the lock holder committed.

LOCK_USER = select(users.c.id).where(users.c.id == bindparam("user_id"), _TENANT).with_for_update()
LOCK_RUN_USER = (
    select(users.c.id)
    .join(runs, runs.c.user_id == users.c.id)
    .where(runs.c.id == bindparam("run_id"), runs.c.tenant_id == bindparam("tenant_id"), _TENANT)
    .with_for_update(of=users)
)
# SKIP LOCKED keeps concurrent claimers apart: each takes users no other claimer holds.
LOCK_DUE_USERS = DUE_USERS.with_for_update(skip_locked=True)
# One policy's due users. PostgreSQL 15 checks `policy_id IN (…)` on the heap rows of an ordered
# scan of ix_sync_users_due (a list on a later column is no index condition there): at 1,000,000
# users a claim read the 89,000 due users of inactive policies ahead of the rest, 154-190 ms. An
# equality is an index condition: one statement per policy took 17-28 ms in all.
LOCK_DUE_USERS_OF_POLICY = (
    select(users.c.id, users.c.due_at)
    .where(
        _TENANT,
        users.c.due_at <= bindparam("now"),
        users.c.policy_id == bindparam("policy_id"),
        users.c.current_run_id.is_(None),
    )
    .order_by(users.c.due_at, users.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
LOCK_REQUESTED_USERS = REQUESTED_USERS.with_for_update(skip_locked=True, of=users)
# Silent runs' users, SKIP LOCKED: several reapers take different runs, and a run whose worker
# is reporting or finishing right now (its user locked) is passed over, alive after all.
LOCK_SILENT_RUNS = (
    select(runs.c.id, runs.c.tenant_id, runs.c.user_id)
    .join(users, users.c.id == runs.c.user_id)
    .where(*_SILENT)
    .order_by(runs.c.last_report_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(of=users, skip_locked=True)
)

# -- writes --------------------------------------------------------------------------------------
# The UPDATEs set the columns named by their parameters' other keys (executemany-friendly).

INSERT_RUNS = insert(runs).returning(runs.c.id, runs.c.user_id)
UPDATE_RUN = update(runs).where(runs.c.id == bindparam("run_id"))
# A report's sign of life (app.lifecycle.timeouts). One within a second of the last recorded
# leaves last_report_at as it is: the row's indexed columns then stay unchanged (PostgreSQL can
# update it in place, HOT) for workers that report many times a second.
REPORT_TIME_STEP_US = 1_000_000
_NOW = bindparam("now", type_=BigInteger)
_REPORT_DUE = func.coalesce(runs.c.last_report_at, 0) < _NOW - literal(
    REPORT_TIME_STEP_US, BigInteger
)
MARK_REPORTED = (
    update(runs).where(runs.c.id == bindparam("run_id"), _REPORT_DUE).values(last_report_at=_NOW)
)
# A report's changes (parameters as UPDATE_RUN's) with its time, in the same one UPDATE.
REPORT_RUN = UPDATE_RUN.values(
    last_report_at=case((_REPORT_DUE, _NOW), else_=runs.c.last_report_at)
)
# Every change of a user's state bumps its version by exactly one.
UPDATE_USER = (
    update(users).where(users.c.id == bindparam("user_id")).values(version=users.c.version + 1)
)


def _failed_items_insert(dialect: Any) -> Insert:
    # Items already recorded for the run (a retried report repeats them) are skipped; RETURNING
    # yields only the rows inserted, so their count is what the run's items_failed grows by.
    stmt: Insert = dialect.insert(failed_items).on_conflict_do_nothing(
        index_elements=["run_id", "item_id"]
    )
    return stmt.returning(failed_items.c.id)


INSERT_FAILED_ITEMS = {
    "sqlite": _failed_items_insert(sqlite),
    "postgresql": _failed_items_insert(postgresql),
}


# -- requestSyncs: users in an id range at once ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """requestSyncs' statements for one filter (`where`), built once per call: the INSERT of a
    pending request (sync_requests, see app.store.pending_requests) for the users in [lo, hi]
    that the filter selects with an active policy and no run running, requested at `now` (a
    user already pending is requested again: one more version), and how many users in [lo, hi]
    the filter selects. The users' rows and their many indexes are left alone.

    SQLite walks the rowid range and checks each row (NOT INDEXED: without statistics it could
    pick a filter's index and read all its users per chunk); its single writer orders the
    request against every other write. PostgreSQL takes no lock on the users: a row lock
    writes into each user's heap tuple (at 1,000,000 users it doubled the request's WAL, 455
    MB against 240, with a full-page image of every sync_users heap page). Both
    counts come from one statement (`counted`), so from one snapshot. A run a claim starts
    meanwhile (not committed when the statement began) does not stop the request: its user
    runs and is also requested (it is claimed again when the run ends) and is counted
    requested. Writers of a user serialize with the request on the user's sync_requests key
    instead (pending_requests.fold), so each change's version counts the requests before it."""

    matching: Select[Any]
    request: Insert
    counted: Select[Any] | None  # PostgreSQL: (requested, matching) in one statement

    @classmethod
    def of(cls, dialect: str, tenant_id: int, where: list[ColumnElement[bool]]) -> BulkRequest:
        where = [*where, users.c.id.between(bindparam("lo"), bindparam("hi"))]
        active = select(policies.c.id).where(
            policies.c.tenant_id == tenant_id, policies.c.active == true()
        )
        eligible = [*where, users.c.current_run_id.is_(None), users.c.policy_id.in_(active)]
        matching = select(func.count()).select_from(users).where(*where)
        chosen = select(
            users.c.id,
            users.c.tenant_id,
            bindparam("now", type_=BigInteger),
            literal(1, Integer),
        ).where(*eligible)
        if dialect == "postgresql":
            # Inserted in id order, as writers of several users take their keys (fold).
            chosen = chosen.order_by(users.c.id)
        else:
            matching = matching.with_hint(users, "NOT INDEXED", "sqlite")
            chosen = chosen.with_hint(users, "NOT INDEXED", "sqlite")
        insert_ = (postgresql if dialect == "postgresql" else sqlite).insert(requests)
        request = insert_.from_select(
            ["user_id", "tenant_id", "requested_at", "bumps"], chosen
        ).on_conflict_do_update(
            index_elements=[requests.c.user_id],
            set_={
                "requested_at": insert_.excluded.requested_at,
                "bumps": requests.c.bumps + 1,
            },
        )
        counted = None
        if dialect == "postgresql":
            done = request.returning(requests.c.user_id).cte("requested")
            counted = select(
                select(func.count()).select_from(done).scalar_subquery(),
                matching.scalar_subquery(),
            )
        return cls(matching, request, counted)
