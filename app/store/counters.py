"""Counters kept in the same transaction as each state change, so that metric cards and exact
counts never scan a million users. Increments are upserts, so concurrent writers on PostgreSQL
never lose counts.

The upserts are Core statements on the tables, built once per dialect. One builder per
counter (`_..._writes`) makes the statements and rows of a change; the operations below run
them, synchronously on a Connection: directly in the run lifecycle (Database.run_write), through
app.store.engine.run_in in administration and the seed (the ORM writers; engine.py says why both
write paths stay)."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from sqlalchemy import Connection, Executable, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from app.domain.timeutil import MICROS_PER_HOUR, minute_of
from app.store.engine import run_in
from app.store.models import ChangeBucket, LatestCount, Policy, StatusCount, SyncUser
from app.store.triage_counters import TriageMoves

NO_POLICY = 0
# A user as the counters see it: (policy id, status, latest_sort).
UserKey = tuple[int | None, str, int]
# A statement and its parameters (a list of rows: executemany).
Write = tuple[Executable, dict[str, Any] | list[dict[str, Any]]]


def _adding(table: Table, keys: list[str], column: str) -> dict[str, Insert]:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET column = column + excluded, per dialect."""
    made: dict[str, Insert] = {}
    for dialect, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert)):
        stmt = insert(table)
        made[dialect] = stmt.on_conflict_do_update(
            index_elements=keys, set_={column: table.c[column] + stmt.excluded[column]}
        )
    return made


_STATUS = _adding(
    cast(Table, StatusCount.__table__), ["tenant_id", "policy_key", "status"], "count"
)
_LATEST = _adding(
    cast(Table, LatestCount.__table__), ["tenant_id", "hour", "policy_key", "status"], "count"
)
_CHANGES = _adding(cast(Table, ChangeBucket.__table__), ["tenant_id", "minute"], "changes")


def policy_key(policy_id: int | None) -> int:
    return policy_id or NO_POLICY


def hour_of(latest_sort: int) -> int:
    return latest_sort // MICROS_PER_HOUR


# -- builders ------------------------------------------------------------------------------------


def _status_writes(dialect: str, tenant_id: int, deltas: Counter[tuple[int, str]]) -> list[Write]:
    """{(policy_key, status): delta} for the tenant's status counters."""
    rows = [
        {"tenant_id": tenant_id, "policy_key": key, "status": status, "count": delta}
        for (key, status), delta in sorted(deltas.items())
        if delta
    ]
    return [(_STATUS[dialect], rows)] if rows else []


def _latest_writes(
    dialect: str, tenant_id: int, deltas: Counter[tuple[int, int, str]]
) -> list[Write]:
    """{(hour, policy_key, status): delta} for the tenant's latest-sync hour counters."""
    rows = [
        {"tenant_id": tenant_id, "hour": hour, "policy_key": key, "status": status, "count": d}
        for (hour, key, status), d in sorted(deltas.items())
        if d
    ]
    return [(_LATEST[dialect], rows)] if rows else []


def _changes_writes(dialect: str, tenant_id: int, at_micros: int, changes: int) -> list[Write]:
    if changes <= 0:
        return []
    row = {"tenant_id": tenant_id, "minute": minute_of(at_micros), "changes": changes}
    return [(_CHANGES[dialect], row)]


# -- executors -----------------------------------------------------------------------------------


def _execute(conn: Connection, writes: list[Write]) -> None:
    for statement, params in writes:
        conn.execute(statement, params)


# -- the counters' operations --------------------------------------------------------------------


class Moves:
    """Counter deltas of users moving between (policy, status, latest sync hour)."""

    def __init__(self) -> None:
        self.status: Counter[tuple[int, str]] = Counter()
        self.latest: Counter[tuple[int, int, str]] = Counter()
        # Failure reasons and trends (app.store.triage_counters), written after the rows above.
        self.triage = TriageMoves()

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

    def _writes(self, dialect: str, tenant_id: int) -> list[Write]:
        # Status rows first, then hour rows, each sorted: every writer takes the counter rows'
        # locks in one order (PostgreSQL), so concurrent writers never deadlock on them.
        status = _status_writes(dialect, tenant_id, self.status)
        latest = _latest_writes(dialect, tenant_id, self.latest)
        return status + latest + self.triage.writes(dialect, tenant_id)

    def apply(self, conn: Connection, tenant_id: int) -> None:
        _execute(conn, self._writes(conn.dialect.name, tenant_id))


def move_user(conn: Connection, tenant_id: int, old: UserKey | None, new: UserKey | None) -> None:
    """Move one user between counters; None means added or removed."""
    moves = Moves()
    moves.move(old, new)
    moves.apply(conn, tenant_id)


def add_changes(conn: Connection, tenant_id: int, at_micros: int, changes: int) -> None:
    _execute(conn, _changes_writes(conn.dialect.name, tenant_id, at_micros, changes))


def apply_triage(conn: Connection, tenant_id: int, triage: TriageMoves) -> None:
    """Failure-reason and trend deltas of a change that moves no user (a progress report)."""
    _execute(conn, triage.writes(conn.dialect.name, tenant_id))


async def add_policy_users(session: AsyncSession, deltas: Counter[int]) -> None:
    # ORM-enabled UPDATE: keeps the session's Policy objects (snapshots read them) in step.
    for policy_id, delta in sorted(deltas.items()):
        if policy_id and delta:
            await session.execute(
                update(Policy)
                .where(Policy.id == policy_id)
                .values(user_count=Policy.user_count + delta)
            )


async def recount(session: AsyncSession, tenant_id: int) -> None:
    """Rebuild a tenant's counters and policy user counts from the users (bulk loads)."""
    await session.execute(delete(StatusCount).where(StatusCount.tenant_id == tenant_id))
    await session.execute(delete(LatestCount).where(LatestCount.tenant_id == tenant_id))
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
    by_hour = await session.execute(
        select(hour, SyncUser.policy_id, SyncUser.status, func.count())
        .where(SyncUser.tenant_id == tenant_id, SyncUser.latest_sort > 0)
        .group_by(hour, SyncUser.policy_id, SyncUser.status)
    )
    for hour_value, policy_id, status, count in by_hour:
        moves.latest[(int(hour_value), policy_key(policy_id), status)] += count
    await run_in(session, moves.apply, tenant_id)
    await session.execute(update(Policy).where(Policy.tenant_id == tenant_id).values(user_count=0))
    await add_policy_users(session, per_policy)
