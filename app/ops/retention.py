"""Bounded history: finished runs older than SYNCSTATUS_RETENTION_DAYS are deleted with their
failed items, by a background pruner in `serve` and by `syncstatus prune`; so are audit events
and finished webhook deliveries (delivered or given up) older than that.

A user's running run and most recent finished run are never deleted (its status, latest
sync and current progress point at them); statuses, metrics and counters are kept in their
own rows, so they stay exactly as they were. Deleting works through run ids in windows of a
few hundred, each window one short write transaction, so workers' writes and page reads never
wait long behind it. The walk goes to the end of the table: run ids mostly grow with start time,
but not always (imported or seeded history, clocks of several processes), and stopping at the
first recent window would leave older runs behind it forever. A window with nothing old costs
one aggregate over a primary-key range.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select

from app.domain.timeutil import now_micros
from app.ops.tasks import running
from app.store.engine import Database
from app.store.models import AuditEvent, FailedItem, SyncRun, SyncUser, WebhookDelivery

log = logging.getLogger(__name__)
WINDOW = 500  # runs looked at per transaction
DAY_US = 86_400 * 1_000_000
PRUNE_EVERY_SECONDS = 3600.0
FIRST_PRUNE_AFTER_SECONDS = 60.0
PAUSE_BETWEEN_BATCHES = 0.01  # lets queued writes go first


@dataclass(slots=True)
class PruneResult:
    runs: int = 0
    failed_items: int = 0
    audit_events: int = 0
    webhook_deliveries: int = 0
    batches: int = 0


def cutoff_for(retention_days: int, now: int | None = None) -> int:
    return (now if now is not None else now_micros()) - retention_days * DAY_US


def _window(conn: Connection, after: int, cutoff: int) -> tuple[int, int, int, bool]:
    """Prune runs with ids in (after, upto]: (upto, runs deleted, failed items deleted, more)."""
    ids = select(SyncRun.id, SyncRun.started_at).where(SyncRun.id > after).order_by(SyncRun.id)
    window = ids.limit(WINDOW).subquery()
    upto, earliest = conn.execute(
        select(func.max(window.c.id), func.min(window.c.started_at))
    ).one()
    if upto is None:
        return after, 0, 0, False
    if earliest >= cutoff:
        return upto, 0, 0, True
    doomed = list(
        conn.scalars(
            select(SyncRun.id)
            .join(SyncUser, SyncUser.id == SyncRun.user_id)
            .where(
                SyncRun.id > after,
                SyncRun.id <= upto,
                SyncRun.finished_at.is_not(None),
                SyncRun.finished_at < cutoff,
                or_(SyncUser.current_run_id.is_(None), SyncUser.current_run_id != SyncRun.id),
                or_(
                    SyncUser.last_finished_run_id.is_(None),
                    SyncUser.last_finished_run_id != SyncRun.id,
                ),
            )
        )
    )
    if not doomed:
        return upto, 0, 0, True
    items = conn.execute(delete(FailedItem).where(FailedItem.run_id.in_(doomed))).rowcount
    runs = conn.execute(
        # Checked again in the same transaction: a run picked above may have become a
        # user's current or latest finished one meanwhile (PostgreSQL's read committed).
        delete(SyncRun).where(
            SyncRun.id.in_(doomed),
            ~select(SyncUser.id)
            .where(
                SyncUser.id == SyncRun.user_id,
                or_(
                    SyncUser.current_run_id == SyncRun.id,
                    SyncUser.last_finished_run_id == SyncRun.id,
                ),
            )
            .exists(),
        )
    ).rowcount
    return upto, runs, items, True


def _old_rows(conn: Connection, table: Any, *old: Any) -> int:
    """Deletes up to WINDOW of the oldest rows matching ``old``; how many it deleted."""
    ids = select(table.id).where(*old).order_by(table.id).limit(WINDOW)
    return int(conn.execute(delete(table).where(table.id.in_(ids.scalar_subquery()))).rowcount)


async def _prune_table(db: Database, table: Any, *old: Any) -> tuple[int, int]:
    """(rows deleted, transactions): one short transaction per window of rows."""
    deleted = batches = 0
    while True:
        count = await db.run_write(lambda conn: _old_rows(conn, table, *old))
        deleted, batches = deleted + count, batches + 1
        if count < WINDOW:
            return deleted, batches
        await asyncio.sleep(PAUSE_BETWEEN_BATCHES)


async def prune(
    db: Database,
    cutoff: int,
    telemetry: Any = None,
    on_batch: Callable[[float], None] | None = None,  # each transaction's seconds (bench/)
) -> PruneResult:
    """Deletes finished runs that ended before ``cutoff`` (microseconds), in small batches."""
    result = PruneResult()
    after, more = 0, True
    while more:

        def batch(conn: Connection, after: int = after) -> tuple[int, int, int, bool, float]:
            started = time.perf_counter()
            return (*_window(conn, after, cutoff), time.perf_counter() - started)

        after, runs, items, more, seconds = await db.run_write(batch)
        if on_batch is not None:
            on_batch(seconds)
        result.runs += runs
        result.failed_items += items
        result.batches += 1
        if telemetry is not None and runs:
            telemetry.pruned_runs.inc(runs)
        if runs or items:
            await asyncio.sleep(PAUSE_BETWEEN_BATCHES)
    result.audit_events, batches = await _prune_table(db, AuditEvent, AuditEvent.at < cutoff)
    result.batches += batches
    result.webhook_deliveries, batches = await _prune_table(
        db,
        WebhookDelivery,
        WebhookDelivery.next_attempt_at.is_(None),  # delivered or given up: nothing pending
        WebhookDelivery.created_at < cutoff,
    )
    result.batches += batches
    return result


async def _prune_forever(db: Database, retention_days: int, telemetry: Any) -> None:
    await asyncio.sleep(FIRST_PRUNE_AFTER_SECONDS)
    while True:
        try:
            result = await prune(db, cutoff_for(retention_days), telemetry)
            if result.runs or result.audit_events or result.webhook_deliveries:
                log.info(
                    "pruned runs older than %d days",
                    retention_days,
                    extra={
                        "runs": result.runs,
                        "failed_items": result.failed_items,
                        "audit_events": result.audit_events,
                        "webhook_deliveries": result.webhook_deliveries,
                    },
                )
        except Exception:
            # An outage or a lock timeout: the next round tries again.
            log.exception("pruning old runs failed")
        await asyncio.sleep(PRUNE_EVERY_SECONDS)


@asynccontextmanager
async def running_pruner(
    db: Database, retention_days: int, telemetry: Any = None
) -> AsyncIterator[None]:
    """The background pruner for the block (nothing when retention_days is 0)."""
    if retention_days <= 0:
        yield
        return
    async with running(_prune_forever(db, retention_days, telemetry), "pruner"):
        yield


__all__ = ["PruneResult", "cutoff_for", "prune", "running_pruner"]
