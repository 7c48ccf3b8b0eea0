"""Runs whose worker went silent: a RUNNING run with no sign of life (its start, or its latest
reportSyncProgress: sync_runs.last_report_at) for SYNCSTATUS_RUN_TIMEOUT_SECONDS is finished
as FAILED with errorCode WORKER_LOST, exactly as finishSyncRun with that errorCode would
(transitions.finish_run): the user's status, the counters, failure reasons, trends, the event,
webhooks and the next due time all follow. Its worker, if it comes back, learns it: a finish
gets CONFLICT, a report the finished run.

One call ends at most `limit` runs in the caller's one transaction (app.ops.run_reaper calls it
again while there are more): SQLite's writer and PostgreSQL's row locks are held briefly. On
PostgreSQL the runs' users are locked SKIP LOCKED, as a worker's report or finish locks them:
concurrent reapers take different runs, and a run whose worker is writing right now is passed
over. Each run is read again under its lock, so one finished or reported meanwhile is left.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from app.domain.statuses import RunState
from app.domain.timeutil import MICROS_PER_SECOND
from app.domain.views import RunView
from app.events.messages import Event
from app.lifecycle import sql, transitions
from app.store import counters, pending_requests

WORKER_LOST = "WORKER_LOST"
# Runs ended per transaction at most: each is a finish (its run's and user's UPDATEs, a webhook
# outbox INSERT), so 100 held SQLite's writer 60-260 ms and PostgreSQL's user locks 100-340 ms
# at 1,000,000 runs (bench/reaper.py on a 2-core machine at a load average of 5).
BATCH = 100


def cutoff(now: int, timeout_seconds: float) -> int:
    """Runs with no sign of life since before this (microseconds) have timed out."""
    return now - round(timeout_seconds * MICROS_PER_SECOND)


def timed_out(state: str, last_report_at: int | None, now: int, timeout_seconds: float) -> bool:
    """The rule, as the statements apply it: a running run silent for longer than the timeout
    (0: never). A run without a recorded time (none should be running) is left alone."""
    if timeout_seconds <= 0 or state != RunState.RUNNING or last_report_at is None:
        return False
    return last_report_at < cutoff(now, timeout_seconds)


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{int(seconds // 60)} minutes"
    if seconds == int(seconds):
        whole = int(seconds)
        return f"{whole} second" if whole == 1 else f"{whole} seconds"
    return f"{seconds:g} seconds"


def lost_message(timeout_seconds: float) -> str:
    """The errorMessage of a run ended for its worker's silence."""
    return (
        f"No report from the sync worker for {_duration(timeout_seconds)}; "
        "syncstatus ended the run."
    )


@dataclass(frozen=True, slots=True)
class Ended:
    """What one call did: the runs it finished, and how many candidates it looked at (fewer
    than the limit: no more silent runs to take now)."""

    runs: list[RunView]
    candidates: int


def end_silent_runs(
    conn: Connection, now: int, timeout_seconds: float, limit: int = BATCH
) -> tuple[Ended, list[Event]]:
    """Finishes up to `limit` runs silent for longer than `timeout_seconds` before `now`, the
    longest silent first; what it did and the runs' events."""
    if timeout_seconds <= 0:
        return Ended([], 0), []
    params = {"cutoff": cutoff(now, timeout_seconds), "limit": limit}
    postgres = conn.dialect.name == "postgresql"
    candidates = conn.execute(sql.LOCK_SILENT_RUNS if postgres else sql.SILENT_RUNS, params).all()
    if not candidates:
        return Ended([], 0), []
    run_ids = sorted(run_id for run_id, _, _ in candidates)
    if postgres:
        # As every writer of a user (load_run): a request that requestSyncs made while the run
        # ran is folded into the user first, so the finish's version counts it.
        by_tenant: dict[int, list[int]] = {}
        for _, tenant_id, user_id in candidates:
            by_tenant.setdefault(tenant_id, []).append(user_id)
        for tenant_id, user_ids in sorted(by_tenant.items()):
            pending_requests.fold(conn, tenant_id, sorted(user_ids))
    # Read again under the locks: one reported or finished since the candidates were read is
    # not among them.
    still = conn.execute(sql.STILL_SILENT_STATES, {**params, "run_ids": run_ids})
    message = lost_message(timeout_seconds)
    moves: dict[int, counters.Moves] = {}
    ended: list[RunView] = []
    events: list[Event] = []
    for run, user in map(sql.run_state, still.all()):
        tenant_moves = moves.setdefault(run.tenant_id, counters.Moves())
        finished, event = transitions.finish_run(
            conn, run, user, now, WORKER_LOST, message, moves=tenant_moves
        )
        ended.append(finished)
        events.append(event)
    # All the counter moves in one order (tenant, then each writer's own sorted order): a
    # worker's finish or a claim taking some of the same rows meanwhile cannot deadlock with it.
    for tenant_id in sorted(moves):
        moves[tenant_id].apply(conn, tenant_id)
    return Ended(ended, len(candidates)), events
